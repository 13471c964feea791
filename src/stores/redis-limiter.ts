import type { Redis } from 'ioredis';
import { temporary } from '../core/errors.js';
import type { RateLimiter, WindowState } from '../core/ports.js';

// A Lua script rather than rate-limiter-flexible: a window here must also remember which
// wrong secrets it has seen (the same one retried counts once), and the set and the counter
// have to change together atomically. Both keys share a hash tag so Redis Cluster keeps
// them in one slot.
const FAIL_SCRIPT = `
local added = redis.call('SADD', KEYS[2], ARGV[1])
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if added == 1 or count == 0 then
  count = redis.call('INCR', KEYS[1])
  if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
redis.call('PEXPIRE', KEYS[2], ttl)
return {count, ttl}
`;

const PEEK_SCRIPT = `
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
local ttl = redis.call('PTTL', KEYS[1])
return {count, ttl}
`;

type RedisWithScripts = Redis & {
  posternFail(counter: string, seen: string, fingerprint: string, windowMs: number): Promise<[number, number]>;
  posternPeek(counter: string): Promise<[number, number]>;
};

/** Failure windows shared by every postern process through Redis. */
export class RedisLimiter implements RateLimiter {
  private readonly redis: RedisWithScripts;

  constructor(redis: Redis, private readonly prefix = 'postern:rl:') {
    redis.defineCommand('posternFail', { numberOfKeys: 2, lua: FAIL_SCRIPT });
    redis.defineCommand('posternPeek', { numberOfKeys: 1, lua: PEEK_SCRIPT });
    this.redis = redis as RedisWithScripts;
  }

  private keys(key: string): [string, string] {
    return [`${this.prefix}{${key}}:n`, `${this.prefix}{${key}}:seen`];
  }

  async peek(key: string): Promise<WindowState> {
    try {
      const [count, ttl] = await this.redis.posternPeek(this.keys(key)[0]);
      return count > 0 && ttl > 0 ? { count, resetInMs: ttl } : { count: 0, resetInMs: 0 };
    } catch (err) {
      throw temporary(err, 'Redis');
    }
  }

  async fail(key: string, fingerprint: string, windowMs: number): Promise<WindowState> {
    const [counter, seen] = this.keys(key);
    try {
      const [count, ttl] = await this.redis.posternFail(counter, seen, fingerprint, windowMs);
      return { count, resetInMs: ttl };
    } catch (err) {
      throw temporary(err, 'Redis');
    }
  }

  async clear(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    try {
      // One DEL per window: the two keys of a window share a slot, different windows may not.
      await Promise.all(keys.map((k) => this.redis.del(...this.keys(k))));
    } catch (err) {
      throw temporary(err, 'Redis');
    }
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
