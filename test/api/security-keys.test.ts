import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { startApi } from '../../src/cli/serve.js';
import { loadConfig } from '../../src/config/load.js';
import { SoftKey } from '../helpers/soft-key.js';

const PW = 'Account-pass-1';
const ORIGIN = 'https://mail.example.test';
let app: App;
let api: { port: number; close(): Promise<void> };

type Json = Record<string, any>;

async function call(method: string, path: string, opts: { token?: string; body?: unknown } = {}): Promise<{ status: number; json: Json }> {
  const res = await fetch(`http://127.0.0.1:${api.port}/api/v1${path}`, {
    method,
    headers: { ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Json) : {} };
}

const signIn = (extra: Json = {}) => call('POST', '/session', { body: { username: 'kim', password: PW, ...extra } });

beforeAll(async () => {
  const env = {
    POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-keys-')),
    POSTERN_AUTH__BCRYPT_ROUNDS: '10',
    POSTERN_LOG__LEVEL: 'silent',
    POSTERN_API__PORT: '0',
    POSTERN_WEBAUTHN__RP_ID: 'mail.example.test',
    POSTERN_WEBAUTHN__ORIGINS: JSON.stringify([ORIGIN]),
  };
  app = await createApp(loadConfig({ env }));
  api = await startApi(app);
  await app.accounts.createUser({ name: 'setup' }, { username: 'kim', password: PW });
});
afterAll(async () => {
  await api?.close();
  await app?.close();
});

describe('security keys over the web API', () => {
  it('adds a key, then signs in with password and key; a replayed answer is refused; removal is audited', async () => {
    const key = new SoftKey('mail.example.test', ORIGIN);
    const token = (await signIn()).json.token as string;
    const options = await call('POST', '/me/security-keys/options', { token });
    expect(options.status).toBe(200);
    expect(options.json).toMatchObject({ rp: { id: 'mail.example.test' }, user: { name: 'kim' }, attestation: 'none' });

    const added = await call('POST', '/me/security-keys', { token, body: { response: key.register(options.json), label: 'YubiKey' } });
    expect(added.status).toBe(201);
    expect(added.json.key).toMatchObject({ label: 'YubiKey', lastUsedAt: null });
    expect(added.json.recoveryCodes).toHaveLength(10);
    expect((await call('GET', '/me', { token })).json.twoFactor).toBe(true);

    const missing = await signIn();
    expect(missing.status).toBe(401);
    expect(missing.json).toMatchObject({ code: 'second_factor_required', methods: ['security_key', 'recovery'] });
    expect(missing.json.securityKeyOptions.allowCredentials).toEqual([{ id: key.id, type: 'public-key', transports: ['usb'] }]);

    const answer = key.assert(missing.json.securityKeyOptions);
    const ok = await signIn({ securityKey: answer });
    expect(ok.status, JSON.stringify(ok.json)).toBe(200);
    const replay = await signIn({ securityKey: answer });
    expect(replay.status).toBe(401);
    expect(replay.json.code).toBe('second_factor_invalid');

    const listed = await call('GET', '/me/security-keys', { token: ok.json.token });
    expect(listed.json).toHaveLength(1);
    expect(listed.json[0].lastUsedAt).not.toBeNull();
    expect((await call('DELETE', `/me/security-keys/${listed.json[0].id}`, { token: ok.json.token })).status).toBe(204);
    const history = await call('GET', '/me/history?limit=50', { token: ok.json.token });
    expect(history.json.events.map((e: Json) => e.action)).toEqual(expect.arrayContaining(['security_key.add', 'security_key.delete']));
  });

  it('answers a malformed key answer with 400 invalid_input, and one made for another site with 400 invalid_security_key', async () => {
    await app.accounts.createUser({ name: 'setup' }, { username: 'lee', password: PW });
    const token = (await call('POST', '/session', { body: { username: 'lee', password: PW } })).json.token as string;
    const bad = await call('POST', '/me/security-keys', { token, body: { response: { id: 'x' } } });
    expect(bad.status).toBe(400);
    expect(bad.json.code).toBe('invalid_input');
    const options = await call('POST', '/me/security-keys/options', { token });
    const phished = new SoftKey('mail.example.test', 'https://mail.example.test.evil.example').register(options.json);
    const refused = await call('POST', '/me/security-keys', { token, body: { response: phished } });
    expect(refused.status).toBe(400);
    expect(refused.json.code).toBe('invalid_security_key');
    expect((await call('GET', '/me', { token })).json.twoFactor).toBe(false);
  });

  it('refuses to start when the relying party id is an IP address', () => {
    expect(() => loadConfig({ env: { POSTERN_WEBAUTHN__RP_ID: '127.0.0.1' } })).toThrow(/webauthn\.rp_id: expected a host name/);
  });
});
