import type { RedisConnection } from './redis-client.js';
import type { Clock } from '../core/clock.js';
import { temporary } from '../core/errors.js';
import type { CredentialCache } from '../core/ports.js';

/** Per-process cache with a size bound; oldest entries go first when full. */
export class MemoryCredentialCache implements CredentialCache {
  private readonly entries = new Map<string, { value: string; expiresAt: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly maxEntries = 50_000,
  ) {}

  async get(key: string): Promise<string | null> {
    const e = this.entries.get(key);
    if (!e) return null;
    if (e.expiresAt <= this.clock.now().getTime()) {
      this.entries.delete(key);
      return null;
    }
    return e.value;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    this.entries.delete(key);
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
    this.entries.set(key, { value, expiresAt: this.clock.now().getTime() + ttlMs });
  }

  async close(): Promise<void> {}
}

/** Shared by every postern process; keys are HMACs, so Redis never sees a secret. */
export class RedisCredentialCache implements CredentialCache {
  constructor(
    private readonly redis: RedisConnection,
    private readonly prefix = 'postern:vc:',
  ) {}

  async get(key: string): Promise<string | null> {
    try {
      return await this.redis.get(this.prefix + key);
    } catch (err) {
      throw temporary(err, 'Redis');
    }
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    try {
      await this.redis.set(this.prefix + key, value, 'PX', Math.max(1, Math.floor(ttlMs)));
    } catch (err) {
      throw temporary(err, 'Redis');
    }
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
