import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { PosternError, conflict, invalid, temporary } from '../core/errors.js';
import { SqliteWriter } from './sqlite-writer.js';
import type {
  ApiTokenStore,
  AspStore,
  AuditStore,
  NewAsp,
  ChallengeStore,
  NewSecurityKey,
  NewUser,
  PolicyStore,
  RecoveryCodeStore,
  SecurityKeyStore,
  SessionStore,
  Store,
  TrustedDeviceStore,
  UserPatch,
  UserStore,
} from '../core/ports.js';
import type {
  ApiToken,
  Asp,
  AuditEvent,
  AuditPage,
  AuditQuery,
  Challenge,
  Domain,
  FeatureName,
  FeatureSetting,
  LastUse,
  Session,
  TrustedDevice,
  User,
  WebAuthnCredential,
} from '../core/types.js';
import { decodeCursor, encodeCursor, fromJson, newId, toJson } from './documents.js';

// The data model of the whole product. Documents are JSON so the shape matches the MongoDB
// store; columns exist only for what is looked up, made unique, or changed atomically.
// Version 1 of the schema: later versions are the numbered MIGRATIONS below.
const SCHEMA_V1 = `
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, doc TEXT NOT NULL,
  credential_version INTEGER NOT NULL DEFAULT 0, totp_last_step INTEGER);
CREATE TABLE IF NOT EXISTS asps (
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL, prefix_hash TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS asps_user_prefix ON asps (user_id, prefix_hash);
CREATE TABLE IF NOT EXISTS recovery_codes (
  user_id TEXT NOT NULL, hash TEXT NOT NULL, created_at INTEGER NOT NULL, used_at INTEGER,
  PRIMARY KEY (user_id, hash));
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  action TEXT NOT NULL, result TEXT NOT NULL, username TEXT, ip TEXT, protocol TEXT, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time DESC, id DESC);
CREATE INDEX IF NOT EXISTS audit_user_time ON audit (username, time DESC);
CREATE INDEX IF NOT EXISTS audit_expires ON audit (expires_at);
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, expires_at INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
CREATE TABLE IF NOT EXISTS trusted_devices (
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, expires_at INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS webauthn_credentials (
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL, credential_id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_tokens (id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS challenges (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS domains (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
`;

/**
 * Numbered schema changes, applied in order once each; the database's user_version is the
 * number of the last one applied. Append only: a released migration never changes.
 */
const MIGRATIONS: string[] = [
  SCHEMA_V1,
  // 2: audit events keep the id they were recorded with, so an event written again after a
  // timed-out write (the spool's replay) is stored once; the per-user history index carries
  // the id tiebreaker its query sorts by.
  `ALTER TABLE audit ADD COLUMN event_id TEXT;
   CREATE UNIQUE INDEX audit_event_id ON audit (event_id);
   DROP INDEX IF EXISTS audit_user_time;
   CREATE INDEX audit_user_time_id ON audit (username, time DESC, id DESC);`,
];

/** The schema version this code writes; a newer file was written by a newer postern. */
export const SCHEMA_VERSION = MIGRATIONS.length;

type Row = Record<string, unknown>;

/** Runs a statement, turning SQLite faults into temporary failures and unique violations into conflicts. */
function guard<T>(what: string, fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    if (err instanceof PosternError) return Promise.reject(err);
    const code = (err as { code?: string }).code ?? '';
    if (code.startsWith('SQLITE_CONSTRAINT')) return Promise.reject(conflict(`${what}: already exists`));
    return Promise.reject(temporary(err, 'embedded store'));
  }
}

function userFromRow(row: Row | undefined): User | null {
  if (!row) return null;
  return {
    ...fromJson<User>(row.doc as string),
    id: row.id as string,
    credentialVersion: row.credential_version as number,
    totpLastStep: (row.totp_last_step as number | null) ?? null,
  };
}

function docOf(user: User): string {
  const { id: _id, credentialVersion: _v, totpLastStep: _t, ...rest } = user;
  return toJson(rest);
}

class EmbeddedUsers implements UserStore {
  constructor(private readonly db: Database.Database) {}

  create(input: NewUser, now: Date): Promise<User> {
    return guard(`user "${input.username}"`, () => {
      const user: User = { ...input, id: newId(), credentialVersion: 0, totpLastStep: null, createdAt: now, updatedAt: now };
      this.db.prepare('INSERT INTO users (id, username, doc) VALUES (?, ?, ?)').run(user.id, user.username, docOf(user));
      return user;
    });
  }

  findByName(username: string): Promise<User | null> {
    return guard('user', () => userFromRow(this.db.prepare('SELECT * FROM users WHERE username = ?').get(username) as Row));
  }

  findById(id: string): Promise<User | null> {
    return guard('user', () => userFromRow(this.db.prepare('SELECT * FROM users WHERE id = ?').get(id) as Row));
  }

  update(id: string, patch: UserPatch, now: Date, bump: boolean): Promise<User | null> {
    return guard('user', () =>
      this.db.transaction(() => {
        const current = userFromRow(this.db.prepare('SELECT * FROM users WHERE id = ?').get(id) as Row);
        if (!current) return null;
        const next: User = { ...current, ...patch, updatedAt: now, credentialVersion: current.credentialVersion + (bump ? 1 : 0) };
        // A new TOTP seed starts a new step history.
        const resetStep = 'totp' in patch;
        this.db
          .prepare(`UPDATE users SET doc = ?, credential_version = ?, totp_last_step = CASE WHEN ? THEN NULL ELSE totp_last_step END WHERE id = ?`)
          .run(docOf(next), next.credentialVersion, resetStep ? 1 : 0, id);
        return resetStep ? { ...next, totpLastStep: null } : next;
      })(),
    );
  }

  delete(id: string): Promise<boolean> {
    return guard('user', () => this.db.prepare('DELETE FROM users WHERE id = ?').run(id).changes > 0);
  }

  list(limit: number, afterUsername?: string): Promise<User[]> {
    return guard('user', () =>
      (this.db.prepare('SELECT * FROM users WHERE username > ? ORDER BY username LIMIT ?').all(afterUsername ?? '', limit) as Row[]).map((r) =>
        userFromRow(r)!,
      ),
    );
  }

  advanceTotpStep(id: string, step: number): Promise<boolean> {
    return guard('user', () => {
      const res = this.db.prepare('UPDATE users SET totp_last_step = ? WHERE id = ? AND (totp_last_step IS NULL OR totp_last_step < ?)').run(step, id, step);
      return res.changes === 1;
    });
  }
}

// ASPs stored before networks existed have none: valid from anywhere.
const aspFromRow = (row: Row): Asp => {
  const asp = fromJson<Asp>(row.doc as string);
  return { ...asp, networks: asp.networks ?? [], id: row.id as string };
};

class EmbeddedAsps implements AspStore {
  constructor(private readonly db: Database.Database) {}

  create(input: NewAsp): Promise<Asp> {
    return guard('ASP', () => {
      const asp: Asp = { ...input, id: newId(), lastUse: null };
      this.db.prepare('INSERT INTO asps (id, user_id, prefix_hash, doc) VALUES (?, ?, ?, ?)').run(asp.id, asp.userId, asp.prefixHash, toJson(asp));
      return asp;
    });
  }

  listByUser(userId: string): Promise<Asp[]> {
    return guard('ASP', () => (this.db.prepare('SELECT * FROM asps WHERE user_id = ? ORDER BY rowid').all(userId) as Row[]).map(aspFromRow));
  }

  countByUser(userId: string): Promise<number> {
    return guard('ASP', () => (this.db.prepare('SELECT count(*) AS n FROM asps WHERE user_id = ?').get(userId) as Row).n as number);
  }

  findByPrefix(userId: string, prefixHash: string): Promise<Asp[]> {
    return guard('ASP', () => (this.db.prepare('SELECT * FROM asps WHERE user_id = ? AND prefix_hash = ?').all(userId, prefixHash) as Row[]).map(aspFromRow));
  }

  delete(userId: string, aspId: string): Promise<boolean> {
    return guard('ASP', () => this.db.prepare('DELETE FROM asps WHERE id = ? AND user_id = ?').run(aspId, userId).changes > 0);
  }

  deleteAllOfUser(userId: string): Promise<void> {
    return guard('ASP', () => void this.db.prepare('DELETE FROM asps WHERE user_id = ?').run(userId));
  }

  recordUse(aspId: string, use: LastUse): Promise<void> {
    return guard('ASP', () => {
      this.db.prepare(`UPDATE asps SET doc = json_set(doc, '$.lastUse', json(?)) WHERE id = ?`).run(toJson(use), aspId);
    });
  }
}

class EmbeddedRecoveryCodes implements RecoveryCodeStore {
  constructor(private readonly db: Database.Database) {}

  replace(userId: string, hashes: string[], now: Date): Promise<void> {
    return guard('recovery codes', () =>
      this.db.transaction(() => {
        this.db.prepare('DELETE FROM recovery_codes WHERE user_id = ?').run(userId);
        const insert = this.db.prepare('INSERT INTO recovery_codes (user_id, hash, created_at) VALUES (?, ?, ?)');
        for (const h of hashes) insert.run(userId, h, now.getTime());
      })(),
    );
  }

  consume(userId: string, hash: string, now: Date): Promise<boolean> {
    return guard('recovery codes', () => {
      const res = this.db.prepare('UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND hash = ? AND used_at IS NULL').run(now.getTime(), userId, hash);
      return res.changes === 1;
    });
  }

  countUnused(userId: string): Promise<number> {
    return guard(
      'recovery codes',
      () => (this.db.prepare('SELECT count(*) AS n FROM recovery_codes WHERE user_id = ? AND used_at IS NULL').get(userId) as Row).n as number,
    );
  }
}

type PendingEvent = { event: AuditEvent; expiresAt: Date; done: (err?: unknown) => void };

// An id already stored is this very event written before: keep the one copy.
const AUDIT_INSERT = `INSERT INTO audit (event_id, time, expires_at, action, result, username, ip, protocol, doc)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`;

function auditRow({ event, expiresAt }: PendingEvent): unknown[] {
  const { id, ...doc } = event;
  return [id ?? null, event.time.getTime(), expiresAt.getTime(), event.action, event.result, event.username, event.ip, event.protocol, toJson(doc)];
}

class EmbeddedAudit implements AuditStore {
  private pending: PendingEvent[] = [];
  private scheduled = false;
  /** The batch being committed; events that come meanwhile go in the next one. */
  private inFlight: Promise<void> | null = null;

  /** `writer` commits off the main thread (a database file); without one, commits run here (`:memory:`). */
  constructor(
    private readonly db: Database.Database,
    private readonly writer: SqliteWriter | null,
  ) {}

  /**
   * Events that arrive while a batch is being committed are written together in the next
   * transaction (one disk sync for all of them, not one each); every caller still waits until
   * its own event is stored.
   */
  append(event: AuditEvent, expiresAt: Date): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ event, expiresAt, done: (err) => (err ? reject(err) : resolve()) });
      if (!this.scheduled && !this.inFlight) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.flush();
        });
      }
    });
  }

  /** Commits what is waiting now, unless a batch is in flight (its end starts the next). */
  private flush(): void {
    if (this.inFlight || !this.pending.length) return;
    const batch = this.pending;
    this.pending = [];
    const rows = batch.map(auditRow);
    const committed = this.writer
      ? this.writer.run(rows).catch((err: unknown) => Promise.reject(temporary(err, 'embedded store')))
      : guard('audit', () => this.writeHere(rows));
    this.inFlight = committed.then(
      () => batch.forEach((p) => p.done()),
      (err: unknown) => batch.forEach((p) => p.done(err)),
    );
    void this.inFlight.then(() => {
      this.inFlight = null;
      this.flush();
    });
  }

  private writeHere(rows: unknown[][]): void {
    const insert = this.db.prepare(AUDIT_INSERT);
    this.db.transaction(() => rows.forEach((r) => insert.run(...r)))();
  }

  /** Stores every event appended so far (postern is stopping, the database about to close). */
  async drain(): Promise<void> {
    while (this.inFlight || this.pending.length) {
      this.flush();
      await this.inFlight;
    }
    await this.writer?.close();
  }

  query(q: AuditQuery, now: Date): Promise<AuditPage> {
    return guard('audit', () => {
      const where = ['expires_at > ?'];
      const args: unknown[] = [now.getTime()];
      const eq = (col: string, v: string | undefined) => {
        if (v !== undefined) {
          where.push(`${col} = ?`);
          args.push(v);
        }
      };
      eq('username', q.username);
      eq('action', q.action);
      eq('result', q.result);
      eq('ip', q.ip);
      eq('protocol', q.protocol);
      if (q.since) {
        where.push('time >= ?');
        args.push(q.since.getTime());
      }
      if (q.until) {
        where.push('time < ?');
        args.push(q.until.getTime());
      }
      if (q.cursor) {
        const c = decodeCursor(q.cursor);
        if (!c || !/^\d+$/.test(c.id)) throw invalid('invalid audit cursor');
        where.push('(time < ? OR (time = ? AND id < ?))');
        args.push(c.time, c.time, Number(c.id));
      }
      const rows = this.db
        .prepare(`SELECT id, event_id, time, doc FROM audit WHERE ${where.join(' AND ')} ORDER BY time DESC, id DESC LIMIT ?`)
        .all(...args, q.limit + 1) as Row[];
      const page = rows.slice(0, q.limit);
      const events = page.map((r) => ({ ...fromJson<AuditEvent>(r.doc as string), id: (r.event_id as string | null) ?? String(r.id) }));
      // The cursor is the row's own sequence number, which orders events of one millisecond.
      const last = page[page.length - 1];
      const nextCursor = rows.length > q.limit && last ? encodeCursor({ time: last.time as number, id: String(last.id) }) : null;
      return { events, nextCursor };
    });
  }

  purgeExpired(now: Date): Promise<number> {
    return guard('audit', () => this.db.prepare('DELETE FROM audit WHERE expires_at <= ?').run(now.getTime()).changes);
  }
}

const docRow = <T extends { id: string }>(row: Row | undefined): T | null => (row ? ({ ...fromJson<T>(row.doc as string), id: row.id as string } as T) : null);

class EmbeddedSessions implements SessionStore {
  constructor(private readonly db: Database.Database) {}

  create(input: Omit<Session, 'id'>): Promise<Session> {
    return guard('session', () => {
      const s: Session = { ...input, id: newId() };
      this.db
        .prepare('INSERT INTO sessions (id, user_id, token_hash, expires_at, doc) VALUES (?, ?, ?, ?, ?)')
        .run(s.id, s.userId, s.tokenHash, s.expiresAt.getTime(), toJson(s));
      return s;
    });
  }

  findByTokenHash(tokenHash: string, now: Date): Promise<Session | null> {
    return guard('session', () =>
      docRow<Session>(this.db.prepare('SELECT * FROM sessions WHERE token_hash = ? AND expires_at > ?').get(tokenHash, now.getTime()) as Row),
    );
  }

  delete(id: string): Promise<boolean> {
    return guard('session', () => this.db.prepare('DELETE FROM sessions WHERE id = ?').run(id).changes > 0);
  }

  deleteAllOfUser(userId: string, exceptId?: string): Promise<number> {
    return guard('session', () => this.db.prepare('DELETE FROM sessions WHERE user_id = ? AND id IS NOT ?').run(userId, exceptId ?? null).changes);
  }

  purgeExpired(now: Date): Promise<number> {
    return guard('session', () => this.db.prepare('DELETE FROM sessions WHERE expires_at <= ?').run(now.getTime()).changes);
  }
}

class EmbeddedDevices implements TrustedDeviceStore {
  constructor(private readonly db: Database.Database) {}

  create(input: Omit<TrustedDevice, 'id' | 'lastUse'>): Promise<TrustedDevice> {
    return guard('trusted device', () => {
      const d: TrustedDevice = { ...input, id: newId(), lastUse: null };
      this.db
        .prepare('INSERT INTO trusted_devices (id, user_id, token_hash, expires_at, doc) VALUES (?, ?, ?, ?, ?)')
        .run(d.id, d.userId, d.tokenHash, d.expiresAt.getTime(), toJson(d));
      return d;
    });
  }

  findByTokenHash(userId: string, tokenHash: string, now: Date): Promise<TrustedDevice | null> {
    return guard('trusted device', () =>
      docRow<TrustedDevice>(
        this.db.prepare('SELECT * FROM trusted_devices WHERE user_id = ? AND token_hash = ? AND expires_at > ?').get(userId, tokenHash, now.getTime()) as Row,
      ),
    );
  }

  listByUser(userId: string, now: Date): Promise<TrustedDevice[]> {
    return guard('trusted device', () =>
      (this.db.prepare('SELECT * FROM trusted_devices WHERE user_id = ? AND expires_at > ? ORDER BY rowid').all(userId, now.getTime()) as Row[]).map((r) =>
        docRow<TrustedDevice>(r)!,
      ),
    );
  }

  recordUse(id: string, use: LastUse): Promise<void> {
    return guard('trusted device', () => {
      this.db.prepare(`UPDATE trusted_devices SET doc = json_set(doc, '$.lastUse', json(?)) WHERE id = ?`).run(toJson(use), id);
    });
  }

  delete(userId: string, id: string): Promise<boolean> {
    return guard('trusted device', () => this.db.prepare('DELETE FROM trusted_devices WHERE id = ? AND user_id = ?').run(id, userId).changes > 0);
  }

  deleteAllOfUser(userId: string): Promise<number> {
    return guard('trusted device', () => this.db.prepare('DELETE FROM trusted_devices WHERE user_id = ?').run(userId).changes);
  }

  purgeExpired(now: Date): Promise<number> {
    return guard('trusted device', () => this.db.prepare('DELETE FROM trusted_devices WHERE expires_at <= ?').run(now.getTime()).changes);
  }
}

class EmbeddedApiTokens implements ApiTokenStore {
  constructor(private readonly db: Database.Database) {}

  create(input: Omit<ApiToken, 'id'>): Promise<ApiToken> {
    return guard('API token', () => {
      const t: ApiToken = { ...input, id: newId() };
      this.db.prepare('INSERT INTO api_tokens (id, token_hash, doc) VALUES (?, ?, ?)').run(t.id, t.tokenHash, toJson(t));
      return t;
    });
  }

  findByTokenHash(tokenHash: string, now: Date): Promise<ApiToken | null> {
    return guard('API token', () => {
      const t = docRow<ApiToken>(this.db.prepare('SELECT * FROM api_tokens WHERE token_hash = ?').get(tokenHash) as Row);
      return t && (!t.expiresAt || t.expiresAt.getTime() > now.getTime()) ? t : null;
    });
  }

  list(): Promise<ApiToken[]> {
    return guard('API token', () => (this.db.prepare('SELECT * FROM api_tokens ORDER BY rowid').all() as Row[]).map((r) => docRow<ApiToken>(r)!));
  }

  delete(id: string): Promise<boolean> {
    return guard('API token', () => this.db.prepare('DELETE FROM api_tokens WHERE id = ?').run(id).changes > 0);
  }
}

class EmbeddedPolicy implements PolicyStore {
  constructor(private readonly db: Database.Database) {}

  features(): Promise<Partial<Record<FeatureName, FeatureSetting>>> {
    return guard('policy', () =>
      Object.fromEntries((this.db.prepare('SELECT name, doc FROM settings').all() as Row[]).map((r) => [r.name, fromJson<FeatureSetting>(r.doc as string)])),
    );
  }

  setFeature(name: FeatureName, setting: FeatureSetting): Promise<void> {
    return guard('policy', () => {
      this.db.prepare('INSERT INTO settings (name, doc) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET doc = excluded.doc').run(name, toJson(setting));
    });
  }

  domain(name: string): Promise<Domain | null> {
    return guard('policy', () => {
      const row = this.db.prepare('SELECT doc FROM domains WHERE name = ?').get(name) as Row | undefined;
      return row ? fromJson<Domain>(row.doc as string) : null;
    });
  }

  setDomainFeature(domain: string, name: FeatureName, status: FeatureSetting['status'] | null, now: Date): Promise<Domain> {
    return guard('policy', () =>
      this.db.transaction(() => {
        const row = this.db.prepare('SELECT doc FROM domains WHERE name = ?').get(domain) as Row | undefined;
        const current: Domain = row ? fromJson<Domain>(row.doc as string) : { name: domain, features: {}, createdAt: now };
        const features = { ...current.features };
        if (status === null) delete features[name];
        else features[name] = status;
        const next: Domain = { ...current, features };
        this.db.prepare('INSERT INTO domains (name, doc) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET doc = excluded.doc').run(domain, toJson(next));
        return next;
      })(),
    );
  }
}

class EmbeddedChallenges implements ChallengeStore {
  constructor(private readonly db: Database.Database) {}

  put(c: Challenge): Promise<void> {
    return guard('challenge', () => {
      this.db
        .prepare(
          'INSERT INTO challenges (key, expires_at, doc) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at, doc = excluded.doc',
        )
        .run(c.key, c.expiresAt.getTime(), toJson(c));
    });
  }

  get(key: string, now: Date): Promise<Challenge | null> {
    return guard('challenge', () => {
      const row = this.db.prepare('SELECT doc FROM challenges WHERE key = ? AND expires_at > ?').get(key, now.getTime()) as Row | undefined;
      return row ? fromJson<Challenge>(row.doc as string) : null;
    });
  }

  spendTry(key: string, now: Date): Promise<Challenge | null> {
    return guard('challenge', () => {
      const row = this.db
        .prepare(
          `UPDATE challenges SET doc = json_set(doc, '$.triesLeft', json_extract(doc, '$.triesLeft') - 1)
           WHERE key = ? AND expires_at > ? AND json_extract(doc, '$.triesLeft') > 0 RETURNING doc`,
        )
        .get(key, now.getTime()) as Row | undefined;
      return row ? fromJson<Challenge>(row.doc as string) : null;
    });
  }

  delete(key: string): Promise<boolean> {
    return guard('challenge', () => this.db.prepare('DELETE FROM challenges WHERE key = ?').run(key).changes > 0);
  }
}

class EmbeddedSecurityKeys implements SecurityKeyStore {
  constructor(private readonly db: Database.Database) {}

  create(input: NewSecurityKey): Promise<WebAuthnCredential> {
    return guard('security key', () => {
      const k: WebAuthnCredential = { ...input, id: newId(), lastUsedAt: null };
      this.db.prepare('INSERT INTO webauthn_credentials (id, user_id, credential_id, doc) VALUES (?, ?, ?, ?)').run(k.id, k.userId, k.credentialId, toJson(k));
      return k;
    });
  }

  listByUser(userId: string): Promise<WebAuthnCredential[]> {
    return guard('security key', () =>
      (this.db.prepare('SELECT * FROM webauthn_credentials WHERE user_id = ? ORDER BY rowid').all(userId) as Row[]).map((r) => docRow<WebAuthnCredential>(r)!),
    );
  }

  recordUse(id: string, signCount: number, time: Date): Promise<boolean> {
    return guard('security key', () => {
      const res = this.db
        .prepare(
          `UPDATE webauthn_credentials SET doc = json_set(doc, '$.signCount', ?, '$.lastUsedAt', ?)
           WHERE id = ? AND (json_extract(doc, '$.signCount') < ? OR (? = 0 AND json_extract(doc, '$.signCount') = 0))`,
        )
        .run(signCount, time.toISOString(), id, signCount, signCount);
      return res.changes === 1;
    });
  }

  delete(userId: string, id: string): Promise<boolean> {
    return guard('security key', () => this.db.prepare('DELETE FROM webauthn_credentials WHERE id = ? AND user_id = ?').run(id, userId).changes > 0);
  }

  deleteAllOfUser(userId: string): Promise<number> {
    return guard('security key', () => this.db.prepare('DELETE FROM webauthn_credentials WHERE user_id = ?').run(userId).changes);
  }
}

/**
 * better-sqlite3 compiles SQL on every prepare(); every statement here is a fixed text (the
 * audit query has a bounded set of filter combinations), so compiled statements are kept.
 */
function cacheStatements(db: Database.Database): Database.Database {
  const prepare = db.prepare.bind(db);
  const cache = new Map<string, Database.Statement>();
  db.prepare = ((sql: string) => {
    let stmt = cache.get(sql);
    if (!stmt) {
      stmt = prepare(sql);
      cache.set(sql, stmt);
    }
    return stmt;
  }) as typeof db.prepare;
  return db;
}

/** The default store: one SQLite file, durable across restarts, no server to install. */
export class EmbeddedStore implements Store {
  readonly users: EmbeddedUsers;
  readonly asps: EmbeddedAsps;
  readonly recoveryCodes: EmbeddedRecoveryCodes;
  readonly audit: EmbeddedAudit;
  readonly sessions: EmbeddedSessions;
  readonly devices: EmbeddedDevices;
  readonly apiTokens: EmbeddedApiTokens;
  readonly policy: EmbeddedPolicy;
  readonly challenges: EmbeddedChallenges;
  readonly securityKeys: EmbeddedSecurityKeys;
  private readonly db: Database.Database;

  constructor(path: string, opts: { sync?: 'normal' | 'full' } = {}) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = cacheStatements(new Database(path));
    // better-sqlite3 writes on the calling thread, so with "full" a commit here waits for
    // fsync; the audit events of logins are committed by a writer thread instead. "normal"
    // (WAL) never corrupts the file and loses nothing when postern crashes, only the latest
    // commits on a power loss. The writer thread's connection is set up the same way.
    const pragmas = ['journal_mode = WAL', `synchronous = ${opts.sync === 'full' ? 'FULL' : 'NORMAL'}`, 'busy_timeout = 5000'];
    for (const p of pragmas) this.db.pragma(p);
    this.users = new EmbeddedUsers(this.db);
    this.asps = new EmbeddedAsps(this.db);
    this.recoveryCodes = new EmbeddedRecoveryCodes(this.db);
    // Audit events are the one write of every mail login: their commits go to a thread.
    this.audit = new EmbeddedAudit(this.db, path === ':memory:' ? null : new SqliteWriter(path, pragmas, AUDIT_INSERT));
    this.sessions = new EmbeddedSessions(this.db);
    this.devices = new EmbeddedDevices(this.db);
    this.apiTokens = new EmbeddedApiTokens(this.db);
    this.policy = new EmbeddedPolicy(this.db);
    this.challenges = new EmbeddedChallenges(this.db);
    this.securityKeys = new EmbeddedSecurityKeys(this.db);
  }

  /** Brings the file to SCHEMA_VERSION, each migration in its own transaction. */
  async init(): Promise<void> {
    const at = this.db.pragma('user_version', { simple: true }) as number;
    if (at > SCHEMA_VERSION) {
      throw new PosternError(
        'store_misconfigured',
        `the database is at schema version ${at}, newer than this postern (${SCHEMA_VERSION}): run a newer postern`,
      );
    }
    for (let v = at; v < SCHEMA_VERSION; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  async close(): Promise<void> {
    await this.audit.drain();
    this.db.close();
  }
}
