import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NewUser, Store } from '../../src/core/ports.js';
import type { AuditEvent } from '../../src/core/types.js';

// A year ahead, on a whole second: a real MongoDB's TTL monitor compares expiry dates with
// its own clock, and would delete fixtures dated in the past while a test runs.
const T0 = new Date(Math.floor(Date.now() / 1000) * 1000 + 365 * 86_400_000);

export function newUser(username: string): NewUser {
  return {
    username,
    displayName: username,
    domain: '',
    email: null,
    role: 'user',
    status: 'active',
    passwordHash: '$2a$04$abcdefghijklmnopqrstuu5Hq3lJ1f6o4tZ8sVwK1pZ3d9y7m2sK.',
    passwordChangedAt: T0,
    mustChangePassword: false,
    passwordExpiresAt: null,
    scopes: ['imap', 'pop3', 'smtp'],
    twoFactor: false,
    totp: null,
    totpPending: null,
    pgp: null,
    notices: [],
  };
}

function event(i: number, extra: Partial<AuditEvent> = {}): AuditEvent {
  return {
    time: new Date(T0.getTime() + i * 1000),
    action: 'auth',
    result: i % 2 ? 'failure' : 'success',
    reason: null,
    userId: null,
    username: i % 3 ? 'alice' : 'bob',
    ip: `192.0.2.${i % 4}`,
    protocol: 'imap',
    scope: 'imap',
    aspId: null,
    sessionId: null,
    userAgent: null,
    actor: null,
    ...extra,
  };
}

/** One behaviour for every Store: run against the embedded store and MongoDB alike. */
export function storeContract(name: string, open: () => Promise<Store>, opts: { skip?: boolean } = {}) {
  describe.skipIf(opts.skip)(`store contract: ${name}`, () => {
    let s: Store;
    beforeEach(async () => {
      s = await open();
      await s.init();
    });
    afterEach(async () => s?.close());

    it('creates users, finds them by name and id, and refuses a duplicate name', async () => {
      const u = await s.users.create(newUser('alice'), T0);
      expect(u.id).toMatch(/^[0-9a-f]{24}$/);
      expect(await s.users.findByName('alice')).toMatchObject({ id: u.id, credentialVersion: 0, passwordChangedAt: T0 });
      expect((await s.users.findById(u.id))?.username).toBe('alice');
      expect(await s.users.findById('000000000000000000000000')).toBeNull();
      expect(await s.users.findById('not-an-id')).toBeNull();
      await expect(s.users.create(newUser('alice'), T0)).rejects.toMatchObject({ code: 'conflict' });
    });

    it('bumps the credential version only when asked, and keeps dates as dates', async () => {
      const u = await s.users.create(newUser('alice'), T0);
      const later = new Date(T0.getTime() + 5000);
      const a = await s.users.update(u.id, { email: 'a@example.org' }, later, false);
      expect(a).toMatchObject({ email: 'a@example.org', credentialVersion: 0, updatedAt: later });
      const b = await s.users.update(u.id, { status: 'disabled' }, later, true);
      expect(b?.credentialVersion).toBe(1);
      expect((await s.users.findById(u.id))?.passwordChangedAt).toBeInstanceOf(Date);
      expect(await s.users.update('000000000000000000000000', {}, later, true)).toBeNull();
    });

    it('advances the TOTP step only forward, once per step, and resets it with a new seed', async () => {
      const u = await s.users.create(newUser('alice'), T0);
      expect(await s.users.advanceTotpStep(u.id, 100)).toBe(true);
      const race = await Promise.all([s.users.advanceTotpStep(u.id, 101), s.users.advanceTotpStep(u.id, 101)]);
      expect(race.filter(Boolean)).toHaveLength(1);
      expect(await s.users.advanceTotpStep(u.id, 99)).toBe(false);
      expect((await s.users.findById(u.id))?.totpLastStep).toBe(101);
      await s.users.update(u.id, { totp: { sealedSecret: 'x', enabledAt: T0 } }, T0, true);
      expect((await s.users.findById(u.id))?.totpLastStep).toBeNull();
    });

    it('lists users in name order with paging, and deletes them', async () => {
      for (const n of ['carol', 'alice', 'bob']) await s.users.create(newUser(n), T0);
      expect((await s.users.list(2)).map((u) => u.username)).toEqual(['alice', 'bob']);
      expect((await s.users.list(2, 'bob')).map((u) => u.username)).toEqual(['carol']);
      const bob = await s.users.findByName('bob');
      expect(await s.users.delete(bob!.id)).toBe(true);
      expect(await s.users.findByName('bob')).toBeNull();
    });

    it('keeps ASPs per user, finds candidates by prefix hash, records use and revokes', async () => {
      const a = await s.users.create(newUser('alice'), T0);
      const b = await s.users.create(newUser('bob'), T0);
      const base = { description: 'phone', scopes: ['imap' as const], hash: 'h', createdAt: T0, expiresAt: null, networks: ['192.0.2.0/24'] };
      const x = await s.asps.create({ ...base, userId: a.id, prefixHash: 'p1' });
      await s.asps.create({ ...base, userId: a.id, prefixHash: 'p2' });
      await s.asps.create({ ...base, userId: b.id, prefixHash: 'p1' });
      expect(await s.asps.countByUser(a.id)).toBe(2);
      expect((await s.asps.findByPrefix(a.id, 'p1')).map((x) => x.id)).toEqual([x.id]);
      await s.asps.recordUse(x.id, { time: T0, ip: '192.0.2.1', protocol: 'imap' });
      expect((await s.asps.listByUser(a.id))[0]?.lastUse).toEqual({ time: T0, ip: '192.0.2.1', protocol: 'imap' });
      expect((await s.asps.listByUser(a.id))[0]?.networks).toEqual(['192.0.2.0/24']);
      expect(await s.asps.delete(b.id, x.id)).toBe(false);
      expect(await s.asps.delete(a.id, x.id)).toBe(true);
      expect(await s.asps.countByUser(a.id)).toBe(1);
      await s.asps.deleteAllOfUser(a.id);
      expect(await s.asps.countByUser(a.id)).toBe(0);
      expect(await s.asps.countByUser(b.id)).toBe(1);
    });

    it('consumes each recovery code once, even when two uses race', async () => {
      const u = await s.users.create(newUser('alice'), T0);
      await s.recoveryCodes.replace(u.id, ['c1', 'c2', 'c3'], T0);
      expect(await s.recoveryCodes.countUnused(u.id)).toBe(3);
      const race = await Promise.all([s.recoveryCodes.consume(u.id, 'c1', T0), s.recoveryCodes.consume(u.id, 'c1', T0)]);
      expect(race.filter(Boolean)).toHaveLength(1);
      expect(await s.recoveryCodes.consume(u.id, 'nope', T0)).toBe(false);
      expect(await s.recoveryCodes.countUnused(u.id)).toBe(2);
      await s.recoveryCodes.replace(u.id, ['d1'], T0);
      expect(await s.recoveryCodes.consume(u.id, 'c2', T0)).toBe(false);
      expect(await s.recoveryCodes.consume(u.id, 'd1', T0)).toBe(true);
    });

    it('keeps one whole set when recovery code replacements race', async () => {
      const u = await s.users.create(newUser('alice'), T0);
      const sets = Array.from({ length: 6 }, (_, i) => Array.from({ length: 10 }, (_, j) => `set${i}-code${j}`));
      await Promise.all(sets.map((codes) => s.recoveryCodes.replace(u.id, codes, T0)));
      expect(await s.recoveryCodes.countUnused(u.id)).toBe(10);
      const usable = await Promise.all(
        sets.map(async (codes) => (await Promise.all(codes.map((c) => s.recoveryCodes.consume(u.id, c, T0)))).filter(Boolean).length),
      );
      // One set works whole; every code of every other set is refused.
      expect(usable.sort((a, b) => a - b)).toEqual([0, 0, 0, 0, 0, 10]);
      expect(await s.recoveryCodes.countUnused(u.id)).toBe(0);
    });

    it('stores an audit event written twice (a retried write) once', async () => {
      const e = { ...event(1), id: 'aaaaaaaaaaaaaaaaaaaaaaa1' };
      const expires = new Date(T0.getTime() + 86_400_000);
      await s.audit.append(e, expires);
      await Promise.all([s.audit.append(e, expires), s.audit.append(e, expires), s.audit.append({ ...event(2), id: 'aaaaaaaaaaaaaaaaaaaaaaa2' }, expires)]);
      const { events } = await s.audit.query({ limit: 10 }, T0);
      expect(events.map((x) => x.id).sort()).toEqual(['aaaaaaaaaaaaaaaaaaaaaaa1', 'aaaaaaaaaaaaaaaaaaaaaaa2']);
    });

    it('is ready again after a second start, with its data', async () => {
      const u = await s.users.create(newUser('alice'), T0);
      await s.init();
      expect((await s.users.findById(u.id))?.username).toBe('alice');
    });

    it('queries audit events newest first with filters and cursor paging', async () => {
      const retain = 30 * 86_400_000;
      for (let i = 0; i < 25; i++) {
        const e = event(i);
        await s.audit.append(e, new Date(e.time.getTime() + retain));
      }
      const now = new Date(T0.getTime() + 60_000);
      const all: AuditEvent[] = [];
      let cursor: string | undefined;
      do {
        const page = await s.audit.query({ limit: 10, cursor }, now);
        all.push(...page.events);
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      expect(all).toHaveLength(25);
      expect(all.map((e) => e.time.getTime())).toEqual([...all.map((e) => e.time.getTime())].sort((a, b) => b - a));
      expect(new Set(all.map((e) => e.id)).size).toBe(25);

      const bobFailures = await s.audit.query({ username: 'bob', result: 'failure', limit: 100 }, now);
      expect(bobFailures.events.map((e) => e.time.getTime() - T0.getTime())).toEqual([21000, 15000, 9000, 3000]);
      const byIp = await s.audit.query({ ip: '192.0.2.0', limit: 100 }, now);
      expect(byIp.events).toHaveLength(7);
      const range = await s.audit.query({ since: new Date(T0.getTime() + 5000), until: new Date(T0.getTime() + 8000), limit: 100 }, now);
      expect(range.events).toHaveLength(3);
      await expect(s.audit.query({ limit: 10, cursor: 'garbage' }, now)).rejects.toMatchObject({ code: 'invalid_input' });
    });

    it('pages correctly through events that share one timestamp', async () => {
      for (let i = 0; i < 7; i++) await s.audit.append(event(0, { reason: `r${i}` }), new Date(T0.getTime() + 86_400_000));
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await s.audit.query({ limit: 3, cursor }, T0);
        seen.push(...page.events.map((e) => e.reason!));
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      expect(seen.sort()).toEqual(['r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6']);
    });

    it('hides audit events past their expiry and purges them', async () => {
      const day = 86_400_000;
      await s.audit.append(event(0, { reason: 'old' }), new Date(T0.getTime() + 30 * day));
      await s.audit.append(event(0, { time: new Date(T0.getTime() + 10 * day), reason: 'new' }), new Date(T0.getTime() + 40 * day));
      const at = (d: number) => new Date(T0.getTime() + d * day);
      expect((await s.audit.query({ limit: 10 }, at(29))).events).toHaveLength(2);
      expect((await s.audit.query({ limit: 10 }, at(31))).events.map((e) => e.reason)).toEqual(['new']);
      expect(await s.audit.purgeExpired(at(31))).toBe(1);
      expect((await s.audit.query({ limit: 10 }, at(41))).events).toHaveLength(0);
    });

    it('finds live sessions by token hash only, and signs out one or all', async () => {
      const u = await s.users.create(newUser('alice'), T0);
      const later = (ms: number) => new Date(T0.getTime() + ms);
      const base = { userId: u.id, trustedDeviceId: null, ip: '192.0.2.1', userAgent: 'curl', createdAt: T0 };
      const a = await s.sessions.create({ ...base, tokenHash: 'ha', expiresAt: later(3_600_000) });
      await s.sessions.create({ ...base, tokenHash: 'hb', expiresAt: later(3_600_000) });
      await s.sessions.create({ ...base, tokenHash: 'hc', expiresAt: later(1000) });
      expect((await s.sessions.findByTokenHash('ha', later(10)))?.id).toBe(a.id);
      expect(await s.sessions.findByTokenHash('hc', later(1000))).toBeNull();
      expect(await s.sessions.purgeExpired(later(1000))).toBe(1);
      expect(await s.sessions.delete(a.id)).toBe(true);
      expect(await s.sessions.findByTokenHash('ha', later(10))).toBeNull();
      const d = await s.sessions.create({ ...base, tokenHash: 'hd', expiresAt: later(3_600_000) });
      await s.sessions.create({ ...base, tokenHash: 'he', expiresAt: later(3_600_000) });
      expect(await s.sessions.deleteAllOfUser(u.id, d.id)).toBe(2);
      expect(await s.sessions.findByTokenHash('hb', later(10))).toBeNull();
      expect((await s.sessions.findByTokenHash('hd', later(10)))?.id).toBe(d.id);
      expect(await s.sessions.deleteAllOfUser(u.id)).toBe(1);
      expect(await s.sessions.findByTokenHash('hd', later(10))).toBeNull();
    });

    it('keeps trusted devices per user until they expire or are removed', async () => {
      const a = await s.users.create(newUser('alice'), T0);
      const b = await s.users.create(newUser('bob'), T0);
      const day = 86_400_000;
      const d1 = await s.devices.create({ userId: a.id, tokenHash: 't1', label: 'laptop', createdAt: T0, expiresAt: new Date(T0.getTime() + 30 * day) });
      await s.devices.create({ userId: a.id, tokenHash: 't2', label: 'old', createdAt: T0, expiresAt: new Date(T0.getTime() + day) });
      expect(await s.devices.findByTokenHash(b.id, 't1', T0)).toBeNull();
      expect((await s.devices.findByTokenHash(a.id, 't1', T0))?.label).toBe('laptop');
      expect((await s.devices.listByUser(a.id, new Date(T0.getTime() + 2 * day))).map((d) => d.label)).toEqual(['laptop']);
      await s.devices.recordUse(d1.id, { time: T0, ip: '192.0.2.9', protocol: 'http' });
      expect((await s.devices.listByUser(a.id, T0))[0]?.lastUse).toEqual({ time: T0, ip: '192.0.2.9', protocol: 'http' });
      expect(await s.devices.delete(b.id, d1.id)).toBe(false);
      expect(await s.devices.delete(a.id, d1.id)).toBe(true);
      expect(await s.devices.findByTokenHash(a.id, 't1', T0)).toBeNull();
      expect(await s.devices.deleteAllOfUser(a.id)).toBe(1);
    });

    it('keeps security keys per user, unique by credential, with a counter that only moves forward', async () => {
      const a = await s.users.create(newUser('alice'), T0);
      const b = await s.users.create(newUser('bob'), T0);
      const key = { userId: a.id, credentialId: 'cred-1', publicKey: 'pk', signCount: 3, transports: ['usb'], label: 'desk', createdAt: T0 };
      const k = await s.securityKeys.create(key);
      await expect(s.securityKeys.create({ ...key, userId: b.id })).rejects.toMatchObject({ code: 'conflict' });
      const flat = await s.securityKeys.create({ ...key, credentialId: 'cred-2', signCount: 0, label: 'no counter' });
      expect((await s.securityKeys.listByUser(a.id)).map((x) => x.label)).toEqual(['desk', 'no counter']);
      expect(await s.securityKeys.listByUser(b.id)).toEqual([]);
      expect(await s.securityKeys.recordUse(k.id, 3, T0)).toBe(false);
      expect(await s.securityKeys.recordUse(k.id, 4, T0)).toBe(true);
      expect(await s.securityKeys.recordUse(k.id, 2, T0)).toBe(false);
      const [racedA, racedB] = await Promise.all([s.securityKeys.recordUse(k.id, 9, T0), s.securityKeys.recordUse(k.id, 9, T0)]);
      expect([racedA, racedB].filter(Boolean)).toHaveLength(1);
      expect(await s.securityKeys.recordUse(flat.id, 0, T0)).toBe(true);
      const [stored] = await s.securityKeys.listByUser(a.id);
      expect(stored).toMatchObject({ signCount: 9, lastUsedAt: T0, transports: ['usb'] });
      expect(await s.securityKeys.delete(b.id, k.id)).toBe(false);
      expect(await s.securityKeys.delete(a.id, k.id)).toBe(true);
      expect(await s.securityKeys.deleteAllOfUser(a.id)).toBe(1);
    });

    it('stores API tokens by hash and honours their expiry', async () => {
      const t = await s.apiTokens.create({ tokenHash: 'x1', role: 'auditor', description: 'SIEM', createdBy: 'root', createdAt: T0, expiresAt: null });
      await s.apiTokens.create({
        tokenHash: 'x2',
        role: 'admin',
        description: 'short',
        createdBy: 'root',
        createdAt: T0,
        expiresAt: new Date(T0.getTime() + 1000),
      });
      expect((await s.apiTokens.findByTokenHash('x1', T0))?.role).toBe('auditor');
      expect(await s.apiTokens.findByTokenHash('x2', new Date(T0.getTime() + 1000))).toBeNull();
      expect((await s.apiTokens.list()).map((x) => x.description)).toEqual(['SIEM', 'short']);
      expect(await s.apiTokens.delete(t.id)).toBe(true);
      expect(await s.apiTokens.findByTokenHash('x1', T0)).toBeNull();
    });

    it('keeps server-wide feature settings and per-domain overrides', async () => {
      expect(await s.policy.features()).toEqual({});
      await s.policy.setFeature('two_factor_required', { status: 'enabled', lock: 'unlocked' });
      await s.policy.setFeature('two_factor_required', { status: 'disabled', lock: 'locked' });
      expect(await s.policy.features()).toEqual({ two_factor_required: { status: 'disabled', lock: 'locked' } });
      expect(await s.policy.domain('example.org')).toBeNull();
      await s.policy.setDomainFeature('example.org', 'two_factor_required', 'enabled', T0);
      const d = await s.policy.setDomainFeature('example.org', 'two_factor_recommended', 'disabled', T0);
      expect(d.features).toEqual({ two_factor_required: 'enabled', two_factor_recommended: 'disabled' });
      const cleared = await s.policy.setDomainFeature('example.org', 'two_factor_required', null, T0);
      expect(cleared.features).toEqual({ two_factor_recommended: 'disabled' });
      expect((await s.policy.domain('example.org'))?.createdAt).toEqual(T0);
      await s.policy.setDomainFeature('example.org', 'two_factor_recommended', null, T0);
      expect((await s.policy.domain('example.org'))?.features).toEqual({});
    });

    it('keeps one-time challenges with tries that run down, until they expire', async () => {
      const c = { key: 'email:u1:asp', codeHash: 'h1', triesLeft: 3, createdAt: T0, expiresAt: new Date(T0.getTime() + 300_000) };
      await s.challenges.put(c);
      expect(await s.challenges.get('email:u1:asp', T0)).toEqual(c);
      expect(await s.challenges.spendTry('email:u1:asp', T0)).toEqual({ ...c, triesLeft: 2 });
      expect((await s.challenges.spendTry('email:u1:asp', T0))?.triesLeft).toBe(1);
      expect((await s.challenges.get('email:u1:asp', T0))?.triesLeft).toBe(1);
      await s.challenges.put({ ...c, codeHash: 'h2' });
      expect((await s.challenges.get('email:u1:asp', T0))?.triesLeft).toBe(3);
      expect(await s.challenges.get('email:u1:asp', new Date(T0.getTime() + 300_000))).toBeNull();
      expect(await s.challenges.spendTry('email:u1:asp', new Date(T0.getTime() + 300_000))).toBeNull();
      expect(await s.challenges.delete('email:u1:asp')).toBe(true);
      expect(await s.challenges.delete('email:u1:asp')).toBe(false);
      expect(await s.challenges.get('email:u1:asp', T0)).toBeNull();
      expect(await s.challenges.spendTry('email:u1:asp', T0)).toBeNull();
    });

    it('spends each try of a challenge once, however many callers race for them', async () => {
      await s.challenges.put({ key: 'email:u2:asp', codeHash: 'h', triesLeft: 3, createdAt: T0, expiresAt: new Date(T0.getTime() + 300_000) });
      const spent = await Promise.all(Array.from({ length: 20 }, () => s.challenges.spendTry('email:u2:asp', T0)));
      expect(
        spent
          .filter((x) => x !== null)
          .map((x) => x!.triesLeft)
          .sort(),
      ).toEqual([0, 1, 2]);
      const removed = await Promise.all(Array.from({ length: 10 }, () => s.challenges.delete('email:u2:asp')));
      expect(removed.filter(Boolean)).toHaveLength(1);
    });
  });
}
