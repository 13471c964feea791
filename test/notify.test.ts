import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type App } from '../src/app.js';
import { loadConfig } from '../src/config/load.js';
import { totpCode } from '../src/core/totp.js';
import { freePort, waitFor } from './helpers/ports.js';

interface Mail {
  to: string[];
  text: string;
}

const PW = 'Account-pass-1';
const inbox: Mail[] = [];
let sink: SMTPServer;
let app: App;

beforeAll(async () => {
  const port = await freePort();
  // A real SMTP receiver standing in for the site's mail relay.
  sink = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        inbox.push({ to: session.envelope.rcptTo.map((r) => r.address), text: Buffer.concat(chunks).toString('utf8') });
        cb();
      });
    },
  });
  await new Promise<void>((r) => sink.listen(port, '127.0.0.1', () => r()));
  app = await createApp(
    loadConfig({
      env: {
        POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-notify-')),
        POSTERN_AUTH__BCRYPT_ROUNDS: '10',
        POSTERN_LOG__LEVEL: 'silent',
        POSTERN_NOTIFY__ENABLED: 'true',
        POSTERN_NOTIFY__SMTP_PORT: String(port),
      },
    }),
  );
});
afterAll(async () => {
  await app?.close();
  await new Promise<void>((r) => sink.close(() => r()));
});

const mailFor = (address: string, text: RegExp) =>
  waitFor(`notice to ${address}`, async () => {
    const m = inbox.find((x) => x.to.includes(address) && text.test(x.text));
    if (!m) throw new Error('not yet');
    return m;
  }, 10_000);

describe('security notices by email (B9)', () => {
  it('tells the user when an ASP is created and when a right password comes with a wrong second factor', async () => {
    await app.accounts.createUser({ name: 'admin' }, { username: 'alice', password: PW, email: 'alice@example.test' });
    await app.accounts.createAsp({ name: 'alice', ip: '192.0.2.7', protocol: 'http' }, 'alice', { description: 'phone', scopes: ['imap'] });
    const asp = await mailFor('alice@example.test', /application-specific password was created/);
    expect(asp.text).toContain('192.0.2.7');
    expect(asp.text).toContain('Subject: Security notice for alice');

    const { secret } = await app.accounts.setupTotp({ name: 'alice' }, 'alice');
    await app.accounts.confirmTotp({ name: 'alice' }, 'alice', await totpCode(secret, new Date()));
    await mailFor('alice@example.test', /Two-factor authentication was turned on/);
    const r = await app.auth.authenticate({ username: 'alice', secret: PW, scope: 'master', ip: '203.0.113.9', protocol: 'http', secondFactor: { kind: 'totp', code: '000000' } });
    expect(r).toMatchObject({ ok: false, reason: 'second_factor_invalid' });
    const warning = await mailFor('alice@example.test', /correct password but a wrong second factor/);
    expect(warning.text).toContain('203.0.113.9');
  });

  it('never mails the secret itself, and does not mail accounts without an address', async () => {
    const before = inbox.length;
    await app.accounts.createUser({ name: 'admin' }, { username: 'bob', password: PW });
    const { password } = await app.accounts.createAsp({ name: 'bob' }, 'bob', { description: '', scopes: ['imap'] });
    await new Promise((r) => setTimeout(r, 500));
    expect(inbox.length).toBe(before);
    expect(inbox.map((m) => m.text).join('\n')).not.toContain(password);
    expect(inbox.map((m) => m.text).join('\n')).not.toContain(PW);
  });
});
