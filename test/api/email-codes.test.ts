import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { startApi } from '../../src/cli/serve.js';
import { loadConfig } from '../../src/config/load.js';
import { waitFor } from '../helpers/ports.js';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';

const PW = 'Account-pass-1';
let sink: SmtpSink;
let app: App;
let api: { port: number; close(): Promise<void> };

async function call(method: string, path: string, body?: unknown, token?: string) {
  const res = await fetch(`http://127.0.0.1:${api.port}/api/v1${path}`, {
    method,
    headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, json: (await res.json().catch(() => ({}))) as Record<string, any>, retryAfter: res.headers.get('retry-after') };
}

/** The newest code mailed so far, once one more than `seen` has arrived. */
async function nextCode(seen: number): Promise<string> {
  return waitFor(
    'emailed code',
    async () => {
      if (sink.inbox.length <= seen) throw new Error('no mail yet');
      return /Use (\d{6}) to/.exec(sink.inbox[sink.inbox.length - 1]!.text)![1]!;
    },
    10_000,
  );
}

beforeAll(async () => {
  sink = await startSmtpSink();
  app = await createApp(
    loadConfig({
      env: {
        POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-codes-')),
        POSTERN_AUTH__BCRYPT_ROUNDS: '10',
        POSTERN_LOG__LEVEL: 'silent',
        POSTERN_API__PORT: '0',
        POSTERN_FEATURES__EMAIL_CODES: 'enabled',
        POSTERN_NOTIFY__SMTP_PORT: String(sink.port),
      },
    }),
  );
  api = await startApi(app);
  await app.accounts.createUser({ name: 'admin' }, { username: 'alice', password: PW, email: 'alice@example.test' });
});
afterAll(async () => {
  await api?.close();
  await app?.close();
  await sink?.close();
});

describe('emailed verification codes', () => {
  let token: string;

  it('asks a new device for an emailed code at sign-in; a wrong code fails, the right one works once', async () => {
    const seen = sink.inbox.length;
    const first = await call('POST', '/session', { username: 'alice', password: PW });
    expect(first.status).toBe(401);
    expect(first.json.code).toBe('email_code_required');
    const code = await nextCode(seen);
    const wrong = String((Number(code) + 1) % 1_000_000).padStart(6, '0');
    expect((await call('POST', '/session', { username: 'alice', password: PW, emailCode: wrong })).json.code).toBe('email_code_invalid');
    const ok = await call('POST', '/session', { username: 'alice', password: PW, emailCode: code, trustDevice: false });
    expect(ok.status).toBe(200);
    token = ok.json.token;
    expect((await call('POST', '/session', { username: 'alice', password: PW, emailCode: code })).json.code).toBe('email_code_required');
  });

  it('asks for the emailed code before it spends a recovery code', async () => {
    const { recoveryCodes } = await app.accounts.createStarterUser({ name: 'admin' }, { username: 'vic', password: PW, email: 'vic@example.test' });
    const seen = sink.inbox.length;
    const first = await call('POST', '/session', { username: 'vic', password: PW, recoveryCode: recoveryCodes[0] });
    expect(first.json.code).toBe('email_code_required');
    const code = await nextCode(seen);
    // The same recovery code still works: it was not used up by the sign-in that stopped.
    const ok = await call('POST', '/session', { username: 'vic', password: PW, recoveryCode: recoveryCodes[0], emailCode: code });
    expect(ok.status).toBe(200);
    const vic = await app.accounts.get('vic');
    expect(await app.store.recoveryCodes.countUnused(vic.id)).toBe(recoveryCodes.length - 1);
  });

  it('voids a code after 3 wrong tries, and makes the user wait before asking again', async () => {
    const seen = sink.inbox.length;
    expect((await call('POST', '/me/email-code', { purpose: 'asp' }, token)).status).toBe(202);
    const code = await nextCode(seen);
    const again = await call('POST', '/me/email-code', { purpose: 'asp' }, token);
    expect(again.status).toBe(429);
    expect(Number(again.retryAfter)).toBeGreaterThan(0);
    const wrong = String((Number(code) + 7) % 1_000_000).padStart(6, '0');
    for (let i = 0; i < 3; i++) {
      expect((await call('POST', '/me/asps', { scopes: ['imap'], emailCode: wrong }, token)).json.code).toBe('email_code_invalid');
    }
    const voided = await call('POST', '/me/asps', { scopes: ['imap'], emailCode: code }, token);
    expect(voided.status).toBe(403);
    expect(voided.json.code).toBe('email_code_required');
    expect(await app.accounts.listAsps('alice')).toHaveLength(0);
  });

  it('compares no more than 3 of 20 guesses sent at once, and a right code sent 5 times at once is used once', async () => {
    await app.store.challenges.delete(`email:${(await app.accounts.get('alice')).id}:asp`);
    let seen = sink.inbox.length;
    expect((await call('POST', '/me/email-code', { purpose: 'asp' }, token)).status).toBe(202);
    let code = await nextCode(seen);
    const guesses = Array.from({ length: 20 }, (_, i) => String((Number(code) + 1 + i) % 1_000_000).padStart(6, '0'));
    const answers = await Promise.all([...guesses, code].map((emailCode) => call('POST', '/me/asps', { scopes: ['imap'], emailCode }, token)));
    const codes = answers.map((a) => a.json.code);
    expect(codes.filter((c) => c === 'email_code_invalid')).toHaveLength(3);
    expect(codes.filter((c) => c === 'email_code_required')).toHaveLength(18);
    expect(await app.accounts.listAsps('alice')).toHaveLength(0);

    await app.store.challenges.delete(`email:${(await app.accounts.get('alice')).id}:asp`);
    seen = sink.inbox.length;
    expect((await call('POST', '/me/email-code', { purpose: 'asp' }, token)).status).toBe(202);
    code = await nextCode(seen);
    const made = await Promise.all(Array.from({ length: 5 }, () => call('POST', '/me/asps', { scopes: ['imap'], emailCode: code }, token)));
    expect(made.filter((m) => m.status === 201)).toHaveLength(1);
    const asps = await app.accounts.listAsps('alice');
    expect(asps).toHaveLength(1);
    await app.accounts.revokeAsp({ name: 'test' }, 'alice', asps[0]!.id);
  });

  it('lets a sensitive operation through with its own fresh code', async () => {
    await app.store.challenges.delete(`email:${(await app.accounts.get('alice')).id}:token`);
    expect((await call('POST', '/me/asps', { scopes: ['imap'] }, token)).json.code).toBe('email_code_required');
    await app.accounts.setRole({ name: 'admin' }, 'alice', 'admin');
    const seen = sink.inbox.length;
    expect((await call('POST', '/me/email-code', { purpose: 'token' }, token)).status).toBe(202);
    const code = await nextCode(seen);
    const made = await call('POST', '/tokens', { role: 'auditor', emailCode: code }, token);
    expect(made.status).toBe(201);
  });

  it('asks for an emailed code before a user deletes their own account', async () => {
    await app.accounts.createUser({ name: 'admin' }, { username: 'una', password: PW, email: 'una@example.test' });
    let seen = sink.inbox.length;
    expect((await call('POST', '/session', { username: 'una', password: PW })).json.code).toBe('email_code_required');
    const una = (await call('POST', '/session', { username: 'una', password: PW, emailCode: await nextCode(seen) })).json.token as string;
    const refused = await call('DELETE', '/me', { password: PW }, una);
    expect(refused.status).toBe(403);
    expect(refused.json.code).toBe('email_code_required');
    seen = sink.inbox.length;
    expect((await call('POST', '/me/email-code', { purpose: 'delete_account' }, una)).status).toBe(202);
    expect((await call('DELETE', '/me', { password: PW, emailCode: await nextCode(seen) }, una)).status).toBe(204);
    await expect(app.accounts.get('una')).rejects.toMatchObject({ code: 'not_found' });
  });
});
