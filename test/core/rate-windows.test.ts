import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import type { RateLimiter } from '../../src/core/ports.js';
import type { LimitSettings } from '../../src/core/rate-windows.js';
import { totpCode } from '../../src/core/totp.js';
import type { AuthResult } from '../../src/core/types.js';
import { MemoryLimiter } from '../../src/stores/memory-limiter.js';
import { RedisLimiter } from '../../src/stores/redis-limiter.js';
import { PASSWORD, actor, req, testCore, type TestCore } from '../helpers/core.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

const reason = (r: AuthResult) => (r.ok ? 'ok' : r.reason);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Backend {
  name: string;
  /** Window length in ms: a minute on the manual clock, 2 s of real time for Redis. */
  unit: number;
  limiter: (clock: Clock) => RateLimiter;
  /** Moves both the core's clock and the limiter's notion of time. */
  advance: (c: TestCore, ms: number) => Promise<void>;
  setup?: () => Promise<void>;
  teardown?: () => Promise<void>;
}

let redis: RedisServer;
const backends: Backend[] = [
  {
    name: 'memory',
    unit: 60_000,
    limiter: (clock) => new MemoryLimiter(clock),
    advance: async (c, ms) => c.clock.advance(ms),
  },
  {
    name: 'redis',
    unit: 2_000,
    limiter: () => new RedisLimiter(redis.client(), `t${Math.random()}:`),
    advance: async (c, ms) => {
      c.clock.advance(ms);
      await sleep(ms);
    },
    setup: async () => {
      redis = await startRedis();
    },
    teardown: () => redis.stop(),
  },
];

for (const b of backends) {
  describe(`rate windows on ${b.name}`, () => {
    let c: TestCore;
    const limits = (): Partial<LimitSettings> => ({
      passwordWindowMs: b.unit,
      totpWindowMs: 3 * b.unit,
      ipFailures: 8,
      ipWindowMs: 5 * b.unit,
    });
    const fail = (name = 'alice', ip = '192.0.2.10', n = 1) =>
      Promise.all(Array.from({ length: n }, (_, i) => c.auth.authenticate(req(name, `Wrong-${i}-${Math.random()}`, 'imap', ip))));

    beforeAll(async () => b.setup?.());
    afterAll(async () => b.teardown?.());
    beforeEach(async () => {
      c = await testCore({ limiter: b.limiter, limits: limits() });
      await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
      await c.accounts.createUser(actor, { username: 'bob', password: PASSWORD });
    });

    it('locks the account after 5 failures, refuses without a bcrypt check, and says how long to wait', async () => {
      await fail('alice', undefined, 4);
      expect(reason(await c.auth.authenticate(req('alice', 'Still-wrong-4')))).toBe('invalid_credentials');
      const before = c.hasher.verifies;
      const r = await c.auth.authenticate(req('alice', PASSWORD));
      expect(r).toMatchObject({ ok: false, reason: 'locked' });
      expect(c.hasher.verifies).toBe(before);
      const wait = (r as { retryAfter: number }).retryAfter;
      expect(wait).toBeGreaterThan(0);
      expect(wait).toBeLessThanOrEqual(b.unit / 1000);
      expect(reason(await c.auth.authenticate(req('bob', PASSWORD)))).toBe('ok');
    });

    it('unlocks when the window that began at the first failure ends', async () => {
      await fail('alice');
      await b.advance(c, b.unit / 2);
      await fail('alice', undefined, 4);
      expect(reason(await c.auth.authenticate(req('alice', PASSWORD)))).toBe('locked');
      await b.advance(c, b.unit / 2 + 100);
      expect(reason(await c.auth.authenticate(req('alice', PASSWORD)))).toBe('ok');
    });

    it('a success does not clear the failures counted before it', async () => {
      await fail('alice', '198.51.100.7', 4);
      expect(reason(await c.auth.authenticate(req('alice', PASSWORD, 'imap', '192.0.2.20')))).toBe('ok');
      await fail('alice', '198.51.100.7', 4);
      expect(reason(await c.auth.authenticate(req('alice', PASSWORD, 'imap', '192.0.2.21')))).toBe('locked');
    });

    it('counts the same wrong secret once, however often it is retried', async () => {
      for (let i = 0; i < 10; i++) await c.auth.authenticate(req('alice', 'Old-revoked-1'));
      expect(reason(await c.auth.authenticate(req('alice', PASSWORD)))).toBe('ok');
    });

    it('shares one lockout between case and Unicode variants of a username', async () => {
      await c.accounts.createUser(actor, { username: 'Émile', password: PASSWORD });
      const variants = ['émile', 'ÉMILE', 'E\u0301mile', 'e\u0301MILE', 'Émile'];
      for (const v of variants) await c.auth.authenticate(req(v, `Wrong-${v}-x1`));
      expect(reason(await c.auth.authenticate(req('emile', PASSWORD)))).toBe('invalid_credentials');
      expect(reason(await c.auth.authenticate(req('É\u004DILE'.replace('É', 'E\u0301'), PASSWORD)))).toBe('locked');
    });

    it('counts second-factor failures in their own window of 6', async () => {
      const { secret } = await c.accounts.setupTotp(actor, 'alice');
      await c.accounts.confirmTotp(actor, 'alice', await totpCode(secret, c.clock.now()));
      const { password: asp } = await c.accounts.createAsp(actor, 'alice', { description: '', scopes: ['imap'] });
      const master = (code: string) => c.auth.authenticate({ ...req('alice', PASSWORD, 'master'), secondFactor: { kind: 'totp', code } });
      for (let i = 0; i < 6; i++) expect(reason(await master(String(100000 + i)))).toBe('second_factor_invalid');
      c.clock.advance(60_000);
      expect(await master(await totpCode(secret, c.clock.now()))).toMatchObject({ ok: false, reason: 'locked' });
      // The password window is untouched: the ASP still opens IMAP.
      expect(reason(await c.auth.authenticate(req('alice', asp, 'imap')))).toBe('ok');
    });

    it('password failures do not use up the second-factor window', async () => {
      const { secret } = await c.accounts.setupTotp(actor, 'alice');
      await c.accounts.confirmTotp(actor, 'alice', await totpCode(secret, c.clock.now()));
      await fail('alice', undefined, 4);
      c.clock.advance(60_000);
      const code = await totpCode(secret, c.clock.now());
      expect(reason(await c.auth.authenticate({ ...req('alice', PASSWORD, 'master'), secondFactor: { kind: 'totp', code } }))).toBe('ok');
    });

    it('locks an IP that sprays many accounts, but not other IPs or allow-listed hosts', async () => {
      for (const name of ['u1', 'u2', 'u3', 'u4']) await fail(name, '203.0.113.5', 2);
      const r = await c.auth.authenticate(req('bob', PASSWORD, 'imap', '203.0.113.5'));
      expect(r).toMatchObject({ ok: false, reason: 'locked' });
      expect(reason(await c.auth.authenticate(req('bob', PASSWORD, 'imap', '203.0.113.6')))).toBe('ok');

      c = await testCore({ limiter: b.limiter, limits: { ...limits(), allowList: ['203.0.113.0/24'] } });
      await c.accounts.createUser(actor, { username: 'bob', password: PASSWORD });
      for (const name of ['u1', 'u2', 'u3', 'u4']) await fail(name, '203.0.113.5', 2);
      expect(reason(await c.auth.authenticate(req('bob', PASSWORD, 'imap', '203.0.113.5')))).toBe('ok');
    });

    it('lets a recently verified secret in during a lockout while strangers are refused unhashed', async () => {
      const { password: asp } = await c.accounts.createAsp(actor, 'alice', { description: 'phone', scopes: ['imap'] });
      expect(reason(await c.auth.authenticate(req('alice', asp)))).toBe('ok');
      await fail('alice', '198.51.100.66', 5);
      const before = c.hasher.verifies;
      expect(reason(await c.auth.authenticate(req('alice', 'Guess-number-6', 'imap', '198.51.100.66')))).toBe('locked');
      expect(reason(await c.auth.authenticate(req('alice', PASSWORD)))).toBe('locked');
      expect(c.hasher.verifies).toBe(before);
      expect(reason(await c.auth.authenticate(req('alice', asp)))).toBe('ok');
    });

    it('refuses a cached secret once the account is disabled', async () => {
      expect(reason(await c.auth.authenticate(req('alice', PASSWORD)))).toBe('ok');
      await c.accounts.setStatus(actor, 'alice', 'disabled');
      expect(reason(await c.auth.authenticate(req('alice', PASSWORD)))).toBe('account_disabled');
    });

    it('writes an audit event for every decision, with reason, IP, protocol and ASP id', async () => {
      const { password: asp, asp: rec } = await c.accounts.createAsp(actor, 'alice', { description: '', scopes: ['imap'] });
      await c.auth.authenticate(req('alice', asp, 'imap', '192.0.2.77'));
      await fail('alice', '192.0.2.77', 5);
      await c.auth.authenticate(req('alice', PASSWORD, 'pop3', '192.0.2.77'));
      const { events } = await c.store.audit.query({ username: 'alice', action: 'auth', limit: 50 }, c.clock.now());
      expect(events).toHaveLength(7);
      expect(events[0]).toMatchObject({ result: 'failure', reason: 'locked', protocol: 'pop3', ip: '192.0.2.77' });
      expect(events.filter((e) => e.reason === 'invalid_credentials')).toHaveLength(5);
      expect(events[6]).toMatchObject({ result: 'success', reason: 'asp', aspId: rec.id, scope: 'imap' });
    });
  });
}
