import { randomBytes } from 'node:crypto';
import { ManualClock, type Clock } from '../../src/core/clock.js';
import { createCore, type Core, type CoreSettings } from '../../src/core/core.js';
import bcrypt from 'bcryptjs';
import type { CredentialCache, Hasher, RateLimiter, Store } from '../../src/core/ports.js';
import type { LimitSettings } from '../../src/core/rate-windows.js';
import { MemoryCredentialCache } from '../../src/stores/credential-cache.js';
import { EmbeddedStore } from '../../src/stores/embedded-store.js';
import { MemoryLimiter } from '../../src/stores/memory-limiter.js';

export const PASSWORD = 'Correct-horse-9';
export const actor = { name: 'test' };

/** bcrypt on the test thread at a low cost: tests check rules, not hashing speed. */
export function bcryptHasher(rounds: number): Hasher {
  return { hash: (s) => bcrypt.hash(s, rounds), verify: (s, h) => bcrypt.compare(s, h) };
}

/** Counts hash checks, so tests can see whether bcrypt ran at all. */
export class CountingHasher implements Hasher {
  verifies = 0;
  constructor(private readonly inner: Hasher = bcryptHasher(4)) {}
  hash(secret: string) {
    return this.inner.hash(secret);
  }
  verify(secret: string, hash: string) {
    this.verifies++;
    return this.inner.verify(secret, hash);
  }
}

export const defaultLimits: LimitSettings = {
  passwordFailures: 5,
  passwordWindowMs: 60_000,
  totpFailures: 6,
  totpWindowMs: 180_000,
  ipFailures: 50,
  ipWindowMs: 300_000,
  allowList: [],
};

export function testSettings(limits: Partial<LimitSettings> = {}): CoreSettings {
  return {
    auth: { totpWindowSteps: 2, verifiedCacheTtlMs: 300_000, bcryptCost: 4 },
    accounts: {
      aspMaxPerUser: 50,
      recoveryCodeCount: 10,
      totpIssuer: 'postern-test',
      totpWindowSteps: 2,
      tempPasswordTtlMs: 24 * 3_600_000,
      passwordPolicy: { minLength: 8, requireLower: true, requireUpper: true, requireDigit: true, requireSpecial: true },
    },
    limits: { ...defaultLimits, ...limits },
    web: { sessionTtlMs: 12 * 3_600_000, trustedDeviceTtlMs: 30 * 86_400_000, stepUpWindowMs: 300_000 },
    features: {
      two_factor_required: { status: 'disabled', lock: 'unlocked' },
      two_factor_recommended: { status: 'disabled', lock: 'unlocked' },
      email_codes: { status: 'disabled', lock: 'locked' },
      trusted_devices: { status: 'enabled', lock: 'locked' },
    },
    emailCodes: { ttlMs: 300_000, resendDelayMs: 300_000, tries: 3 },
    securityKeys: { rpId: 'localhost', rpName: 'postern-test', origins: ['http://localhost:8025'], challengeTtlMs: 300_000 },
    auditRetentionMs: 30 * 86_400_000,
  };
}

export interface TestCore extends Core {
  store: Store;
  clock: ManualClock;
  hasher: CountingHasher;
  limiter: RateLimiter;
  cache: CredentialCache;
}

/** The real core on an in-memory SQLite store, a manual clock and cheap bcrypt (cost 4). */
export async function testCore(
  opts: {
    store?: Store;
    limiter?: (clock: Clock) => RateLimiter;
    cache?: (clock: Clock) => CredentialCache;
    hasher?: Hasher;
    limits?: Partial<LimitSettings>;
    keys?: Map<string, Buffer>;
    current?: string;
    hmac?: Buffer;
    /** bcrypt cost imported hashes are upgraded to (the test hasher's own is 4). */
    bcryptCost?: number;
  } = {},
): Promise<TestCore> {
  const clock = new ManualClock(Date.now());
  const store = opts.store ?? new EmbeddedStore(':memory:');
  await store.init();
  const limiter = opts.limiter ? opts.limiter(clock) : new MemoryLimiter(clock);
  const cache = opts.cache ? opts.cache(clock) : new MemoryCredentialCache(clock);
  const hasher = new CountingHasher(opts.hasher);
  const keys = opts.keys ?? new Map([['k1', randomBytes(32)]]);
  const core = await createCore({
    store,
    limiter,
    cache,
    hasher,
    clock,
    keys: { current: opts.current ?? 'k1', keys, hmac: opts.hmac ?? randomBytes(32) },
    settings: (() => {
      const settings = testSettings(opts.limits);
      return { ...settings, auth: { ...settings.auth, bcryptCost: opts.bcryptCost ?? settings.auth.bcryptCost } };
    })(),
  });
  hasher.verifies = 0;
  return { ...core, store, clock, hasher, limiter, cache };
}

export const req = (username: string, secret: string, scope: 'master' | 'imap' | 'pop3' | 'smtp' = 'imap', ip = '192.0.2.10') => ({
  username,
  secret,
  scope,
  ip,
  protocol: scope === 'master' ? ('http' as const) : scope,
});
