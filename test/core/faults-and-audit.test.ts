import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/core/audit-log.js';
import { temporary } from '../../src/core/errors.js';
import type { AuditStore } from '../../src/core/ports.js';
import { AuditSpool } from '../../src/stores/audit-spool.js';
import { toJson } from '../../src/stores/documents.js';
import { EmbeddedStore } from '../../src/stores/embedded-store.js';
import { RedisLimiter } from '../../src/stores/redis-limiter.js';
import { PASSWORD, actor, req, testCore } from '../helpers/core.js';
import { startRedis } from '../helpers/redis-server.js';

describe('faults answer "try again later", never "wrong password"', () => {
  it('gives temporary_failure when Redis goes down, and audits it as an error', async () => {
    const redis = await startRedis();
    const c = await testCore({ limiter: () => new RedisLimiter(redis.client()) });
    await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
    expect(await c.auth.authenticate(req('alice', PASSWORD))).toMatchObject({ ok: true });
    await redis.stop();
    const r = await c.auth.authenticate(req('alice', PASSWORD));
    expect(r).toMatchObject({ ok: false, reason: 'temporary_failure' });
    const wrong = await c.auth.authenticate(req('alice', 'Wrong-password-1'));
    expect(wrong).toMatchObject({ ok: false, reason: 'temporary_failure' });
    const { events } = await c.store.audit.query({ username: 'alice', result: 'error', limit: 10 }, c.clock.now());
    expect(events.map((e) => e.reason)).toEqual(['temporary_failure', 'temporary_failure']);
  });

  it('gives temporary_failure when the user store is down', async () => {
    const store = new EmbeddedStore(':memory:');
    const c = await testCore({ store });
    await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
    const users = store.users;
    users.findByName = () => Promise.reject(temporary(new Error('connection reset'), 'embedded store'));
    expect(await c.auth.authenticate(req('alice', PASSWORD))).toMatchObject({ ok: false, reason: 'temporary_failure' });
  });
});

describe('audit trail', () => {
  it('keeps events for the retention period, then they vanish', async () => {
    const c = await testCore();
    await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
    await c.auth.authenticate(req('alice', PASSWORD));
    const q = () => c.store.audit.query({ username: 'alice', limit: 10 }, c.clock.now());
    expect((await q()).events.map((e) => e.action)).toEqual(['auth', 'user.create']);
    c.clock.advance(29 * 86_400_000);
    expect((await q()).events).toHaveLength(2);
    c.clock.advance(2 * 86_400_000);
    expect((await q()).events).toHaveLength(0);
  });

  it('records every change of authentication data with its actor', async () => {
    const c = await testCore();
    await c.accounts.createUser({ name: 'root' }, { username: 'alice', password: PASSWORD });
    const { asp } = await c.accounts.createAsp(actor, 'alice', { description: '', scopes: ['imap'] });
    await c.accounts.revokeAsp(actor, 'alice', asp.id);
    await c.accounts.setPassword(actor, 'alice', 'Another-pass-1');
    await c.accounts.setupTotp(actor, 'alice');
    await c.accounts.regenerateRecoveryCodes(actor, 'alice');
    await c.accounts.resetSecondFactor({ name: 'admin-bob' }, 'alice');
    await c.accounts.setStatus(actor, 'alice', 'disabled');
    const { events } = await c.store.audit.query({ username: 'alice', limit: 50 }, c.clock.now());
    expect(events.map((e) => e.action).reverse()).toEqual([
      'user.create',
      'asp.create',
      'asp.delete',
      'password.change',
      'totp.setup',
      'recovery.regenerate',
      'recovery.regenerate',
      'password.reset',
      '2fa.reset',
      'user.status',
    ]);
    expect(events.find((e) => e.action === '2fa.reset')?.actor).toBe('admin-bob');
    expect(events.find((e) => e.action === 'asp.delete')?.aspId).toBe(asp.id);
  });

  it('loses no event while the audit store is down: they are spooled and written back later', async () => {
    const store = new EmbeddedStore(':memory:');
    await store.init();
    let down = true;
    const flaky: AuditStore = {
      append: (e, exp) => (down ? Promise.reject(new Error('store down')) : store.audit.append(e, exp)),
      query: (q, now) => store.audit.query(q, now),
      purgeExpired: (now) => store.audit.purgeExpired(now),
    };
    const spool = new AuditSpool(join(mkdtempSync(join(tmpdir(), 'postern-spool-')), 'spool.jsonl'));
    const clock = { now: () => new Date() };
    const log = new AuditLog(flaky, clock, 86_400_000, spool);
    await log.record({ action: 'auth', result: 'failure', username: 'alice', reason: 'one' });
    await log.record({ action: 'auth', result: 'success', username: 'alice', reason: 'two' });
    expect((await store.audit.query({ limit: 10 }, new Date())).events).toHaveLength(0);
    down = false;
    expect(await log.flushFallback()).toBe(2);
    const { events } = await store.audit.query({ limit: 10 }, new Date());
    expect(events.map((e) => e.reason).sort()).toEqual(['one', 'two']);
    expect(events[0]?.time).toBeInstanceOf(Date);
    expect(await log.flushFallback()).toBe(0);
  });

  it('stores once an event whose write timed out after it was stored, when the spool replays it', async () => {
    const store = new EmbeddedStore(':memory:');
    await store.init();
    // The write reaches the store, but its answer is lost (a socket timeout after the commit).
    const lost: AuditStore = {
      append: async (e, exp) => {
        await store.audit.append(e, exp);
        throw new Error('socket timeout');
      },
      query: (q, now) => store.audit.query(q, now),
      purgeExpired: (now) => store.audit.purgeExpired(now),
    };
    const spool = new AuditSpool(join(mkdtempSync(join(tmpdir(), 'postern-spool-')), 'spool.jsonl'));
    const log = new AuditLog(lost, { now: () => new Date() }, 86_400_000, spool);
    await log.record({ action: 'auth', result: 'failure', username: 'alice', reason: 'once' });
    const replay = new AuditLog(store.audit, { now: () => new Date() }, 86_400_000, spool);
    expect(await replay.flushFallback()).toBe(1);
    const { events } = await store.audit.query({ limit: 10 }, new Date());
    expect(events.map((e) => e.reason)).toEqual(['once']);
  });

  it("adopts the half-drained batch of a process that died, and leaves a live one's alone", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postern-spool-'));
    const path = join(dir, 'spool.jsonl');
    const line = (reason: string) =>
      `${toJson({ event: { id: randomBytes(12).toString('hex'), time: new Date(), action: 'auth', result: 'failure', reason }, expiresAt: new Date(Date.now() + 86_400_000) })}\n`;
    const dead = spawnSync('true').pid;
    writeFileSync(`${path}.${dead}.draining`, line('from a dead process'));
    writeFileSync(`${path}.${process.ppid}.draining`, line('being drained by a live process'));
    const store = new EmbeddedStore(':memory:');
    await store.init();
    const log = new AuditLog(store.audit, { now: () => new Date() }, 86_400_000, new AuditSpool(path));
    expect(await log.flushFallback()).toBe(1);
    expect((await store.audit.query({ limit: 10 }, new Date())).events.map((e) => e.reason)).toEqual(['from a dead process']);
  });

  it('tells every observer of each stored event once, a failing one included, and spooled events when written back', async () => {
    const store = new EmbeddedStore(':memory:');
    await store.init();
    let down = false;
    const flaky: AuditStore = {
      append: (e, exp) => (down ? Promise.reject(new Error('store down')) : store.audit.append(e, exp)),
      query: (q, now) => store.audit.query(q, now),
      purgeExpired: (now) => store.audit.purgeExpired(now),
    };
    const failures: string[] = [];
    const spool = new AuditSpool(join(mkdtempSync(join(tmpdir(), 'postern-spool-')), 'spool.jsonl'));
    const log = new AuditLog(
      flaky,
      { now: () => new Date() },
      86_400_000,
      spool,
      () => {},
      (name) => failures.push(name),
    );
    const heard: string[] = [];
    log.subscribe('broken', () => {
      throw new Error('observer bug');
    });
    log.subscribe('counter', (e) => void heard.push(e.reason!));
    await log.record({ action: 'auth', result: 'success', reason: 'stored' });
    down = true;
    await log.record({ action: 'auth', result: 'failure', reason: 'spooled' });
    await new Promise((r) => setTimeout(r, 10));
    // Not yet stored, so not yet told.
    expect(heard).toEqual(['stored']);
    down = false;
    await log.flushFallback();
    await new Promise((r) => setTimeout(r, 10));
    expect(heard).toEqual(['stored', 'spooled']);
    expect(failures).toEqual(['broken', 'broken']);
  });
});
