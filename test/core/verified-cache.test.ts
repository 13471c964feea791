import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { totpCode } from '../../src/core/totp.js';
import type { AuthResult } from '../../src/core/types.js';
import { RedisCredentialCache } from '../../src/stores/credential-cache.js';
import { EmbeddedStore } from '../../src/stores/embedded-store.js';
import { WorkerPool } from '../../src/workers/worker-pool.js';
import { PASSWORD, actor, req, testCore } from '../helpers/core.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

const reason = (r: AuthResult) => (r.ok ? 'ok' : r.reason);

describe('verified-credential cache (F2) and shared checks (F3)', () => {
  it('skips bcrypt on a repeated login, but never for a wrong secret', async () => {
    const c = await testCore();
    await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
    expect(reason(await c.auth.authenticate(req('alice', PASSWORD)))).toBe('ok');
    const after = c.hasher.verifies;
    expect(reason(await c.auth.authenticate(req('alice', PASSWORD)))).toBe('ok');
    expect(c.hasher.verifies).toBe(after);
    expect(reason(await c.auth.authenticate(req('alice', `${PASSWORD}x`)))).toBe('invalid_credentials');
    expect(c.hasher.verifies).toBe(after + 1);
    // Audit events still written for the cached login.
    const { events } = await c.store.audit.query({ username: 'alice', action: 'auth', limit: 10 }, c.clock.now());
    expect(events).toHaveLength(3);
  });

  it('stops matching after a password change, a 2FA change, or a disable', async () => {
    const c = await testCore();
    await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
    expect(reason(await c.auth.authenticate(req('alice', PASSWORD)))).toBe('ok');
    await c.accounts.setPassword(actor, 'alice', 'Brand-new-pass-2');
    expect(reason(await c.auth.authenticate(req('alice', PASSWORD)))).toBe('invalid_credentials');

    expect(reason(await c.auth.authenticate(req('alice', 'Brand-new-pass-2')))).toBe('ok');
    const { secret } = await c.accounts.setupTotp(actor, 'alice');
    await c.accounts.confirmTotp(actor, 'alice', await totpCode(secret, c.clock.now()));
    expect(reason(await c.auth.authenticate(req('alice', 'Brand-new-pass-2')))).toBe('asp_required');

    const { password: asp } = await c.accounts.createAsp(actor, 'alice', { description: '', scopes: ['imap'] });
    expect(reason(await c.auth.authenticate(req('alice', asp)))).toBe('ok');
    await c.accounts.setStatus(actor, 'alice', 'disabled');
    expect(reason(await c.auth.authenticate(req('alice', asp)))).toBe('account_disabled');
  });

  it('caches per scope: a secret verified for IMAP is checked again for SMTP', async () => {
    const c = await testCore();
    await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
    const { password: asp } = await c.accounts.createAsp(actor, 'alice', { description: '', scopes: ['imap'] });
    expect(reason(await c.auth.authenticate(req('alice', asp, 'imap')))).toBe('ok');
    expect(reason(await c.auth.authenticate(req('alice', asp, 'smtp')))).toBe('scope_denied');
  });

  it('collapses identical checks that arrive together into one bcrypt run', async () => {
    const c = await testCore();
    await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
    const { password: asp } = await c.accounts.createAsp(actor, 'alice', { description: '', scopes: ['imap'] });
    c.hasher.verifies = 0;
    const results = await Promise.all(Array.from({ length: 5 }, () => c.auth.authenticate(req('alice', asp))));
    expect(results.map(reason)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
    expect(c.hasher.verifies).toBe(1);
  });
});

describe('verified-credential cache in Redis', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => redis?.stop());

  it('is shared by postern processes and holds no secret, only keyed hashes', async () => {
    const store = new EmbeddedStore(':memory:');
    const hmac = randomBytes(32);
    const a = await testCore({ store, hmac, cache: () => new RedisCredentialCache(redis.client()) });
    const b = await testCore({ store, hmac, cache: () => new RedisCredentialCache(redis.client()) });
    await a.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
    const { password: asp } = await a.accounts.createAsp(actor, 'alice', { description: '', scopes: ['imap'] });
    expect(reason(await a.auth.authenticate(req('alice', asp)))).toBe('ok');
    b.hasher.verifies = 0;
    expect(reason(await b.auth.authenticate(req('alice', asp)))).toBe('ok');
    expect(b.hasher.verifies).toBe(0);

    const r = redis.client();
    const keys = await r.keys('*');
    expect(keys.length).toBeGreaterThan(0);
    const dump = [...keys, ...(await Promise.all(keys.map((k) => r.get(k))))].join('\n');
    for (const secret of [asp, asp.replace(/ /g, ''), PASSWORD, 'alice']) expect(dump).not.toContain(secret);
    for (const k of keys) expect(k).toMatch(/^postern:vc:[0-9a-f]{64}$/);
  });
});

describe('bcrypt worker pool', () => {
  it('verifies standard hashes from bcryptjs and makes $2b$ cost-12 hashes', async () => {
    const pool = new WorkerPool({ cost: 12, threads: 2, maxQueue: 10 });
    try {
      const bcryptjs = (await import('bcryptjs')).default;
      expect(await pool.verify('secret', await bcryptjs.hash('secret', 4))).toBe(true);
      expect(await pool.verify('other', await bcryptjs.hash('secret', 4))).toBe(false);
      const h = await pool.hash('secret');
      expect(h).toMatch(/^\$2b\$12\$/);
      expect(await bcryptjs.compare('secret', h)).toBe(true);
      expect(await pool.verify('secret', 'not-a-hash')).toBe(false);
    } finally {
      await pool.close();
    }
  });

  it('answers a temporary failure when its queue is full, instead of piling up', async () => {
    const pool = new WorkerPool({ cost: 10, threads: 1, maxQueue: 1 });
    const c = await testCore({ hasher: pool });
    try {
      const names = Array.from({ length: 6 }, (_, i) => `u${i}`);
      for (const n of names) await c.accounts.createUser(actor, { username: n, password: PASSWORD });
      const results = await Promise.all(names.map((n) => c.auth.authenticate(req(n, PASSWORD))));
      const reasons = results.map(reason);
      expect(reasons).toContain('ok');
      expect(reasons).toContain('temporary_failure');
      expect(reasons).not.toContain('invalid_credentials');
    } finally {
      await pool.close();
    }
  });
});
