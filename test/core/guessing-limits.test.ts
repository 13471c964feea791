// The guessing limits under attack: dozens of attempts at once, against the in-memory
// limiter, a real Redis, and a real Redis answering across a (simulated) network. The rule:
// a stranger never gets more than N password guesses or M second-factor guesses per window
// per account, and never more than K per address, whatever the concurrency and whatever the
// owner does.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock, type Clock } from '../../src/core/clock.js';
import { EmailCodes } from '../../src/core/email-codes.js';
import { temporary } from '../../src/core/errors.js';
import type { RateLimiter, Store } from '../../src/core/ports.js';
import { totpCode } from '../../src/core/totp.js';
import type { AuthResult, User } from '../../src/core/types.js';
import { EmbeddedStore } from '../../src/stores/embedded-store.js';
import { MemoryLimiter } from '../../src/stores/memory-limiter.js';
import { RedisLimiter } from '../../src/stores/redis-limiter.js';
import { PASSWORD, actor, bcryptHasher, req, testCore, type TestCore } from '../helpers/core.js';
import { latencyProxy, withLatency, type LatencyProxy } from '../helpers/latency.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { Redis } from 'ioredis';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const reason = (r: AuthResult) => (r.ok ? 'ok' : r.reason);
const tally = (rs: AuthResult[]) => rs.reduce<Record<string, number>>((t, r) => ({ ...t, [reason(r)]: (t[reason(r)] ?? 0) + 1 }), {});
const OWNER_IP = '192.0.2.10';
const STRANGER_IP = '198.51.100.66';

let redis: RedisServer;
let slow: LatencyProxy;
const clients: Redis[] = [];
const backends: Array<{ name: string; limiter: (clock: Clock) => RateLimiter }> = [
  { name: 'memory', limiter: (clock) => new MemoryLimiter(clock) },
  { name: 'Redis', limiter: () => new RedisLimiter(redis.client(), `t${Math.random()}:`) },
  {
    name: 'Redis 5 ms away',
    limiter: () => {
      const c = new Redis(`redis://127.0.0.1:${slow.port}`, { maxRetriesPerRequest: 1 });
      clients.push(c);
      return new RedisLimiter(c, `t${Math.random()}:`);
    },
  },
];

beforeAll(async () => {
  redis = await startRedis();
  slow = await latencyProxy(redis.port, 5);
});
afterAll(async () => {
  for (const c of clients) c.disconnect();
  await slow?.close();
  await redis?.stop();
});

for (const b of backends) {
  describe(`guessing limits on ${b.name}`, () => {
    let c: TestCore;
    beforeEach(async () => {
      c = await testCore({ limiter: b.limiter });
      await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
    });

    it('checks only 5 of 30 parallel password guesses; the right password hidden behind them is not tried', async () => {
      const guesses = Array.from({ length: 30 }, (_, i) => `Guess-${i}-pw!`);
      const results = await Promise.all([...guesses, PASSWORD].map((g) => c.auth.authenticate(req('alice', g, 'imap', STRANGER_IP))));
      expect(tally(results)).toEqual({ invalid_credentials: 5, locked: 26 });
      expect(reason(results[30]!)).toBe('locked');
      expect(c.hasher.verifies).toBe(5);
      // Still locked afterwards, for anyone without a recently verified secret.
      expect(reason(await c.auth.authenticate(req('alice', PASSWORD, 'imap', '203.0.113.9')))).toBe('locked');
    });

    it('compares only 6 of 50 parallel second-factor codes, and then not even the right one', async () => {
      const { secret } = await c.accounts.setupTotp(actor, 'alice');
      await c.accounts.confirmTotp(actor, 'alice', await totpCode(secret, c.clock.now()));
      c.clock.advance(120_000);
      const right = await totpCode(secret, c.clock.now());
      const codes = Array.from({ length: 50 }, (_, i) => String(100000 + i)).filter((x) => x !== right);
      const master = (code: string) => c.auth.authenticate({ ...req('alice', PASSWORD, 'master', STRANGER_IP), secondFactor: { kind: 'totp', code } });
      const results = await Promise.all([...codes, right].map(master));
      expect(tally(results)).toEqual({ second_factor_invalid: 6, locked: results.length - 6 });
      expect(reason(results.at(-1)!)).toBe('locked');
      // Recovery codes share the window: no way around it.
      expect(
        reason(await c.auth.authenticate({ ...req('alice', PASSWORD, 'master', STRANGER_IP), secondFactor: { kind: 'recovery', code: 'abcd-efgh' } })),
      ).toBe('locked');
    });

    it('checks only 50 of 120 parallel sprays from one address across accounts', async () => {
      for (let i = 0; i < 20; i++) await c.accounts.createUser(actor, { username: `user${i}`, password: PASSWORD });
      c.hasher.verifies = 0;
      const names = Array.from({ length: 120 }, (_, i) => `user${i}`);
      const results = await Promise.all(names.map((n) => c.auth.authenticate(req(n, 'Spring2026!', 'imap', '203.0.113.5'))));
      expect(tally(results)).toEqual({ invalid_credentials: 50, locked: 70 });
      expect(c.hasher.verifies).toBe(50);
      // Another address is not affected.
      expect(reason(await c.auth.authenticate(req('user3', PASSWORD, 'imap', '203.0.113.6')))).toBe('ok');
    });

    it("lets the owner's recently verified secret in during a lockout without reopening the window", async () => {
      const { password: phone } = await c.accounts.createAsp(actor, 'alice', { description: 'phone', scopes: ['imap'] });
      expect(reason(await c.auth.authenticate(req('alice', phone, 'imap', OWNER_IP)))).toBe('ok');
      const first = await Promise.all(Array.from({ length: 20 }, (_, i) => c.auth.authenticate(req('alice', `First-${i}`, 'imap', STRANGER_IP))));
      expect(tally(first)).toEqual({ invalid_credentials: 5, locked: 15 });
      for (let round = 0; round < 3; round++) {
        // The phone reconnects (five connections at once) ...
        const owner = await Promise.all(Array.from({ length: 5 }, () => c.auth.authenticate(req('alice', phone, 'imap', OWNER_IP))));
        expect(owner.map(reason)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
        // ... and the stranger's next guesses are still refused, none of them checked.
        const before = c.hasher.verifies;
        const next = await Promise.all(Array.from({ length: 10 }, (_, i) => c.auth.authenticate(req('alice', `Round-${round}-${i}`, 'imap', STRANGER_IP))));
        expect(tally(next)).toEqual({ locked: 10 });
        expect(c.hasher.verifies).toBe(before);
      }
      // Even the right secret, presented from an address it was not verified from, is refused.
      expect(reason(await c.auth.authenticate(req('alice', phone, 'imap', STRANGER_IP)))).toBe('locked');
      expect(reason(await c.auth.authenticate(req('alice', phone, 'imap', '203.0.113.77')))).toBe('locked');
    });

    it("gives a stranger behind the owner's address no more than 5 looks at the verified secrets during a lockout", async () => {
      const { password: phone } = await c.accounts.createAsp(actor, 'alice', { description: 'phone', scopes: ['imap'] });
      const { password: laptop } = await c.accounts.createAsp(actor, 'alice', { description: 'laptop', scopes: ['imap'] });
      expect(reason(await c.auth.authenticate(req('alice', phone, 'imap', OWNER_IP)))).toBe('ok');
      expect(reason(await c.auth.authenticate(req('alice', laptop, 'imap', '192.0.2.11')))).toBe('ok');
      await Promise.all(Array.from({ length: 5 }, (_, i) => c.auth.authenticate(req('alice', `Lock-${i}`, 'imap', STRANGER_IP))));
      const probes = await Promise.all(Array.from({ length: 20 }, (_, i) => c.auth.authenticate(req('alice', `Probe-${i}`, 'imap', OWNER_IP))));
      expect(tally(probes)).toEqual({ locked: 20 });
      // Five misses used that address's way in: the phone's secret is refused there now ...
      expect(reason(await c.auth.authenticate(req('alice', phone, 'imap', OWNER_IP)))).toBe('locked');
      // ... while the laptop at its own address still works.
      expect(reason(await c.auth.authenticate(req('alice', laptop, 'imap', '192.0.2.11')))).toBe('ok');
    });

    it("does not let an app password's success reopen the second-factor window", async () => {
      const { secret } = await c.accounts.setupTotp(actor, 'alice');
      await c.accounts.confirmTotp(actor, 'alice', await totpCode(secret, c.clock.now()));
      const { password: phone } = await c.accounts.createAsp(actor, 'alice', { description: 'phone', scopes: ['imap'] });
      c.clock.advance(120_000);
      const master = (code: string) => c.auth.authenticate({ ...req('alice', PASSWORD, 'master', STRANGER_IP), secondFactor: { kind: 'totp', code } });
      const right = await totpCode(secret, c.clock.now());
      const wrong = Array.from({ length: 6 }, (_, i) => String(200000 + i)).filter((x) => x !== right);
      for (const code of wrong.slice(0, 6)) await master(code);
      expect(reason(await c.auth.authenticate(req('alice', phone, 'imap', OWNER_IP)))).toBe('ok');
      expect(reason(await master('299999'))).toBe('locked');
    });

    it('a success gives back only its own attempt: the owner after four typos has one try left in the window', async () => {
      await Promise.all(Array.from({ length: 4 }, (_, i) => c.auth.authenticate(req('alice', `Typo-${i}`, 'imap', STRANGER_IP))));
      expect(reason(await c.auth.authenticate(req('alice', PASSWORD, 'imap', '203.0.113.20')))).toBe('ok');
      expect(reason(await c.auth.authenticate(req('alice', PASSWORD, 'imap', '203.0.113.21')))).toBe('ok');
      expect(reason(await c.auth.authenticate(req('alice', 'Typo-5', 'imap', STRANGER_IP)))).toBe('invalid_credentials');
      expect(reason(await c.auth.authenticate(req('alice', 'Typo-6', 'imap', STRANGER_IP)))).toBe('locked');
    });

    it('costs the same number of bcrypt checks for identical parallel attempts at an unknown user as at a known one', async () => {
      // A check that takes 100 ms off the main thread, as bcrypt at cost 12 in the worker pool.
      const cheap = bcryptHasher(4);
      const offThread = { hash: cheap.hash, verify: (s: string, h: string) => sleep(100).then(() => cheap.verify(s, h)) };
      c = await testCore({ limiter: b.limiter, hasher: offThread });
      await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
      c.hasher.verifies = 0;
      await Promise.all(Array.from({ length: 8 }, () => c.auth.authenticate(req('alice', 'Same-guess-1', 'imap', STRANGER_IP))));
      const known = c.hasher.verifies;
      c.hasher.verifies = 0;
      await Promise.all(Array.from({ length: 8 }, () => c.auth.authenticate(req('nobody', 'Same-guess-1', 'imap', STRANGER_IP))));
      expect(known).toBe(1);
      expect(c.hasher.verifies).toBe(known);
    });
  });
}

describe('guessing limits and faults', () => {
  it('does not count attempts the store could not answer: a fault is never a lockout', async () => {
    const inner = new EmbeddedStore(':memory:');
    let down = false;
    const store = new Proxy(inner, {
      get(obj, prop, receiver) {
        if (prop === 'users') {
          return new Proxy(obj.users, {
            get(users, p, r) {
              const v = Reflect.get(users, p, r) as unknown;
              if (p === 'findByName' && typeof v === 'function') {
                return (...a: unknown[]) =>
                  down ? Promise.reject(temporary(new Error('connection refused'), 'store')) : (v as (...x: unknown[]) => unknown).apply(users, a);
              }
              return typeof v === 'function' ? (v as () => unknown).bind(users) : v;
            },
          });
        }
        return Reflect.get(obj, prop, receiver);
      },
    }) as Store;
    const c = await testCore({ store });
    await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
    down = true;
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => c.auth.authenticate(req('alice', `During-fault-${i}`))));
    expect(tally(results)).toEqual({ temporary_failure: 12 });
    down = false;
    expect(reason(await c.auth.authenticate(req('alice', PASSWORD, 'imap', '203.0.113.30')))).toBe('ok');
  });

  it('holds against a store far away too (every lookup and write 10 ms each way)', async () => {
    const c = await testCore({ store: withLatency(new EmbeddedStore(':memory:'), 10) });
    await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
    const results = await Promise.all(Array.from({ length: 25 }, (_, i) => c.auth.authenticate(req('alice', `Far-${i}`, 'pop3', STRANGER_IP))));
    expect(tally(results)).toEqual({ invalid_credentials: 5, locked: 20 });
  });
});

describe('emailed codes against a store far away', () => {
  it('compares at most 3 of 20 parallel guesses, and uses a right code once', async () => {
    const store = withLatency(new EmbeddedStore(':memory:'), 10);
    await store.init();
    const mailed: string[] = [];
    const clock = new ManualClock(Date.now());
    const codes = new EmailCodes(store.challenges, { sendCode: async (_to, code) => void mailed.push(code) }, clock, randomBytes(32), {
      ttlMs: 300_000,
      resendDelayMs: 300_000,
      tries: 3,
    });
    const alice = { id: 'u-alice', email: 'alice@example.test' } as User;
    await codes.send(alice, 'asp');
    const code = mailed[0]!;
    const guesses = Array.from({ length: 20 }, (_, i) => String((Number(code) + 1 + i) % 1_000_000).padStart(6, '0'));
    const answers = await Promise.all([...guesses, code].map((g) => codes.check(alice, 'asp', g)));
    expect(answers.filter((a) => a === 'invalid')).toHaveLength(3);
    expect(answers.at(-1)).toBe('missing');

    clock.advance(300_001);
    await codes.send(alice, 'token');
    const right = mailed[1]!;
    const used = await Promise.all(Array.from({ length: 5 }, () => codes.check(alice, 'token', right)));
    expect(used.filter((a) => a === 'ok')).toHaveLength(1);
  });
});
