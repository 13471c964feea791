import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionSlots } from '../../src/core/ports.js';
import { MemorySessionSlots, RedisSessionSlots } from '../../src/stores/session-slots.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
}, 30_000);
afterAll(async () => redis?.stop());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each([
  ['memory', () => new MemorySessionSlots()],
  ['Redis', () => new RedisSessionSlots(redis.client(), 90_000, `t${Math.random()}:`)],
] as Array<[string, () => SessionSlots]>)('session slots in %s', (_name, make) => {
  it('gives at most max slots per key, and a released slot to the next session', async () => {
    const s = make();
    expect(await s.acquire('imap:alice', 's1', 2)).toBe(true);
    expect(await s.acquire('imap:alice', 's2', 2)).toBe(true);
    expect(await s.acquire('imap:alice', 's3', 2)).toBe(false);
    expect(await s.acquire('pop3:alice', 's3', 2)).toBe(true);
    expect(await s.acquire('imap:bob', 's3', 2)).toBe(true);
    await s.release('imap:alice', 's1');
    expect(await s.acquire('imap:alice', 's3', 2)).toBe(true);
    await s.close();
  });
});

describe('session slots shared through Redis', () => {
  it('are shared by postern processes', async () => {
    const prefix = `shared${Math.random()}:`;
    const a = new RedisSessionSlots(redis.client(), 90_000, prefix);
    const b = new RedisSessionSlots(redis.client(), 90_000, prefix);
    expect(await a.acquire('imap:alice', 'x', 2)).toBe(true);
    // The same session id in another process is another session.
    expect(await b.acquire('imap:alice', 'x', 2)).toBe(true);
    expect(await b.acquire('imap:alice', 'y', 2)).toBe(false);
    await a.release('imap:alice', 'x');
    expect(await b.acquire('imap:alice', 'y', 2)).toBe(true);
    await Promise.all([a.close(), b.close()]);
  });

  it("keep a live process's slots on renewed leases, and free a dead process's when its leases run out", async () => {
    const prefix = `lease${Math.random()}:`;
    const alive = new RedisSessionSlots(redis.client(), 1000, prefix);
    const dead = new RedisSessionSlots(redis.client(), 1000, prefix);
    const other = new RedisSessionSlots(redis.client(), 1000, prefix);
    expect(await alive.acquire('imap:alice', 'a', 2)).toBe(true);
    expect(await dead.acquire('imap:alice', 'd', 2)).toBe(true);
    await dead.close(); // a crash: no release, no more renewals
    await sleep(1500);
    expect(await other.acquire('imap:alice', 'o', 2)).toBe(true);
    // The live process's lease was renewed all along, so the cap is reached again.
    expect(await other.acquire('imap:alice', 'p', 2)).toBe(false);
    await Promise.all([alive.close(), other.close()]);
  });

  it('answers a temporary failure when Redis is down', async () => {
    const down = await startRedis();
    const s = new RedisSessionSlots(down.client());
    await down.stop();
    await expect(s.acquire('imap:alice', 'z', 2)).rejects.toMatchObject({ temporary: true });
    await s.close();
  });
});
