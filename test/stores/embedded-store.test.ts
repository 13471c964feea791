import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { EmbeddedStore, SCHEMA_VERSION } from '../../src/stores/embedded-store.js';
import { newUser, storeContract } from './store-contract.js';

const dir = mkdtempSync(join(tmpdir(), 'postern-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

storeContract('embedded (SQLite file)', async () => new EmbeddedStore(join(dir, `db${n++}.sqlite`)));

describe('embedded store durability', () => {
  it('keeps users and audit across a restart', async () => {
    const path = join(dir, 'restart.sqlite');
    const a = new EmbeddedStore(path);
    await a.init();
    await a.users.create(newUser('alice'), new Date());
    await a.close();
    const b = new EmbeddedStore(path);
    await b.init();
    expect((await b.users.findByName('alice'))?.username).toBe('alice');
    await b.close();
  });

  it('answers a fault with a temporary error, not a wrong answer', async () => {
    const s = new EmbeddedStore(join(dir, 'closed.sqlite'));
    await s.init();
    await s.close();
    await expect(s.users.findByName('alice')).rejects.toMatchObject({ code: 'temporary_failure', temporary: true });
  });

  it('upgrades a file written by the first schema, keeping its audit trail', async () => {
    const path = join(dir, 'v1.sqlite');
    // The audit table as the first release wrote it, user_version still 0.
    const old = new Database(path);
    old.exec(`CREATE TABLE audit (
      id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, expires_at INTEGER NOT NULL,
      action TEXT NOT NULL, result TEXT NOT NULL, username TEXT, ip TEXT, protocol TEXT, doc TEXT NOT NULL);
      CREATE INDEX audit_user_time ON audit (username, time DESC);`);
    const t = Date.now();
    old
      .prepare('INSERT INTO audit (time, expires_at, action, result, username, doc) VALUES (?, ?, ?, ?, ?, ?)')
      .run(t, t + 86_400_000, 'auth', 'success', 'alice', JSON.stringify({ time: new Date(t), action: 'auth', result: 'success', username: 'alice' }));
    old.close();
    const s = new EmbeddedStore(path);
    await s.init();
    const { events } = await s.audit.query({ username: 'alice', limit: 10 }, new Date(t));
    expect(events).toHaveLength(1);
    await s.audit.append({ ...events[0]!, id: 'bbbbbbbbbbbbbbbbbbbbbbb1' }, new Date(t + 86_400_000));
    await s.audit.append({ ...events[0]!, id: 'bbbbbbbbbbbbbbbbbbbbbbb1' }, new Date(t + 86_400_000));
    expect((await s.audit.query({ username: 'alice', limit: 10 }, new Date(t))).events).toHaveLength(2);
    await s.close();
    const check = new Database(path);
    expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(
      (check.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit'").all() as Array<{ name: string }>).map((r) => r.name),
    ).not.toContain('audit_user_time');
    check.close();
  });

  it('refuses a file written by a newer postern instead of guessing at it', async () => {
    const path = join(dir, 'newer.sqlite');
    const newer = new Database(path);
    newer.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    newer.close();
    const s = new EmbeddedStore(path);
    await expect(s.init()).rejects.toMatchObject({ code: 'store_misconfigured', message: expect.stringContaining('newer postern') });
    await s.close();
  });
});

describe('embedded audit commits', () => {
  const event = (i: number) => ({
    id: `ev${String(i).padStart(22, '0')}`,
    time: new Date(),
    action: 'auth' as const,
    result: 'success' as const,
    reason: null,
    userId: null,
    username: 'alice',
    ip: '192.0.2.1',
    protocol: 'imap' as const,
    scope: null,
    aspId: null,
    sessionId: null,
    userAgent: null,
    actor: null,
  });
  const later = () => new Date(Date.now() + 86_400_000);

  it('waits for a locked database file off the event loop, then stores the event', async () => {
    const path = join(dir, 'locked.sqlite');
    const s = new EmbeddedStore(path);
    await s.init();
    // Another process holds the write lock. A commit made on the main thread would sit in
    // SQLite's busy wait there, and no timer, socket or login could run meanwhile.
    const other = new Database(path);
    other.exec('BEGIN EXCLUSIVE');
    let settled = false;
    const stored = s.audit.append(event(1), later()).finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(settled).toBe(false);
    other.exec('COMMIT');
    other.close();
    await stored;
    expect((await s.audit.query({ username: 'alice', limit: 10 }, new Date(0))).events.map((e) => e.id)).toEqual([event(1).id]);
    await s.close();
  });

  it('stores every event appended before close, appended all at once', async () => {
    const path = join(dir, 'burst.sqlite');
    const s = new EmbeddedStore(path);
    await s.init();
    const all = Array.from({ length: 300 }, (_, i) => s.audit.append(event(i), later()));
    await s.close();
    await Promise.all(all);
    const check = new Database(path);
    expect((check.prepare('SELECT count(*) AS n FROM audit').get() as { n: number }).n).toBe(300);
    check.close();
  });
});
