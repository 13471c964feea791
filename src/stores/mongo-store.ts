import {
  MongoClient,
  MongoCompatibilityError,
  MongoError,
  MongoMissingCredentialsError,
  MongoParseError,
  MongoServerError,
  ObjectId,
  type Collection,
  type Db,
  type Filter,
  type MongoClientOptions,
  type UpdateFilter,
} from 'mongodb';
import { PosternError, conflict, invalid, temporary } from '../core/errors.js';
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
import { decodeCursor, encodeCursor } from './documents.js';

type UserDoc = Omit<User, 'id'> & { _id: ObjectId };
type AspDoc = Omit<Asp, 'id' | 'userId'> & { _id: ObjectId; userId: ObjectId };
type RecoveryDoc = { userId: ObjectId; hash: string; createdAt: Date; usedAt: Date | null };
type RecoverySetDoc = { _id: ObjectId; codes: Array<{ hash: string; createdAt: Date; usedAt: Date | null }> };
type AuditDoc = Omit<AuditEvent, 'id'> & { _id?: ObjectId; expiresAt: Date };

// Server codes that mean postern itself is refused (bad credentials, missing rights, a
// server or feature it cannot use): no retry helps, the operator must fix store.mongodb_url.
// 13 Unauthorized, 18 AuthenticationFailed, 73 InvalidNamespace (a bad database name),
// 8000 Atlas's authentication error.
const REFUSED_CODES = new Set([13, 18, 73, 8000]);

/**
 * Maps driver errors onto postern's: a duplicate key is a conflict; postern's login or rights
 * refused is a misconfiguration (still "try again later" for a client, but said as such to
 * the operator); a network fault, an election or a timeout is temporary. Anything else is a
 * bug and is thrown as it is, stack and all.
 */
export function storeError(err: unknown, what: string): unknown {
  if (err instanceof PosternError) return err;
  if (err instanceof MongoServerError && err.code === 11000) return conflict(`${what}: already exists`);
  const refused =
    err instanceof MongoParseError ||
    err instanceof MongoMissingCredentialsError ||
    err instanceof MongoCompatibilityError ||
    (err instanceof MongoServerError && typeof err.code === 'number' && REFUSED_CODES.has(err.code));
  if (refused) {
    const e = new PosternError(
      'store_misconfigured',
      `MongoDB refused postern (${(err as Error).message}): check the user, password, database and rights in store.mongodb_url`,
      true,
    );
    e.cause = err;
    return e;
  }
  if (err instanceof MongoError) return temporary(err, 'MongoDB');
  return err;
}

async function guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw storeError(err, what);
  }
}

const oid = (id: string): ObjectId | null => (ObjectId.isValid(id) && /^[0-9a-f]{24}$/i.test(id) ? new ObjectId(id) : null);

function userOf(doc: UserDoc | null): User | null {
  if (!doc) return null;
  const { _id, ...rest } = doc;
  return { ...rest, id: _id.toHexString(), totpLastStep: rest.totpLastStep ?? null };
}

function aspOf(doc: AspDoc): Asp {
  const { _id, userId, ...rest } = doc;
  return { ...rest, networks: rest.networks ?? [], id: _id.toHexString(), userId: userId.toHexString() };
}

class MongoUsers implements UserStore {
  constructor(private readonly c: Collection<UserDoc>) {}

  create(input: NewUser, now: Date): Promise<User> {
    return guard(`user "${input.username}"`, async () => {
      const doc: UserDoc = { ...input, _id: new ObjectId(), credentialVersion: 0, totpLastStep: null, createdAt: now, updatedAt: now };
      await this.c.insertOne(doc);
      return userOf(doc)!;
    });
  }

  findByName(username: string): Promise<User | null> {
    return guard('user', async () => userOf(await this.c.findOne({ username })));
  }

  findById(id: string): Promise<User | null> {
    const _id = oid(id);
    return _id ? guard('user', async () => userOf(await this.c.findOne({ _id }))) : Promise.resolve(null);
  }

  update(id: string, patch: UserPatch, now: Date, bump: boolean): Promise<User | null> {
    const _id = oid(id);
    if (!_id) return Promise.resolve(null);
    // A new TOTP seed starts a new step history.
    const set = { ...patch, updatedAt: now, ...('totp' in patch ? { totpLastStep: null } : {}) };
    return guard('user', async () =>
      userOf(await this.c.findOneAndUpdate({ _id }, { $set: set, $inc: { credentialVersion: bump ? 1 : 0 } }, { returnDocument: 'after' })),
    );
  }

  delete(id: string): Promise<boolean> {
    const _id = oid(id);
    return _id ? guard('user', async () => (await this.c.deleteOne({ _id })).deletedCount === 1) : Promise.resolve(false);
  }

  list(limit: number, afterUsername?: string): Promise<User[]> {
    return guard('user', async () =>
      (
        await this.c
          .find({ username: { $gt: afterUsername ?? '' } })
          .sort({ username: 1 })
          .limit(limit)
          .toArray()
      ).map((d) => userOf(d)!),
    );
  }

  advanceTotpStep(id: string, step: number): Promise<boolean> {
    const _id = oid(id);
    if (!_id) return Promise.resolve(false);
    return guard('user', async () => {
      const res = await this.c.updateOne({ _id, $or: [{ totpLastStep: null }, { totpLastStep: { $lt: step } }] }, { $set: { totpLastStep: step } });
      return res.modifiedCount === 1;
    });
  }
}

class MongoAsps implements AspStore {
  constructor(private readonly c: Collection<AspDoc>) {}

  create(input: NewAsp): Promise<Asp> {
    const userId = oid(input.userId);
    if (!userId) return Promise.reject(invalid('bad user id'));
    return guard('ASP', async () => {
      const doc: AspDoc = { ...input, _id: new ObjectId(), userId, lastUse: null };
      await this.c.insertOne(doc);
      return aspOf(doc);
    });
  }

  private byUser(userId: string, extra: Filter<AspDoc> = {}): Promise<Asp[]> {
    const u = oid(userId);
    if (!u) return Promise.resolve([]);
    return guard('ASP', async () =>
      (
        await this.c
          .find({ userId: u, ...extra })
          .sort({ _id: 1 })
          .toArray()
      ).map(aspOf),
    );
  }

  listByUser(userId: string): Promise<Asp[]> {
    return this.byUser(userId);
  }

  countByUser(userId: string): Promise<number> {
    const u = oid(userId);
    return u ? guard('ASP', () => this.c.countDocuments({ userId: u })) : Promise.resolve(0);
  }

  findByPrefix(userId: string, prefixHash: string): Promise<Asp[]> {
    return this.byUser(userId, { prefixHash });
  }

  delete(userId: string, aspId: string): Promise<boolean> {
    const u = oid(userId);
    const a = oid(aspId);
    if (!u || !a) return Promise.resolve(false);
    return guard('ASP', async () => (await this.c.deleteOne({ _id: a, userId: u })).deletedCount === 1);
  }

  deleteAllOfUser(userId: string): Promise<void> {
    const u = oid(userId);
    return u ? guard('ASP', async () => void (await this.c.deleteMany({ userId: u }))) : Promise.resolve();
  }

  recordUse(aspId: string, use: LastUse): Promise<void> {
    const a = oid(aspId);
    return a ? guard('ASP', async () => void (await this.c.updateOne({ _id: a }, { $set: { lastUse: use } }))) : Promise.resolve();
  }
}

/**
 * A user's recovery codes live in one document: MongoDB changes one document atomically, so
 * replacing the set is one write (racing regenerations leave one whole set, a failure leaves
 * the old one) and consuming a code is one conditional update, without transactions (which a
 * standalone server does not have).
 */
class MongoRecoveryCodes implements RecoveryCodeStore {
  constructor(private readonly c: Collection<RecoverySetDoc>) {}

  replace(userId: string, hashes: string[], now: Date): Promise<void> {
    const u = oid(userId);
    if (!u) return Promise.resolve();
    return guard('recovery codes', async () => {
      await this.c.replaceOne({ _id: u }, { codes: hashes.map((hash) => ({ hash, createdAt: now, usedAt: null })) }, { upsert: true });
    });
  }

  consume(userId: string, hash: string, now: Date): Promise<boolean> {
    const u = oid(userId);
    if (!u) return Promise.resolve(false);
    return guard('recovery codes', async () => {
      const res = await this.c.updateOne({ _id: u, codes: { $elemMatch: { hash, usedAt: null } } }, { $set: { 'codes.$.usedAt': now } });
      return res.modifiedCount === 1;
    });
  }

  countUnused(userId: string): Promise<number> {
    const u = oid(userId);
    if (!u) return Promise.resolve(0);
    return guard('recovery codes', async () => {
      const doc = await this.c.findOne({ _id: u });
      return doc ? doc.codes.filter((c) => c.usedAt === null).length : 0;
    });
  }
}

class MongoAudit implements AuditStore {
  constructor(private readonly c: Collection<AuditDoc>) {}

  append(event: AuditEvent, expiresAt: Date): Promise<void> {
    const { id, ...doc } = event;
    // The event's own id as _id: written again after a timeout that stored it after all, it
    // meets itself (duplicate key) and the one copy stands.
    const _id = (id && oid(id)) || new ObjectId();
    return guard('audit', async () => {
      try {
        await this.c.insertOne({ ...doc, _id, expiresAt });
      } catch (err) {
        if (!(err instanceof MongoServerError && err.code === 11000)) throw err;
      }
    });
  }

  query(q: AuditQuery, now: Date): Promise<AuditPage> {
    const filter: Filter<AuditDoc> = { expiresAt: { $gt: now } };
    for (const key of ['username', 'action', 'result', 'ip', 'protocol'] as const) {
      if (q[key] !== undefined) Object.assign(filter, { [key]: q[key] });
    }
    if (q.since || q.until) filter.time = { ...(q.since ? { $gte: q.since } : {}), ...(q.until ? { $lt: q.until } : {}) };
    if (q.cursor) {
      const c = decodeCursor(q.cursor);
      const id = c ? oid(c.id) : null;
      if (!c || !id) return Promise.reject(invalid('invalid audit cursor'));
      filter.$or = [{ time: { $lt: new Date(c.time) } }, { time: new Date(c.time), _id: { $lt: id } }];
    }
    return guard('audit', async () => {
      const docs = await this.c
        .find(filter)
        .sort({ time: -1, _id: -1 })
        .limit(q.limit + 1)
        .toArray();
      const events: AuditEvent[] = docs.slice(0, q.limit).map(({ _id, expiresAt: _e, ...rest }) => ({ ...rest, id: _id!.toHexString() }));
      const last = events[events.length - 1];
      const nextCursor = docs.length > q.limit && last ? encodeCursor({ time: last.time.getTime(), id: last.id! }) : null;
      return { events, nextCursor };
    });
  }

  /** The TTL index removes expired entries by itself (within about a minute); queries already hide them. */
  purgeExpired(now: Date): Promise<number> {
    return guard('audit', async () => (await this.c.deleteMany({ expiresAt: { $lte: now } })).deletedCount);
  }
}

type SessionDoc = Omit<Session, 'id' | 'userId'> & { _id: ObjectId; userId: ObjectId };
type DeviceDoc = Omit<TrustedDevice, 'id' | 'userId'> & { _id: ObjectId; userId: ObjectId };
type TokenDoc = Omit<ApiToken, 'id'> & { _id: ObjectId };

/** Turns a document with ObjectId `_id` (and `userId`) back into the domain shape with string ids. */
function withIds<T>(doc: { _id: ObjectId; userId?: ObjectId }): T {
  const { _id, userId, ...rest } = doc;
  return { ...rest, id: _id.toHexString(), ...(userId ? { userId: userId.toHexString() } : {}) } as T;
}

class MongoSessions implements SessionStore {
  constructor(private readonly c: Collection<SessionDoc>) {}

  create(input: Omit<Session, 'id'>): Promise<Session> {
    const userId = oid(input.userId);
    if (!userId) return Promise.reject(invalid('bad user id'));
    return guard('session', async () => {
      const doc: SessionDoc = { ...input, _id: new ObjectId(), userId };
      await this.c.insertOne(doc);
      return withIds<Session>(doc);
    });
  }

  findByTokenHash(tokenHash: string, now: Date): Promise<Session | null> {
    return guard('session', async () => {
      const doc = await this.c.findOne({ tokenHash, expiresAt: { $gt: now } });
      return doc ? withIds<Session>(doc) : null;
    });
  }

  delete(id: string): Promise<boolean> {
    const _id = oid(id);
    return _id ? guard('session', async () => (await this.c.deleteOne({ _id })).deletedCount === 1) : Promise.resolve(false);
  }

  deleteAllOfUser(userId: string, exceptId?: string): Promise<number> {
    const u = oid(userId);
    const keep = exceptId ? oid(exceptId) : null;
    return u
      ? guard('session', async () => (await this.c.deleteMany({ userId: u, ...(keep ? { _id: { $ne: keep } } : {}) })).deletedCount)
      : Promise.resolve(0);
  }

  purgeExpired(now: Date): Promise<number> {
    return guard('session', async () => (await this.c.deleteMany({ expiresAt: { $lte: now } })).deletedCount);
  }
}

class MongoDevices implements TrustedDeviceStore {
  constructor(private readonly c: Collection<DeviceDoc>) {}

  create(input: Omit<TrustedDevice, 'id' | 'lastUse'>): Promise<TrustedDevice> {
    const userId = oid(input.userId);
    if (!userId) return Promise.reject(invalid('bad user id'));
    return guard('trusted device', async () => {
      const doc: DeviceDoc = { ...input, _id: new ObjectId(), userId, lastUse: null };
      await this.c.insertOne(doc);
      return withIds<TrustedDevice>(doc);
    });
  }

  findByTokenHash(userId: string, tokenHash: string, now: Date): Promise<TrustedDevice | null> {
    const u = oid(userId);
    if (!u) return Promise.resolve(null);
    return guard('trusted device', async () => {
      const doc = await this.c.findOne({ userId: u, tokenHash, expiresAt: { $gt: now } });
      return doc ? withIds<TrustedDevice>(doc) : null;
    });
  }

  listByUser(userId: string, now: Date): Promise<TrustedDevice[]> {
    const u = oid(userId);
    if (!u) return Promise.resolve([]);
    return guard('trusted device', async () =>
      (
        await this.c
          .find({ userId: u, expiresAt: { $gt: now } })
          .sort({ _id: 1 })
          .toArray()
      ).map((d) => withIds<TrustedDevice>(d)),
    );
  }

  recordUse(id: string, use: LastUse): Promise<void> {
    const _id = oid(id);
    return _id ? guard('trusted device', async () => void (await this.c.updateOne({ _id }, { $set: { lastUse: use } }))) : Promise.resolve();
  }

  delete(userId: string, id: string): Promise<boolean> {
    const u = oid(userId);
    const _id = oid(id);
    if (!u || !_id) return Promise.resolve(false);
    return guard('trusted device', async () => (await this.c.deleteOne({ _id, userId: u })).deletedCount === 1);
  }

  deleteAllOfUser(userId: string): Promise<number> {
    const u = oid(userId);
    return u ? guard('trusted device', async () => (await this.c.deleteMany({ userId: u })).deletedCount) : Promise.resolve(0);
  }

  purgeExpired(now: Date): Promise<number> {
    return guard('trusted device', async () => (await this.c.deleteMany({ expiresAt: { $lte: now } })).deletedCount);
  }
}

class MongoApiTokens implements ApiTokenStore {
  constructor(private readonly c: Collection<TokenDoc>) {}

  create(input: Omit<ApiToken, 'id'>): Promise<ApiToken> {
    return guard('API token', async () => {
      const doc: TokenDoc = { ...input, _id: new ObjectId() };
      await this.c.insertOne(doc);
      return withIds<ApiToken>(doc);
    });
  }

  findByTokenHash(tokenHash: string, now: Date): Promise<ApiToken | null> {
    return guard('API token', async () => {
      const doc = await this.c.findOne({ tokenHash, $or: [{ expiresAt: null }, { expiresAt: { $gt: now } }] });
      return doc ? withIds<ApiToken>(doc) : null;
    });
  }

  list(): Promise<ApiToken[]> {
    return guard('API token', async () => (await this.c.find({}).sort({ _id: 1 }).toArray()).map((d) => withIds<ApiToken>(d)));
  }

  delete(id: string): Promise<boolean> {
    const _id = oid(id);
    return _id ? guard('API token', async () => (await this.c.deleteOne({ _id })).deletedCount === 1) : Promise.resolve(false);
  }
}

type SettingDoc = FeatureSetting & { _id: FeatureName };
type DomainDoc = Domain & { _id?: ObjectId };

class MongoPolicy implements PolicyStore {
  constructor(
    private readonly settings: Collection<SettingDoc>,
    private readonly domains: Collection<DomainDoc>,
  ) {}

  features(): Promise<Partial<Record<FeatureName, FeatureSetting>>> {
    return guard('policy', async () => Object.fromEntries((await this.settings.find({}).toArray()).map(({ _id, status, lock }) => [_id, { status, lock }])));
  }

  setFeature(name: FeatureName, setting: FeatureSetting): Promise<void> {
    return guard('policy', async () => {
      await this.settings.updateOne({ _id: name }, { $set: { status: setting.status, lock: setting.lock } }, { upsert: true });
    });
  }

  domain(name: string): Promise<Domain | null> {
    return guard('policy', async () => {
      const doc = await this.domains.findOne({ name });
      if (!doc) return null;
      const { _id, ...rest } = doc;
      // Unsetting a domain's last feature can leave a document without the field.
      return { ...rest, features: rest.features ?? {} };
    });
  }

  setDomainFeature(domain: string, name: FeatureName, status: FeatureSetting['status'] | null, now: Date): Promise<Domain> {
    const path = `features.${name}`;
    // On insert the filter's `name` seeds the new document; only createdAt needs $setOnInsert.
    const update: UpdateFilter<DomainDoc> =
      status === null ? { $unset: { [path]: '' as const }, $setOnInsert: { createdAt: now } } : { $set: { [path]: status }, $setOnInsert: { createdAt: now } };
    return guard('policy', async () => {
      const doc = await this.domains.findOneAndUpdate({ name: domain }, update, { upsert: true, returnDocument: 'after' });
      const { _id, ...rest } = doc!;
      return { ...rest, features: rest.features ?? {} };
    });
  }
}

type ChallengeDoc = Omit<Challenge, 'key'> & { _id: string };

class MongoChallenges implements ChallengeStore {
  constructor(private readonly c: Collection<ChallengeDoc>) {}

  put(ch: Challenge): Promise<void> {
    const { key, ...rest } = ch;
    return guard('challenge', async () => void (await this.c.replaceOne({ _id: key }, rest, { upsert: true })));
  }

  get(key: string, now: Date): Promise<Challenge | null> {
    return guard('challenge', async () => {
      const doc = await this.c.findOne({ _id: key, expiresAt: { $gt: now } });
      if (!doc) return null;
      const { _id, ...rest } = doc;
      return { ...rest, key: _id };
    });
  }

  spendTry(key: string, now: Date): Promise<Challenge | null> {
    return guard('challenge', async () => {
      const doc = await this.c.findOneAndUpdate(
        { _id: key, expiresAt: { $gt: now }, triesLeft: { $gt: 0 } },
        { $inc: { triesLeft: -1 } },
        { returnDocument: 'after' },
      );
      if (!doc) return null;
      const { _id, ...rest } = doc;
      return { ...rest, key: _id };
    });
  }

  delete(key: string): Promise<boolean> {
    return guard('challenge', async () => (await this.c.deleteOne({ _id: key })).deletedCount === 1);
  }
}

type SecurityKeyDoc = Omit<WebAuthnCredential, 'id' | 'userId'> & { _id: ObjectId; userId: ObjectId };

class MongoSecurityKeys implements SecurityKeyStore {
  constructor(private readonly c: Collection<SecurityKeyDoc>) {}

  create(input: NewSecurityKey): Promise<WebAuthnCredential> {
    const userId = oid(input.userId);
    if (!userId) return Promise.reject(invalid('bad user id'));
    return guard('security key', async () => {
      const doc: SecurityKeyDoc = { ...input, _id: new ObjectId(), userId, lastUsedAt: null };
      await this.c.insertOne(doc);
      return withIds<WebAuthnCredential>(doc);
    });
  }

  listByUser(userId: string): Promise<WebAuthnCredential[]> {
    const u = oid(userId);
    if (!u) return Promise.resolve([]);
    return guard('security key', async () => (await this.c.find({ userId: u }).sort({ _id: 1 }).toArray()).map((d) => withIds<WebAuthnCredential>(d)));
  }

  recordUse(id: string, signCount: number, time: Date): Promise<boolean> {
    const _id = oid(id);
    if (!_id) return Promise.resolve(false);
    // One conditional update: two racing uses of one counter value cannot both pass.
    const counter = signCount === 0 ? { signCount: 0 } : { signCount: { $lt: signCount } };
    // matchedCount, not modifiedCount: a key without a counter may set the same values again.
    return guard('security key', async () => (await this.c.updateOne({ _id, ...counter }, { $set: { signCount, lastUsedAt: time } })).matchedCount === 1);
  }

  delete(userId: string, id: string): Promise<boolean> {
    const u = oid(userId);
    const _id = oid(id);
    if (!u || !_id) return Promise.resolve(false);
    return guard('security key', async () => (await this.c.deleteOne({ _id, userId: u })).deletedCount === 1);
  }

  deleteAllOfUser(userId: string): Promise<number> {
    const u = oid(userId);
    return u ? guard('security key', async () => (await this.c.deleteMany({ userId: u })).deletedCount) : Promise.resolve(0);
  }
}

/** Numbered schema steps; append only. The `meta` collection's "schema" document holds the last applied. */
const MONGO_MIGRATIONS: Array<(db: Db) => Promise<void>> = [
  // 1: indexes for the whole data model.
  async (db) => {
    await db.collection('users').createIndex({ username: 1 }, { unique: true });
    await db.collection('users').createIndex({ domain: 1 });
    await db.collection('asps').createIndex({ userId: 1, prefixHash: 1 });
    // expireAfterSeconds 0 on expiresAt: each entry carries its own end, so the retention
    // can change without rebuilding the index.
    await db.collection('audit').createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 });
    await db.collection('audit').createIndex({ time: -1, _id: -1 });
    await db.collection('sessions').createIndex({ tokenHash: 1 }, { unique: true });
    await db.collection('sessions').createIndex({ userId: 1 });
    await db.collection('sessions').createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 });
    await db.collection('trusted_devices').createIndex({ tokenHash: 1 }, { unique: true });
    await db.collection('trusted_devices').createIndex({ userId: 1 });
    await db.collection('trusted_devices').createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 });
    await db.collection('webauthn_credentials').createIndex({ credentialId: 1 }, { unique: true });
    await db.collection('webauthn_credentials').createIndex({ userId: 1 });
    await db.collection('api_tokens').createIndex({ tokenHash: 1 }, { unique: true });
    await db.collection('challenges').createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 });
    await db.collection('domains').createIndex({ name: 1 }, { unique: true });
  },
  // 2: a user's history sorted by time then _id (what its query asks) from the index alone;
  // recovery codes from one document per code into one document per user.
  async (db) => {
    await db.collection('audit').createIndex({ username: 1, time: -1, _id: -1 });
    await db
      .collection('audit')
      .dropIndex('username_1_time_-1')
      .catch(() => undefined);
    const old = db.collection<RecoveryDoc>('recovery_codes');
    const sets = db.collection<RecoverySetDoc>('recovery_code_sets');
    for await (const group of old.aggregate<{ _id: ObjectId; codes: RecoverySetDoc['codes'] }>([
      { $group: { _id: '$userId', codes: { $push: { hash: '$hash', createdAt: '$createdAt', usedAt: '$usedAt' } } } },
    ])) {
      await sets.updateOne({ _id: group._id }, { $setOnInsert: { codes: group.codes } }, { upsert: true });
    }
    await old.drop().catch(() => undefined);
  },
];

export const MONGO_SCHEMA_VERSION = MONGO_MIGRATIONS.length;

/**
 * The client options postern uses for a connection string: its defaults for what the URL does
 * not set itself, and the database (the URL's, else "postern", never the driver's "test").
 * A login must not wait the driver's 30 s to learn MongoDB is down, nor hang on a stalled
 * server (socket and pool waits bounded). A spent recovery code or TOTP step must survive a
 * failover: writes acknowledged by a majority, reads from the primary, retried once.
 */
export function clientSettings(url: string): { options: MongoClientOptions; dbName: string } {
  // [the option, its name in a connection string, the default]
  const defaults: Array<[keyof MongoClientOptions, string, unknown]> = [
    ['serverSelectionTimeoutMS', 'serverSelectionTimeoutMS', 5000],
    ['connectTimeoutMS', 'connectTimeoutMS', 5000],
    ['socketTimeoutMS', 'socketTimeoutMS', 10_000],
    ['waitQueueTimeoutMS', 'waitQueueTimeoutMS', 5000],
    ['writeConcern', 'w', { w: 'majority' }],
    ['readPreference', 'readPreference', 'primary'],
    ['retryWrites', 'retryWrites', true],
    ['retryReads', 'retryReads', true],
  ];
  const query = url.includes('?') ? url.slice(url.indexOf('?') + 1).toLowerCase() : '';
  const given = new Set(query.split('&').map((kv) => kv.split('=')[0]));
  const options = Object.fromEntries(defaults.filter(([, inUrl]) => !given.has(inUrl.toLowerCase())).map(([key, , value]) => [key, value]));
  const named = /^mongodb(\+srv)?:\/\/[^/]*\/([^?]+)/.exec(url)?.[2];
  return { options: { ...options, appName: 'postern' }, dbName: named ? decodeURIComponent(named) : 'postern' };
}

/** Production store on the official driver, used directly (no ODM). */
export class MongoStore implements Store {
  readonly users: MongoUsers;
  readonly asps: MongoAsps;
  readonly recoveryCodes: MongoRecoveryCodes;
  readonly audit: MongoAudit;
  readonly sessions: MongoSessions;
  readonly devices: MongoDevices;
  readonly apiTokens: MongoApiTokens;
  readonly policy: MongoPolicy;
  readonly challenges: MongoChallenges;
  readonly securityKeys: MongoSecurityKeys;
  private readonly db: Db;

  constructor(
    private readonly client: MongoClient,
    dbName?: string,
  ) {
    this.db = client.db(dbName);
    this.users = new MongoUsers(this.db.collection('users'));
    this.asps = new MongoAsps(this.db.collection('asps'));
    this.recoveryCodes = new MongoRecoveryCodes(this.db.collection('recovery_code_sets'));
    this.audit = new MongoAudit(this.db.collection('audit'));
    this.sessions = new MongoSessions(this.db.collection('sessions'));
    this.devices = new MongoDevices(this.db.collection('trusted_devices'));
    this.apiTokens = new MongoApiTokens(this.db.collection('api_tokens'));
    this.policy = new MongoPolicy(this.db.collection('settings'), this.db.collection('domains'));
    this.challenges = new MongoChallenges(this.db.collection('challenges'));
    this.securityKeys = new MongoSecurityKeys(this.db.collection('webauthn_credentials'));
  }

  static async connect(url: string, dbName?: string): Promise<MongoStore> {
    const { options, dbName: named } = clientSettings(url);
    // The constructor parses the URL: a malformed one is the operator's to fix, said so.
    const client = await guard('MongoDB', async () => new MongoClient(url, options));
    try {
      await guard('MongoDB', () => client.connect());
    } catch (err) {
      await client.close().catch(() => undefined);
      throw err;
    }
    return new MongoStore(client, dbName ?? named);
  }

  /**
   * Brings the database to MONGO_SCHEMA_VERSION. Every step is idempotent (index creation,
   * moving documents with upserts), so two processes starting together are harmless; the
   * version is recorded only after its step finished.
   */
  async init(): Promise<void> {
    const db = this.db;
    const meta = db.collection<{ _id: string; version: number }>('meta');
    await guard('MongoDB', async () => {
      const at = (await meta.findOne({ _id: 'schema' }))?.version ?? 0;
      if (at > MONGO_SCHEMA_VERSION) {
        throw new PosternError(
          'store_misconfigured',
          `the database is at schema version ${at}, newer than this postern (${MONGO_SCHEMA_VERSION}): run a newer postern`,
          true,
        );
      }
      for (let v = at; v < MONGO_SCHEMA_VERSION; v++) {
        await MONGO_MIGRATIONS[v]!(db);
        await meta.updateOne({ _id: 'schema' }, { $max: { version: v + 1 } }, { upsert: true });
      }
    });
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
