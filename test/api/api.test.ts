import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SwaggerParser from '@apidevtools/swagger-parser';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { startApi } from '../../src/cli/serve.js';
import { loadConfig } from '../../src/config/load.js';
import { temporary } from '../../src/core/errors.js';
import { totpCode } from '../../src/core/totp.js';

const PW = 'Account-pass-1';
let app: App;
let api: { port: number; close(): Promise<void> };
let base: string;

type Json = Record<string, any>;

async function call(method: string, path: string, opts: { token?: string; body?: unknown } = {}) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
      ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
  });
  const text = await res.text();
  let json: Json;
  try {
    json = text ? (JSON.parse(text) as Json) : {};
  } catch {
    json = { text };
  }
  return { status: res.status, json, headers: res.headers, text };
}

async function signIn(username: string, password: string, extra: Json = {}) {
  return call('POST', '/api/v1/session', { body: { username, password, ...extra } });
}

async function tokenOf(username: string, password: string, extra: Json = {}): Promise<string> {
  const r = await signIn(username, password, extra);
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.token as string;
}

const codeAt = (secret: string, stepsFromNow: number) => totpCode(secret, new Date(Date.now() + stepsFromNow * 30_000));

beforeAll(async () => {
  const env = {
    POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-api-')),
    POSTERN_AUTH__BCRYPT_ROUNDS: '10',
    POSTERN_LOG__LEVEL: 'silent',
    POSTERN_API__PORT: '0',
  };
  app = await createApp(loadConfig({ env }));
  api = await startApi(app);
  base = `http://127.0.0.1:${api.port}`;
  await app.accounts.createUser({ name: 'setup' }, { username: 'root', password: PW, role: 'admin' });
});
afterAll(async () => {
  await api?.close();
  await app?.close();
});

describe('web API over HTTP', () => {
  let admin: string;
  let secret: string;
  let enrolCodes: string[];

  it('lets an admin create a user, and the user sign in and read their account', async () => {
    admin = await tokenOf('root', PW);
    const created = await call('POST', '/api/v1/users', { token: admin, body: { username: 'Alice', password: PW, email: 'alice@example.test' } });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ username: 'alice', role: 'user', twoFactor: false });
    expect(created.json.passwordHash).toBeUndefined();
    const alice = await tokenOf('alice', PW);
    expect(alice).toMatch(/^pss_/);
    const me = await call('GET', '/api/v1/me', { token: alice });
    expect(me.json).toMatchObject({ username: 'alice', email: 'alice@example.test' });
  });

  it('enrols TOTP in two steps with a code computed from the returned secret', async () => {
    const alice = await tokenOf('alice', PW);
    const setup = await call('POST', '/api/v1/me/totp/setup', { token: alice });
    expect(setup.status).toBe(200);
    secret = setup.json.secret;
    expect(setup.json.uri).toMatch(/^otpauth:\/\/totp\/.*secret=/);
    expect(setup.json.qrCode).toMatch(/^data:image\/png;base64,/);
    expect((await call('POST', '/api/v1/me/totp/enable', { token: alice, body: { code: '000000' } })).json.code).toBe('invalid_code');
    const enabled = await call('POST', '/api/v1/me/totp/enable', { token: alice, body: { code: await codeAt(secret, 0) } });
    expect(enabled.status).toBe(200);
    expect(enabled.json.recoveryCodes).toHaveLength(10);
    enrolCodes = enabled.json.recoveryCodes;

    const missing = await signIn('alice', PW);
    expect(missing.status).toBe(401);
    expect(missing.json).toMatchObject({ code: 'second_factor_required', methods: ['totp', 'recovery'] });
    expect((await signIn('alice', PW, { totp: await codeAt(secret, 1) })).status).toBe(200);
  });

  it('creates an ASP that works for its scope until revoked; the password is shown only once', async () => {
    const alice = await tokenOf('alice', PW, { totp: await codeAt(secret, 2) });
    const made = await call('POST', '/api/v1/me/asps', { token: alice, body: { description: 'phone', scopes: ['imap'], expiresIn: '90d' } });
    expect(made.status).toBe(201);
    expect(made.json.password).toMatch(/^[a-z]{4} [a-z]{4} [a-z]{4} [a-z]{4}$/);
    const use = (scope: 'imap' | 'smtp') => app.auth.authenticate({ username: 'alice', secret: made.json.password, scope, ip: '192.0.2.5', protocol: scope });
    expect(await use('imap')).toMatchObject({ ok: true });
    expect(await use('smtp')).toMatchObject({ ok: false, reason: 'scope_denied' });
    const list = await call('GET', '/api/v1/me/asps', { token: alice });
    expect(list.json).toHaveLength(1);
    expect(list.json[0]).toMatchObject({ description: 'phone', scopes: ['imap'], lastUse: { ip: '192.0.2.5', protocol: 'imap' } });
    expect(list.text).not.toContain(made.json.password);
    expect((await call('DELETE', `/api/v1/me/asps/${made.json.asp.id}`, { token: alice })).status).toBe(204);
    expect(await use('imap')).toMatchObject({ ok: false, reason: 'invalid_credentials' });
    expect((await call('POST', '/api/v1/me/asps', { token: alice, body: { scopes: ['master'] } })).status).toBe(400);
  });

  it('accepts each regenerated recovery code exactly once', async () => {
    // TOTP codes up to 2 steps ahead are used up by now: sign in with an enrolment recovery code.
    const alice = await tokenOf('alice', PW, { recoveryCode: enrolCodes[0] });
    const r = await call('POST', '/api/v1/me/recovery-codes', { token: alice });
    expect((await signIn('alice', PW, { recoveryCode: enrolCodes[1] })).json.code).toBe('second_factor_invalid');
    const code = r.json.recoveryCodes[0] as string;
    expect((await signIn('alice', PW, { recoveryCode: code })).status).toBe(200);
    const again = await signIn('alice', PW, { recoveryCode: code });
    expect(again.status).toBe(401);
    expect(again.json.code).toBe('second_factor_invalid');
  });

  it('trusts a device so no second factor is asked on it, until the user removes it', async () => {
    const first = await signIn('alice', PW, {
      recoveryCode: (await app.accounts.regenerateRecoveryCodes({ name: 't' }, 'alice'))[0],
      trustDevice: true,
      deviceLabel: 'laptop',
    });
    expect(first.status).toBe(200);
    const deviceToken = first.json.deviceToken as string;
    expect(deviceToken).toMatch(/^ptd_/);
    const onDevice = await signIn('alice', PW, { deviceToken });
    expect(onDevice.status).toBe(200);
    expect((await signIn('alice', 'Wrong-pass-1', { deviceToken })).status).toBe(401);
    // A session that skipped the second factor on a trusted device must prove it again
    // before it adds anything that opens the account (step-up).
    const stepUp = await call('POST', '/api/v1/me/asps', { token: onDevice.json.token, body: { scopes: ['imap'] } });
    expect(stepUp.status).toBe(403);
    expect(stepUp.json.code).toBe('step_up_required');
    expect((await call('POST', '/api/v1/me/recovery-codes', { token: onDevice.json.token })).json.code).toBe('step_up_required');
    expect((await call('POST', '/api/v1/session/confirm', { token: onDevice.json.token, body: { password: PW } })).json.code).toBe('second_factor_required');
    const [code] = await app.accounts.regenerateRecoveryCodes({ name: 't' }, 'alice');
    expect((await call('POST', '/api/v1/session/confirm', { token: onDevice.json.token, body: { password: PW, recoveryCode: code } })).status).toBe(204);
    const made = await call('POST', '/api/v1/me/asps', { token: onDevice.json.token, body: { scopes: ['imap'] } });
    expect(made.status).toBe(201);
    await app.accounts.revokeAsp({ name: 't' }, 'alice', made.json.asp.id);
    const devices = await call('GET', '/api/v1/me/devices', { token: onDevice.json.token });
    expect(devices.json.map((x: Json) => x.label)).toEqual(['laptop']);
    expect((await call('DELETE', `/api/v1/me/devices/${devices.json[0].id}`, { token: onDevice.json.token })).status).toBe(204);
    const after = await signIn('alice', PW, { deviceToken });
    expect(after.json.code).toBe('second_factor_required');
  });

  it('an admin reset of 2FA hands over a temporary password and recovery codes, and is told to the user once', async () => {
    await call('POST', '/api/v1/users', { token: admin, body: { username: 'rita', password: PW } });
    const before = await tokenOf('rita', PW);
    const reset = await call('POST', '/api/v1/users/rita/2fa/reset', { token: admin });
    expect(reset.status).toBe(200);
    const { temporaryPassword, recoveryCodes } = reset.json;
    expect(reset.json.user).toMatchObject({ twoFactor: true });
    expect((await call('GET', '/api/v1/me', { token: before })).status).toBe(401);
    // The old password no longer opens the account; the temporary one needs a recovery code.
    expect((await signIn('rita', PW)).json.code).toBe('invalid_credentials');
    expect((await signIn('rita', temporaryPassword)).json.code).toBe('second_factor_required');
    const next = await signIn('rita', temporaryPassword, { recoveryCode: recoveryCodes[0] });
    expect(next.status).toBe(200);
    expect(next.json).toMatchObject({ notices: ['two_factor_reset_by_admin'], mustChangePassword: true });
    // Nothing but the password change until it is done.
    const t = next.json.token as string;
    expect((await call('POST', '/api/v1/me/asps', { token: t, body: { scopes: ['imap'] } })).json.code).toBe('password_change_required');
    expect((await call('PUT', '/api/v1/me/password', { token: t, body: { currentPassword: temporaryPassword, newPassword: 'Rita-new-pass-2' } })).status).toBe(
      204,
    );
    expect((await call('POST', '/api/v1/me/asps', { token: t, body: { scopes: ['imap'] } })).status).toBe(201);
    expect((await signIn('rita', 'Rita-new-pass-2', { recoveryCode: recoveryCodes[1] })).json.notices).toEqual([]);
    // The tests below use alice without a second factor.
    await app.accounts.disableSecondFactor({ name: 'test' }, 'alice');
  });

  it('signs out one session, and all sessions', async () => {
    const a = await tokenOf('alice', PW);
    const b = await tokenOf('alice', PW);
    expect((await call('DELETE', '/api/v1/session', { token: a })).status).toBe(204);
    expect((await call('GET', '/api/v1/me', { token: a })).status).toBe(401);
    expect((await call('GET', '/api/v1/me', { token: b })).status).toBe(200);
    expect((await call('DELETE', '/api/v1/sessions', { token: b })).json.signedOut).toBeGreaterThanOrEqual(1);
    expect((await call('GET', '/api/v1/me', { token: b })).status).toBe(401);
    const { events } = await app.store.audit.query({ username: 'alice', action: 'session.signout', limit: 5 }, new Date());
    expect(events).toHaveLength(2);
  });
  it('signs out the other sessions and keeps this one', async () => {
    const here = await tokenOf('alice', PW);
    const there = [await tokenOf('alice', PW), await tokenOf('alice', PW)];
    expect((await call('DELETE', '/api/v1/sessions?others=true', { token: here })).json.signedOut).toBeGreaterThanOrEqual(2);
    for (const t of there) expect((await call('GET', '/api/v1/me', { token: t })).status).toBe(401);
    expect((await call('GET', '/api/v1/me', { token: here })).status).toBe(200);
    expect((await call('DELETE', '/api/v1/session', { token: here })).status).toBe(204);
  });

  it('changes the password under the policy, and the old one stops working', async () => {
    const t = await tokenOf('alice', PW);
    const weak = await call('PUT', '/api/v1/me/password', { token: t, body: { currentPassword: PW, newPassword: 'short' } });
    expect(weak.status).toBe(400);
    expect(weak.json.message).toContain('at least 8 characters');
    expect((await call('PUT', '/api/v1/me/password', { token: t, body: { currentPassword: 'Not-it-123', newPassword: 'Next-pass-77' } })).status).toBe(401);
    expect((await call('PUT', '/api/v1/me/password', { token: t, body: { currentPassword: PW, newPassword: 'Next-pass-77' } })).status).toBe(204);
    expect((await signIn('alice', PW)).status).toBe(401);
    expect((await signIn('alice', 'Next-pass-77')).status).toBe(200);
  });

  it('lets an auditor filter and page the log, export CSV, and change nothing', async () => {
    await call('POST', '/api/v1/users', { token: admin, body: { username: 'audrey', password: PW, role: 'auditor' } });
    const auditor = await tokenOf('audrey', PW);
    const all: Json[] = [];
    let cursor: string | undefined;
    do {
      const page = await call('GET', `/api/v1/audit?user=alice&action=auth&limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, {
        token: auditor,
      });
      expect(page.status).toBe(200);
      all.push(...page.json.events);
      cursor = page.json.nextCursor ?? undefined;
    } while (cursor);
    const direct = await app.store.audit.query({ username: 'alice', action: 'auth', limit: 1000 }, new Date());
    expect(all.map((e) => e.id)).toEqual(direct.events.map((e) => e.id));
    expect(all.length).toBeGreaterThan(5);
    const failures = await call('GET', '/api/v1/audit?user=alice&result=failure&limit=100', { token: auditor });
    expect(failures.json.events.length).toBeGreaterThan(0);
    expect(failures.json.events.every((e: Json) => e.result === 'failure' && e.username === 'alice')).toBe(true);
    const csv = await call('GET', '/api/v1/audit?user=alice&limit=5&format=csv', { token: auditor });
    expect(csv.headers.get('content-type')).toContain('text/csv');
    const rows = csv.text.trim().split('\r\n');
    expect(rows[0]).toBe('time,action,result,reason,username,ip,protocol,scope,aspId,sessionId,userAgent,actor');
    expect(rows).toHaveLength(6);

    const writes: Array<[string, string, unknown?]> = [
      ['POST', '/api/v1/users', { username: 'x', password: PW }],
      ['PATCH', '/api/v1/users/alice', { status: 'disabled' }],
      ['DELETE', '/api/v1/users/alice'],
      ['POST', '/api/v1/users/alice/2fa/reset'],
      ['POST', '/api/v1/tokens', { role: 'admin' }],
      ['DELETE', '/api/v1/tokens/000000000000000000000000'],
      ['GET', '/api/v1/users'],
    ];
    for (const [method, path, body] of writes) {
      const r = await call(method, path, { token: auditor, body });
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.json.code).toBe('forbidden');
    }
    expect((await app.accounts.get('alice')).status).toBe('active');
  });

  it("refuses a user on admin routes, on the audit log, and on another user's ASPs", async () => {
    await call('POST', '/api/v1/users', { token: admin, body: { username: 'bob', password: PW } });
    const bob = await tokenOf('bob', PW);
    const alice = await tokenOf('alice', 'Next-pass-77');
    const asp = await call('POST', '/api/v1/me/asps', { token: alice, body: { scopes: ['*'] } });
    expect((await call('DELETE', `/api/v1/me/asps/${asp.json.asp.id}`, { token: bob })).status).toBe(404);
    expect((await app.accounts.listAsps('alice')).map((a) => a.id)).toContain(asp.json.asp.id);
    expect((await call('GET', '/api/v1/users', { token: bob })).status).toBe(403);
    expect((await call('GET', '/api/v1/audit', { token: bob })).status).toBe(403);
    expect((await call('GET', '/api/v1/me')).status).toBe(401);
    expect((await call('GET', '/api/v1/me', { token: 'pss_forged' })).status).toBe(401);
  });

  it('turns 2FA off only with the password and a second factor', async () => {
    const bob = await tokenOf('bob', PW);
    const setup = await call('POST', '/api/v1/me/totp/setup', { token: bob });
    await call('POST', '/api/v1/me/totp/enable', { token: bob, body: { code: await codeAt(setup.json.secret, 0) } });
    const noFactor = await call('POST', '/api/v1/me/totp/disable', { token: bob, body: { password: PW } });
    expect(noFactor.status).toBe(401);
    expect(noFactor.json.code).toBe('second_factor_required');
    const wrongPw = await call('POST', '/api/v1/me/totp/disable', { token: bob, body: { password: 'Wrong-pass-9', totp: await codeAt(setup.json.secret, 1) } });
    expect(wrongPw.status).toBe(401);
    const ok = await call('POST', '/api/v1/me/totp/disable', { token: bob, body: { password: PW, totp: await codeAt(setup.json.secret, 1) } });
    expect(ok.status).toBe(204);
    expect((await call('GET', '/api/v1/me', { token: bob })).json.twoFactor).toBe(false);
  });

  it('issues API tokens for automation, shown once, limited to their role, revocable', async () => {
    const made = await call('POST', '/api/v1/tokens', { token: admin, body: { role: 'auditor', description: 'SIEM export' } });
    expect(made.status).toBe(201);
    const t = made.json.token as string;
    expect(t).toMatch(/^pat_/);
    expect((await call('GET', '/api/v1/audit?limit=1', { token: t })).status).toBe(200);
    expect((await call('POST', '/api/v1/users', { token: t, body: { username: 'y', password: PW } })).status).toBe(403);
    expect((await call('GET', '/api/v1/me', { token: t })).status).toBe(403);
    const list = await call('GET', '/api/v1/tokens', { token: admin });
    expect(list.text).not.toContain(t);
    expect((await call('DELETE', `/api/v1/tokens/${made.json.id}`, { token: admin })).status).toBe(204);
    expect((await call('GET', '/api/v1/audit?limit=1', { token: t })).status).toBe(401);
  });

  it('applies the rate windows to API sign-in: 429 with Retry-After', async () => {
    await call('POST', '/api/v1/users', { token: admin, body: { username: 'carl', password: PW } });
    for (let i = 0; i < 5; i++) expect((await signIn('carl', `Wrong-${i}-pass`)).status).toBe(401);
    const locked = await signIn('carl', PW);
    expect(locked.status).toBe(429);
    expect(locked.json.code).toBe('locked');
    expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('answers bad input with 400 and a stable code, and audits API changes', async () => {
    const bad = await call('POST', '/api/v1/session', { body: { username: 'alice' } });
    expect(bad.status).toBe(400);
    expect(bad.json.code).toBe('invalid_input');
    const notJson = await fetch(`${base}/api/v1/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' });
    expect(notJson.status).toBe(400);
    const { events } = await app.store.audit.query({ username: 'bob', limit: 20 }, new Date());
    expect(events.find((e) => e.action === 'user.create')).toMatchObject({ actor: 'root', protocol: 'http' });
  });

  it('publishes an OpenAPI document that validates and lists every route; curl can use the API', async () => {
    const doc = (await call('GET', '/openapi.json')).json;
    await SwaggerParser.validate(structuredClone(doc) as never);
    const paths = Object.keys(doc.paths);
    for (const p of [
      '/api/v1/session',
      '/api/v1/sessions',
      '/api/v1/me',
      '/api/v1/me/password',
      '/api/v1/me/asps',
      '/api/v1/me/asps/{id}',
      '/api/v1/me/totp/setup',
      '/api/v1/me/totp/enable',
      '/api/v1/me/totp/disable',
      '/api/v1/me/recovery-codes',
      '/api/v1/me/devices',
      '/api/v1/me/devices/{id}',
      '/api/v1/me/history',
      '/api/v1/users',
      '/api/v1/users/{name}',
      '/api/v1/users/{name}/2fa/reset',
      '/api/v1/tokens',
      '/api/v1/tokens/{id}',
      '/api/v1/audit',
      '/api/v1/me/security-keys',
      '/api/v1/me/security-keys/options',
      '/api/v1/me/security-keys/{id}',
      '/api/v1/me/pgp',
      '/api/v1/me/email-code',
      '/api/v1/policy/features',
      '/api/v1/policy/features/{name}',
      '/api/v1/domains/{domain}/features/{name}',
    ]) {
      expect(paths).toContain(p);
    }
    // Every operation says what it is for, and every request body comes with an example.
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
      for (const [method, op] of Object.entries(item)) {
        expect(String(op.description ?? '').length, `${method} ${path} description`).toBeGreaterThan(20);
        if (op.requestBody) expect(op.requestBody.content['application/json'].example, `${method} ${path} example`).toBeDefined();
      }
    }
    // Every error answer is described and names the one Error schema.
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, { responses: Record<string, any> }>>)) {
      for (const [method, op] of Object.entries(item)) {
        for (const [status, r] of Object.entries(op.responses)) {
          if (Number(status) < 400) continue;
          expect(String(r.description), `${method} ${path} ${status}`).not.toMatch(/^(Default Response|Error|undefined)?$/);
          expect(r.content['application/json'].schema, `${method} ${path} ${status}`).toEqual({ $ref: '#/components/schemas/Error' });
        }
      }
    }
    expect((await fetch(`${base}/docs`)).status).toBeLessThan(400);
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        'curl',
        ['-s', '-X', 'POST', '-H', 'content-type: application/json', '-d', JSON.stringify({ username: 'bob', password: PW }), `${base}/api/v1/session`],
        (err, stdout) => (err ? reject(err) : resolve(stdout)),
      ),
    );
    expect(JSON.parse(out).token).toMatch(/^pss_/);
  });

  it('mandatory 2FA per domain: a user without it may only set it up; a locked feature refuses domain overrides', async () => {
    await call('POST', '/api/v1/users', { token: admin, body: { username: 'dora@strict.test', password: PW } });
    const set = await call('PUT', '/api/v1/domains/strict.test/features/two_factor_required', { token: admin, body: { status: 'enabled' } });
    expect(set.status).toBe(200);
    expect(set.json.features).toEqual({ two_factor_required: 'enabled' });
    const signed = await signIn('dora@strict.test', PW);
    expect(signed.json.mustSetUpTwoFactor).toBe(true);
    const t = signed.json.token as string;
    const blocked = await call('GET', '/api/v1/me/asps', { token: t });
    expect(blocked.status).toBe(403);
    expect(blocked.json.code).toBe('two_factor_setup_required');
    const setup = await call('POST', '/api/v1/me/totp/setup', { token: t });
    expect(setup.status).toBe(200);
    expect((await call('POST', '/api/v1/me/totp/enable', { token: t, body: { code: await codeAt(setup.json.secret, 0) } })).status).toBe(200);
    expect((await call('GET', '/api/v1/me/asps', { token: t })).status).toBe(200);

    const starter = await call('POST', '/api/v1/users', { token: admin, body: { username: 'finn@strict.test', password: PW, starter: true } });
    expect(starter.status).toBe(201);
    expect(starter.json).toMatchObject({ twoFactor: true, mustChangePassword: true });
    expect(starter.json.recoveryCodes).toHaveLength(10);
    const first = await signIn('finn@strict.test', PW, { recoveryCode: starter.json.recoveryCodes[0] });
    expect(first.json).toMatchObject({ mustChangePassword: true, mustSetUpTwoFactor: false });

    expect((await call('PUT', '/api/v1/policy/features/two_factor_required', { token: admin, body: { status: 'disabled', lock: 'locked' } })).status).toBe(204);
    const refused = await call('PUT', '/api/v1/domains/other.test/features/two_factor_required', { token: admin, body: { status: 'enabled' } });
    expect(refused.status).toBe(409);
    expect((await call('GET', '/api/v1/policy/features', { token: admin })).json.two_factor_required).toEqual({ status: 'disabled', lock: 'locked' });
    expect(
      (await call('PUT', '/api/v1/policy/features/two_factor_required', { token: 'pss_forged', body: { status: 'enabled', lock: 'locked' } })).status,
    ).toBe(401);
  });

  it('takes a PGP public key and turns encryption of stored mail on and off', async () => {
    const t = await tokenOf('bob', PW);
    const { publicKey } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ email: 'bob@example.test' }], format: 'armored' });
    const up = await call('PUT', '/api/v1/me/pgp', { token: t, body: { publicKey, encrypt: true } });
    expect(up.status).toBe(200);
    expect(up.json.pgp).toMatchObject({ encrypt: true, fingerprint: expect.stringMatching(/^[0-9A-F]{40}$/) });
    expect((await call('PUT', '/api/v1/me/pgp', { token: t, body: { publicKey: 'garbage', encrypt: true } })).status).toBe(400);
    expect((await call('DELETE', '/api/v1/me/pgp', { token: t })).json.pgp).toBeNull();
  });

  it('serves Prometheus metrics that count decisions and carry no usernames or secrets', async () => {
    const r = await fetch(`${base}/metrics`);
    expect(r.headers.get('content-type')).toContain('text/plain');
    const text = await r.text();
    const failures = /postern_audit_events_total\{action="auth",result="failure",reason="invalid_credentials",protocol="http"\} (\d+)/.exec(text);
    expect(Number(failures?.[1])).toBeGreaterThan(0);
    expect(text).toMatch(/postern_hash_queue \d+/);
    expect(text).not.toMatch(/alice|carl|pss_|pat_/);
    expect(text).toMatch(/postern_auth_decision_seconds_bucket\{le="0\.5",protocol="http",result="failure"\} \d+/);
    expect(text).toMatch(/postern_build_info\{version="\d+\.\d+\.\d+",node="[\d.]+"\} 1/);
    // Reasons other than a login's carry ids (devices, tokens, ASPs): never a label.
    const reasons = [...text.matchAll(/postern_audit_events_total\{action="([^"]+)",result="[^"]+",reason="([^"]*)"/g)];
    expect(reasons.length).toBeGreaterThan(3);
    for (const [, action, reason] of reasons) if (action !== 'auth') expect(reason).toBe('');
  });

  it('lets a user delete their own account with the password, and then nothing of it opens', async () => {
    await call('POST', '/api/v1/users', { token: admin, body: { username: 'zoe', password: PW } });
    const zoe = await tokenOf('zoe', PW);
    const { password: asp } = (await call('POST', '/api/v1/me/asps', { token: zoe, body: { scopes: ['imap'] } })).json;
    expect((await call('DELETE', '/api/v1/me', { token: zoe, body: { password: 'Wrong-pass-1!' } })).json.code).toBe('invalid_credentials');
    expect((await call('DELETE', '/api/v1/me', { token: zoe, body: { password: PW } })).status).toBe(204);
    expect((await call('GET', '/api/v1/me', { token: zoe })).status).toBe(401);
    expect((await signIn('zoe', PW)).json.code).toBe('invalid_credentials');
    expect(await app.auth.authenticate({ username: 'zoe', secret: asp, scope: 'imap', ip: '127.0.0.1', protocol: 'imap' })).toMatchObject({ ok: false });
    const audit = await call('GET', '/api/v1/audit?action=user.delete', { token: admin });
    expect(audit.json.events[0]).toMatchObject({ username: 'zoe', actor: 'zoe' });
    expect((await call('DELETE', '/api/v1/me', { token: admin, body: { password: PW } })).status).toBe(403);
  });

  it('compares only 6 of 50 second-factor codes sent at once to the sign-in, and answers the rest 429', async () => {
    await call('POST', '/api/v1/users', { token: admin, body: { username: 'tess', password: PW } });
    const tess = await tokenOf('tess', PW);
    const setup = await call('POST', '/api/v1/me/totp/setup', { token: tess });
    expect((await call('POST', '/api/v1/me/totp/enable', { token: tess, body: { code: await codeAt(setup.json.secret, 0) } })).status).toBe(200);
    const valid = new Set(await Promise.all([-2, -1, 0, 1, 2, 3].map((s) => codeAt(setup.json.secret, s))));
    const guesses = Array.from({ length: 60 }, (_, i) => String(100000 + i * 7919).slice(0, 6))
      .filter((c) => !valid.has(c))
      .slice(0, 50);
    const answers = await Promise.all(guesses.map((totp) => signIn('tess', PW, { totp })));
    expect(answers.filter((a) => a.status === 401 && a.json.code === 'second_factor_invalid')).toHaveLength(6);
    const refused = answers.filter((a) => a.status === 429);
    expect(refused).toHaveLength(44);
    expect(Number(refused[0]!.headers.get('retry-after'))).toBeGreaterThan(0);
    // The right code now waits for the window too.
    expect((await signIn('tess', PW, { totp: await codeAt(setup.json.secret, 0) })).status).toBe(429);
  });

  it("binds API tokens to their creator: a demoted or disabled administrator's tokens stop working", async () => {
    await call('POST', '/api/v1/users', { token: admin, body: { username: 'ada', password: PW, role: 'admin' } });
    const ada = await tokenOf('ada', PW);
    const made = await call('POST', '/api/v1/tokens', { token: ada, body: { role: 'admin', description: 'automation' } });
    const pat = made.json.token as string;
    const child = (await call('POST', '/api/v1/tokens', { token: pat, body: { role: 'auditor' } })).json.token as string;
    expect((await call('GET', '/api/v1/users', { token: pat })).status).toBe(200);
    expect((await call('GET', '/api/v1/audit?limit=1', { token: child })).status).toBe(200);
    await call('PATCH', '/api/v1/users/ada', { token: admin, body: { role: 'user' } });
    expect((await call('GET', '/api/v1/users', { token: pat })).status).toBe(401);
    expect((await call('GET', '/api/v1/audit?limit=1', { token: child })).status).toBe(401);
    await call('PATCH', '/api/v1/users/ada', { token: admin, body: { role: 'admin' } });
    expect((await call('GET', '/api/v1/users', { token: pat })).status).toBe(200);
    await call('PATCH', '/api/v1/users/ada', { token: admin, body: { status: 'disabled' } });
    expect((await call('GET', '/api/v1/users', { token: pat })).status).toBe(401);
  });

  it('refuses lifetimes past ten years with 400 and stores nothing', async () => {
    const t = await tokenOf('alice', 'Next-pass-77');
    const before = (await app.accounts.listAsps('alice')).length;
    for (const expiresIn of ['100000000d', '99999999999999999999d', '3651d']) {
      const asp = await call('POST', '/api/v1/me/asps', { token: t, body: { scopes: ['imap'], expiresIn } });
      expect(asp.status, expiresIn).toBe(400);
      const token = await call('POST', '/api/v1/tokens', { token: admin, body: { role: 'auditor', expiresIn } });
      expect(token.status, expiresIn).toBe(400);
    }
    expect(await app.accounts.listAsps('alice')).toHaveLength(before);
    expect(
      (await call('GET', '/api/v1/tokens', { token: admin })).json.every((x: Json) => x.expiresAt === null || !Number.isNaN(Date.parse(x.expiresAt))),
    ).toBe(true);
    expect((await call('POST', '/api/v1/me/asps', { token: t, body: { scopes: ['imap'], expiresIn: '3650d' } })).status).toBe(201);
  });

  it('binds an ASP to networks given at creation, and says so in the list', async () => {
    await call('POST', '/api/v1/users', { token: admin, body: { username: 'nina', password: PW } });
    const t = await tokenOf('nina', PW);
    expect((await call('POST', '/api/v1/me/asps', { token: t, body: { scopes: ['imap'], networks: ['300.1.2.3'] } })).status).toBe(400);
    const made = await call('POST', '/api/v1/me/asps', { token: t, body: { scopes: ['imap'], networks: ['203.0.113.0/24'] } });
    expect(made.status).toBe(201);
    expect(made.json.asp.networks).toEqual(['203.0.113.0/24']);
    const login = (ip: string) => app.auth.authenticate({ username: 'nina', secret: made.json.password, scope: 'imap', ip, protocol: 'imap' });
    expect(await login('127.0.0.1')).toMatchObject({ ok: false, reason: 'address_denied' });
    expect(await login('203.0.113.9')).toMatchObject({ ok: true });
    const list = await call('GET', '/api/v1/me/asps', { token: t });
    expect(list.json.find((a: Json) => a.id === made.json.asp.id).networks).toEqual(['203.0.113.0/24']);
  });

  it("lets users change their notification email after a step-up, and admins anyone's", async () => {
    await call('POST', '/api/v1/users', { token: admin, body: { username: 'omar', password: PW } });
    const omar = await tokenOf('omar', PW);
    expect((await call('PUT', '/api/v1/me/email', { token: omar, body: { email: 'omar@example.test' } })).json).toMatchObject({ email: 'omar@example.test' });
    expect((await call('PUT', '/api/v1/me/email', { token: omar, body: { email: 'nope' } })).status).toBe(400);
    expect((await call('PATCH', '/api/v1/users/omar', { token: admin, body: { email: null } })).json).toMatchObject({ email: null });
  });

  it('checks audit filters and takes the same time syntax as the CLI', async () => {
    const bad = await call('GET', '/api/v1/audit?action=login', { token: admin });
    expect(bad.status).toBe(400);
    expect(bad.json.message).toContain('action must be one of');
    expect((await call('GET', '/api/v1/audit?since=yesterday', { token: admin })).status).toBe(400);
    const recent = await call('GET', '/api/v1/audit?since=1h&action=auth&limit=5', { token: admin });
    expect(recent.status).toBe(200);
    expect(recent.json.events.length).toBeGreaterThan(0);
    const iso = await call('GET', `/api/v1/audit?since=${encodeURIComponent(new Date(Date.now() - 3_600_000).toISOString())}&limit=5`, { token: admin });
    expect(iso.json.events.length).toBeGreaterThan(0);
  });

  it('answers 503, not 401, when the store is down', async () => {
    const users = app.store.users;
    const original = users.findByName.bind(users);
    users.findByName = () => Promise.reject(temporary(new Error('down'), 'store'));
    try {
      const r = await signIn('bob', PW);
      expect(r.status).toBe(503);
      expect(r.json.code).toBe('temporary_failure');
    } finally {
      users.findByName = original;
    }
  });
});
