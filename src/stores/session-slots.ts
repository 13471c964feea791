import { randomBytes } from 'node:crypto';
import type { RedisConnection } from './redis-client.js';
import { temporary } from '../core/errors.js';
import type { SessionSlots } from '../core/ports.js';

/** Slots of this process only (no Redis configured: one postern process). */
export class MemorySessionSlots implements SessionSlots {
  private readonly live = new Map<string, Set<string>>();

  async acquire(key: string, id: string, max: number): Promise<boolean> {
    const ids = this.live.get(key) ?? new Set<string>();
    if (ids.size >= max) return false;
    ids.add(id);
    this.live.set(key, ids);
    return true;
  }

  async release(key: string, id: string): Promise<void> {
    const ids = this.live.get(key);
    ids?.delete(id);
    if (ids && ids.size === 0) this.live.delete(key);
  }

  async close(): Promise<void> {}
}

// Each slot is a member of a sorted set scored by the time its lease ends; the process that
// holds it renews the lease while the session lives. A process that dies without releasing
// its slots loses them when their leases run out, so a crash cannot lock users out for good.
// Redis's own clock is the one clock every process shares.
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`;

type RedisWithSlots = RedisConnection & {
  posternSlotAcquire(key: string, max: number, member: string, leaseMs: number): Promise<number>;
  posternSlotRenew(key: string, member: string, leaseMs: number): Promise<number>;
};

/** Slots shared by every postern process through Redis, held on renewed leases. */
export class RedisSessionSlots implements SessionSlots {
  private readonly redis: RedisWithSlots;
  /** Tells this process's slots from another's with the same session id. */
  private readonly instance = randomBytes(6).toString('hex');
  /** Slots this process holds: member → Redis key. */
  private readonly held = new Map<string, string>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    redis: RedisConnection,
    private readonly leaseMs = 90_000,
    private readonly prefix = 'postern:slots:',
  ) {
    redis.defineCommand('posternSlotAcquire', { numberOfKeys: 1, lua: ACQUIRE });
    redis.defineCommand('posternSlotRenew', { numberOfKeys: 1, lua: RENEW });
    this.redis = redis as RedisWithSlots;
    this.timer = setInterval(() => void this.renew(), Math.max(10, Math.floor(leaseMs / 3)));
    this.timer.unref();
  }

  private member(id: string): string {
    return `${this.instance}:${id}`;
  }

  async acquire(key: string, id: string, max: number): Promise<boolean> {
    const redisKey = `${this.prefix}${key}`;
    try {
      const ok = (await this.redis.posternSlotAcquire(redisKey, max, this.member(id), this.leaseMs)) === 1;
      if (ok) this.held.set(this.member(id), redisKey);
      return ok;
    } catch (err) {
      throw temporary(err, 'Redis');
    }
  }

  async release(key: string, id: string): Promise<void> {
    this.held.delete(this.member(id));
    try {
      await this.redis.zrem(`${this.prefix}${key}`, this.member(id));
    } catch (err) {
      // Safe to ignore for callers: the slot's lease runs out on its own.
      throw temporary(err, 'Redis');
    }
  }

  /** Renews every lease this process holds; a missed round is made up by the next. */
  private async renew(): Promise<void> {
    await Promise.all([...this.held].map(([member, key]) => this.redis.posternSlotRenew(key, member, this.leaseMs).catch(() => 0)));
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
  }
}
