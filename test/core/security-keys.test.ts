import { beforeEach, describe, expect, it } from 'vitest';
import type { AuthResult } from '../../src/core/types.js';
import { PASSWORD, actor, req, testCore, type TestCore } from '../helpers/core.js';
import { SoftKey } from '../helpers/soft-key.js';

let c: TestCore;

const reason = (r: AuthResult) => (r.ok ? 'ok' : r.reason);

/** Adds a key to alice through the real two steps; returns the key and any recovery codes. */
async function addKey(key = new SoftKey(), name = 'alice') {
  const options = await c.accounts.securityKeyOptions(actor, name);
  const added = await c.accounts.addSecurityKey(actor, name, key.register(options), 'desk key');
  return { key, stored: added.key, recoveryCodes: added.recoveryCodes };
}

/** A master sign-in without a factor: the refusal carries the key's challenge. */
async function challenge(name = 'alice'): Promise<Record<string, unknown>> {
  const r = await c.auth.authenticate(req(name, PASSWORD, 'master'));
  expect(r).toMatchObject({ ok: false, reason: 'second_factor_required' });
  return (r as { securityKeyOptions: Record<string, unknown> }).securityKeyOptions;
}

const withKey = (assertion: Record<string, unknown>, name = 'alice') =>
  c.auth.authenticate({ ...req(name, PASSWORD, 'master'), secondFactor: { kind: 'security_key', assertion } });

beforeEach(async () => {
  c = await testCore();
  await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
});

describe('security keys', () => {
  it('turns 2FA on when a key is added, with recovery codes, and then the password alone no longer opens master', async () => {
    expect(reason(await c.auth.authenticate(req('alice', PASSWORD, 'master')))).toBe('ok');
    const { recoveryCodes } = await addKey();
    expect(recoveryCodes).toHaveLength(10);
    const r = await c.auth.authenticate(req('alice', PASSWORD, 'master'));
    expect(r).toMatchObject({ ok: false, reason: 'second_factor_required', methods: ['security_key', 'recovery'] });
    expect((r as { securityKeyOptions?: { allowCredentials?: unknown[] } }).securityKeyOptions?.allowCredentials).toHaveLength(1);
    // Mail clients now need an ASP, as with TOTP.
    expect(reason(await c.auth.authenticate(req('alice', PASSWORD, 'imap')))).toBe('asp_required');
  });

  it('signs in with the key answering its challenge, and the answer cannot be replayed', async () => {
    const { key } = await addKey();
    const answer = key.assert(await challenge());
    expect(reason(await withKey(answer))).toBe('ok');
    expect(reason(await withKey(answer))).toBe('second_factor_invalid');
    const [stored] = await c.store.securityKeys.listByUser((await c.accounts.get('alice')).id);
    expect(stored!.lastUsedAt).not.toBeNull();
  });

  it('refuses a replayed answer of a key that keeps no signature counter', async () => {
    const { key } = await addKey();
    const answer = key.assert(await challenge(), { counter: 0 });
    expect(reason(await withKey(answer))).toBe('ok');
    expect(reason(await withKey(answer))).toBe('second_factor_invalid');
    expect(reason(await withKey(key.assert(await challenge(), { counter: 0 })))).toBe('ok');
  });

  it('needs the password too: a right key answer with a wrong password is refused', async () => {
    const { key } = await addKey();
    const answer = key.assert(await challenge());
    const r = await c.auth.authenticate({ ...req('alice', 'Wrong-pass-1!', 'master'), secondFactor: { kind: 'security_key', assertion: answer } });
    expect(reason(r)).toBe('invalid_credentials');
  });

  it('refuses an answer made for another origin, an expired challenge, and a key of another user', async () => {
    const { key } = await addKey();
    expect(reason(await withKey(key.assert(await challenge(), { origin: 'https://evil.example' })))).toBe('second_factor_invalid');

    const late = await challenge();
    c.clock.advance(300_001);
    expect(reason(await withKey(key.assert(late)))).toBe('second_factor_invalid');

    await c.accounts.createUser(actor, { username: 'bob', password: PASSWORD });
    const { key: bobsKey } = await addKey(new SoftKey(), 'bob');
    expect(reason(await withKey(bobsKey.assert(await challenge())))).toBe('second_factor_invalid');
    // Each user's own key still works.
    expect(reason(await withKey(key.assert(await challenge())))).toBe('ok');
  });

  it('refuses a key whose signature counter went backwards (a cloned key)', async () => {
    const { key } = await addKey();
    expect(reason(await withKey(key.assert(await challenge(), { counter: 10 })))).toBe('ok');
    expect(reason(await withKey(key.assert(await challenge(), { counter: 5 })))).toBe('second_factor_invalid');
    expect(reason(await withKey(key.assert(await challenge(), { counter: 11 })))).toBe('ok');
  });

  it('counts wrong key answers in the second-factor window', async () => {
    const { key } = await addKey();
    for (let i = 0; i < 6; i++) {
      expect(reason(await withKey(key.assert(await challenge(), { origin: `https://evil${i}.example` })))).toBe('second_factor_invalid');
    }
    expect(reason(await withKey(key.assert(await challenge())))).toBe('locked');
  });

  it('will not register a reused challenge or an answer for another origin, and audits both', async () => {
    const key = new SoftKey();
    const options = await c.accounts.securityKeyOptions(actor, 'alice');
    await expect(c.accounts.addSecurityKey(actor, 'alice', key.register(options, 'https://evil.example'), '')).rejects.toMatchObject({
      code: 'invalid_security_key',
    });
    await c.accounts.addSecurityKey(actor, 'alice', key.register(options), '');
    await expect(c.accounts.addSecurityKey(actor, 'alice', new SoftKey().register(options), '')).rejects.toMatchObject({ code: 'invalid_security_key' });
    const events = (await c.store.audit.query({ username: 'alice', action: 'security_key.add', limit: 10 }, c.clock.now())).events;
    expect(events.map((e) => e.result)).toEqual(['failure', 'success', 'failure']);
  });

  it('an admin reset and turning 2FA off remove the keys', async () => {
    await addKey();
    const { temporaryPassword } = await c.accounts.resetSecondFactor(actor, 'alice');
    expect(await c.auth.authenticate(req('alice', temporaryPassword, 'master'))).toMatchObject({
      ok: false,
      reason: 'second_factor_required',
      methods: ['recovery'],
    });
    expect(await c.store.securityKeys.listByUser((await c.accounts.get('alice')).id)).toHaveLength(0);
  });

  it('removing a key keeps 2FA on with the recovery codes', async () => {
    const { key, recoveryCodes } = await addKey();
    const user = await c.accounts.get('alice');
    const [stored] = await c.store.securityKeys.listByUser(user.id);
    await c.accounts.removeSecurityKey(actor, 'alice', stored!.id);
    const r = await c.auth.authenticate(req('alice', PASSWORD, 'master'));
    expect(r).toMatchObject({ ok: false, reason: 'second_factor_required', methods: ['recovery'] });
    expect(reason(await withKey(key.assert({ challenge: 'anything' })))).toBe('second_factor_invalid');
    expect(reason(await c.auth.authenticate({ ...req('alice', PASSWORD, 'master'), secondFactor: { kind: 'recovery', code: recoveryCodes![0]! } }))).toBe('ok');
  });
});
