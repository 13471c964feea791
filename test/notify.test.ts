import { mkdtempSync, writeFileSync } from 'node:fs';
import { generate } from 'selfsigned';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type App } from '../src/app.js';
import { loadConfig } from '../src/config/load.js';
import { totpCode } from '../src/core/totp.js';
import { waitFor } from './helpers/ports.js';
import { SoftKey } from './helpers/soft-key.js';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.js';

const PW = 'Account-pass-1';
let sink: SmtpSink;
let app: App;

beforeAll(async () => {
  sink = await startSmtpSink();
  app = await createApp(
    loadConfig({
      env: {
        POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-notify-')),
        POSTERN_AUTH__BCRYPT_ROUNDS: '10',
        POSTERN_LOG__LEVEL: 'silent',
        POSTERN_NOTIFY__ENABLED: 'true',
        POSTERN_NOTIFY__SMTP_PORT: String(sink.port),
      },
    }),
  );
});
afterAll(async () => {
  await app?.close();
  await sink?.close();
});

const mailFor = (address: string, text: RegExp) =>
  waitFor(
    `notice to ${address}`,
    async () => {
      const m = sink.inbox.find((x) => x.to.includes(address) && text.test(x.text));
      if (!m) throw new Error('not yet');
      return m;
    },
    10_000,
  );

describe('security notices by email', () => {
  it('tells the user when an ASP is created and when a right password comes with a wrong second factor', async () => {
    await app.accounts.createUser({ name: 'admin' }, { username: 'alice', password: PW, email: 'alice@example.test' });
    await app.accounts.createAsp({ name: 'alice', ip: '192.0.2.7', protocol: 'http' }, 'alice', { description: 'phone', scopes: ['imap'] });
    const asp = await mailFor('alice@example.test', /application-specific password was created/);
    expect(asp.text).toContain('192.0.2.7');
    expect(asp.text).toContain('Subject: Security notice for alice');

    const { secret } = await app.accounts.setupTotp({ name: 'alice' }, 'alice');
    await app.accounts.confirmTotp({ name: 'alice' }, 'alice', await totpCode(secret, new Date()));
    await mailFor('alice@example.test', /Two-factor authentication was turned on/);
    const r = await app.auth.authenticate({
      username: 'alice',
      secret: PW,
      scope: 'master',
      ip: '203.0.113.9',
      protocol: 'http',
      secondFactor: { kind: 'totp', code: '000000' },
    });
    expect(r).toMatchObject({ ok: false, reason: 'second_factor_invalid' });
    const warning = await mailFor('alice@example.test', /correct password but a wrong second factor/);
    expect(warning.text).toContain('203.0.113.9');

    const key = new SoftKey();
    await app.accounts.addSecurityKey({ name: 'alice' }, 'alice', key.register(await app.accounts.securityKeyOptions({ name: 'alice' }, 'alice')), 'desk');
    await mailFor('alice@example.test', /A security key was added/);
  });

  it('never mails the secret itself, and does not mail accounts without an address', async () => {
    const before = sink.inbox.length;
    await app.accounts.createUser({ name: 'admin' }, { username: 'bob', password: PW });
    const { password } = await app.accounts.createAsp({ name: 'bob' }, 'bob', { description: '', scopes: ['imap'] });
    await new Promise((r) => setTimeout(r, 500));
    expect(sink.inbox.length).toBe(before);
    expect(sink.inbox.map((m) => m.text).join('\n')).not.toContain(password);
    expect(sink.inbox.map((m) => m.text).join('\n')).not.toContain(PW);
  });
});

describe('mail to the notice relay over TLS', () => {
  it("checks the relay's certificate: a stranger's is refused (nothing sent), the configured CA's is trusted", async () => {
    const pems = await generate([{ name: 'commonName', value: 'relay.example' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
    });
    const relay = await startSmtpSink({ tls: { key: pems.private, cert: pems.cert } });
    const dir = mkdtempSync(join(tmpdir(), 'postern-notify-tls-'));
    writeFileSync(join(dir, 'ca.pem'), pems.cert);
    const start = (extra: Record<string, string>) =>
      createApp(
        loadConfig({
          env: {
            POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-notify-')),
            POSTERN_AUTH__BCRYPT_ROUNDS: '10',
            POSTERN_LOG__LEVEL: 'silent',
            POSTERN_NOTIFY__SMTP_PORT: String(relay.port),
            ...extra,
          },
        }),
      );
    const strict = await start({});
    const trusting = await start({ POSTERN_NOTIFY__TLS_CA: join(dir, 'ca.pem') });
    try {
      for (const a of [strict, trusting]) await a.accounts.createUser({ name: 'admin' }, { username: 'erin', password: PW, email: 'erin@example.test' });
      await expect(strict.emailCodes.send(await strict.accounts.get('erin'), 'asp')).rejects.toMatchObject({ code: 'temporary_failure' });
      expect(relay.inbox).toHaveLength(0);
      await trusting.emailCodes.send(await trusting.accounts.get('erin'), 'asp');
      expect(relay.inbox).toHaveLength(1);
      expect(relay.inbox[0]!.text).toMatch(/Use \d{6} to create an application-specific password/);
    } finally {
      await strict.close();
      await trusting.close();
      await relay.close();
    }
  });
});
