import type { RedisConnection } from './redis-client.js';
import { temporary } from '../core/errors.js';
import type { RateLimiter, Reservation } from '../core/ports.js';

// Lua scripts rather than rate-limiter-flexible: a window here must remember each attempt's
// fingerprint and state (in flight, or a counted failure), reserve before the check and
// settle after it, and each step has to read and change the window in one atomic move.
// One hash per window, so each script touches a single key (and so one Redis Cluster slot).
// Field values: -1 a counted failure, n > 0 the holders of a reservation still checking.

const RESERVE_SCRIPT = `
local state = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local ttl = redis.call('PTTL', KEYS[1])
if state > 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
  return {1, ttl}
end
local size = redis.call('HLEN', KEYS[1])
if size >= tonumber(ARGV[2]) then return {0, ttl} end
if state == -1 then return {1, ttl} end
redis.call('HSET', KEYS[1], ARGV[1], 1)
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  ttl = tonumber(ARGV[3])
end
return {1, ttl}
`;

const SETTLE_SCRIPT = `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local state = tonumber(raw or '0')
if ARGV[2] == 'failed' then
  if raw == false or state > 0 then
    redis.call('HSET', KEYS[1], ARGV[1], -1)
    if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
  end
elseif state > 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
elseif state == 1 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
`;

type RedisWithScripts = RedisConnection & {
  posternReserve(key: string, fingerprint: string, limit: number, windowMs: number): Promise<[number, number]>;
  posternSettle(key: string, fingerprint: string, outcome: string, windowMs: number): Promise<number>;
};

/** Attempt windows shared by every postern process through Redis. */
export class RedisLimiter implements RateLimiter {
  private readonly redis: RedisWithScripts;

  constructor(
    redis: RedisConnection,
    private readonly prefix = 'postern:rl:',
  ) {
    redis.defineCommand('posternReserve', { numberOfKeys: 1, lua: RESERVE_SCRIPT });
    redis.defineCommand('posternSettle', { numberOfKeys: 1, lua: SETTLE_SCRIPT });
    this.redis = redis as RedisWithScripts;
  }

  async reserve(key: string, fingerprint: string, limit: number, windowMs: number): Promise<Reservation> {
    try {
      const [granted, ttl] = await this.redis.posternReserve(this.prefix + key, fingerprint, limit, windowMs);
      return { granted: granted === 1, resetInMs: Math.max(0, ttl) };
    } catch (err) {
      throw temporary(err, 'Redis');
    }
  }

  async settle(key: string, fingerprint: string, outcome: 'failed' | 'refunded', windowMs: number): Promise<void> {
    try {
      await this.redis.posternSettle(this.prefix + key, fingerprint, outcome, windowMs);
    } catch (err) {
      throw temporary(err, 'Redis');
    }
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
