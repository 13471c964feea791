// Interfaces the core needs from the outside world. Stores implement them; the core never
// imports a store. Every method may reject with a temporary PosternError when its backend
// is down.
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
} from './types.js';

export type NewUser = Omit<User, 'id' | 'credentialVersion' | 'createdAt' | 'updatedAt' | 'totpLastStep'>;
export type UserPatch = Partial<Omit<User, 'id' | 'username' | 'credentialVersion' | 'createdAt' | 'updatedAt'>>;

export interface UserStore {
  /** Rejects with code `conflict` when the username exists. */
  create(user: NewUser, now: Date): Promise<User>;
  findByName(username: string): Promise<User | null>;
  findById(id: string): Promise<User | null>;
  /** Applies the patch; bumps credentialVersion when `bump` so cached verifications stop matching. */
  update(id: string, patch: UserPatch, now: Date, bump: boolean): Promise<User | null>;
  delete(id: string): Promise<boolean>;
  list(limit: number, afterUsername?: string): Promise<User[]>;
  /** Records a TOTP step only if newer than the last accepted one: false means replay. Atomic. */
  advanceTotpStep(id: string, step: number): Promise<boolean>;
}

export type NewAsp = Omit<Asp, 'id' | 'lastUse'>;

export interface AspStore {
  create(asp: NewAsp): Promise<Asp>;
  listByUser(userId: string): Promise<Asp[]>;
  countByUser(userId: string): Promise<number>;
  findByPrefix(userId: string, prefixHash: string): Promise<Asp[]>;
  delete(userId: string, aspId: string): Promise<boolean>;
  deleteAllOfUser(userId: string): Promise<void>;
  recordUse(aspId: string, use: LastUse): Promise<void>;
}

export interface RecoveryCodeStore {
  /** Replaces the user's whole set in one step: racing replacements leave one whole set. */
  replace(userId: string, hashes: string[], now: Date): Promise<void>;
  /** Marks the code used; false if it does not exist or was used already. Atomic. */
  consume(userId: string, hash: string, now: Date): Promise<boolean>;
  countUnused(userId: string): Promise<number>;
}

export interface AuditStore {
  /** Stores the event; an event whose id is stored already is not stored again. */
  append(event: AuditEvent, expiresAt: Date): Promise<void>;
  /** Newest first; entries past their expiry are never returned. */
  query(q: AuditQuery, now: Date): Promise<AuditPage>;
  /** Deletes expired entries; returns how many. MongoDB's TTL index does this on its own. */
  purgeExpired(now: Date): Promise<number>;
}

/** Web API sessions, looked up by the hash of their token. */
export interface SessionStore {
  create(s: Omit<Session, 'id'>): Promise<Session>;
  /** Only sessions not yet expired at `now`. */
  findByTokenHash(tokenHash: string, now: Date): Promise<Session | null>;
  delete(id: string): Promise<boolean>;
  /** Ends every session of the user but `exceptId` (the one making a change); returns how many. */
  deleteAllOfUser(userId: string, exceptId?: string): Promise<number>;
  /** Removes expired sessions; MongoDB's TTL index also does this on its own. */
  purgeExpired(now: Date): Promise<number>;
}

export interface TrustedDeviceStore {
  create(d: Omit<TrustedDevice, 'id' | 'lastUse'>): Promise<TrustedDevice>;
  findByTokenHash(userId: string, tokenHash: string, now: Date): Promise<TrustedDevice | null>;
  listByUser(userId: string, now: Date): Promise<TrustedDevice[]>;
  recordUse(id: string, use: LastUse): Promise<void>;
  delete(userId: string, id: string): Promise<boolean>;
  deleteAllOfUser(userId: string): Promise<number>;
  purgeExpired(now: Date): Promise<number>;
}

export interface ApiTokenStore {
  create(t: Omit<ApiToken, 'id'>): Promise<ApiToken>;
  findByTokenHash(tokenHash: string, now: Date): Promise<ApiToken | null>;
  list(): Promise<ApiToken[]>;
  delete(id: string): Promise<boolean>;
}

/** Feature settings in two levels: server-wide (status + lock) and per-domain overrides. */
export interface PolicyStore {
  features(): Promise<Partial<Record<FeatureName, FeatureSetting>>>;
  setFeature(name: FeatureName, setting: FeatureSetting): Promise<void>;
  domain(name: string): Promise<Domain | null>;
  /** Sets (or with null, removes) a domain's override of one feature. */
  setDomainFeature(domain: string, name: FeatureName, status: FeatureSetting['status'] | null, now: Date): Promise<Domain>;
}

/** One-time challenges (emailed codes, nonces) with tries left and a time to live. */
export interface ChallengeStore {
  /** Stores the challenge, replacing any with the same key. */
  put(c: Challenge): Promise<void>;
  /** Only challenges not yet expired at `now`. */
  get(key: string, now: Date): Promise<Challenge | null>;
  /**
   * Uses up one try of a challenge that is live at `now` and has tries left, in one atomic
   * step, and returns it as it is after that (one try fewer); null when there is none to
   * spend. A try is spent before the answer is compared, so parallel guesses cannot share one.
   */
  spendTry(key: string, now: Date): Promise<Challenge | null>;
  /** Removes the challenge; true only for the one caller that removed it. */
  delete(key: string): Promise<boolean>;
}

export type NewSecurityKey = Omit<WebAuthnCredential, 'id' | 'lastUsedAt'>;

export interface SecurityKeyStore {
  /** Rejects with code `conflict` when the credential is registered already (to anyone). */
  create(k: NewSecurityKey): Promise<WebAuthnCredential>;
  listByUser(userId: string): Promise<WebAuthnCredential[]>;
  /**
   * Stores a verified signature counter only if it moved forward (or stays 0 on a key that
   * keeps none): false means the key was cloned or the answer replayed. Atomic.
   */
  recordUse(id: string, signCount: number, time: Date): Promise<boolean>;
  delete(userId: string, id: string): Promise<boolean>;
  deleteAllOfUser(userId: string): Promise<number>;
}

/** Everything persistent, behind one handle. */
export interface Store {
  users: UserStore;
  asps: AspStore;
  recoveryCodes: RecoveryCodeStore;
  audit: AuditStore;
  sessions: SessionStore;
  devices: TrustedDeviceStore;
  apiTokens: ApiTokenStore;
  policy: PolicyStore;
  challenges: ChallengeStore;
  securityKeys: SecurityKeyStore;
  /** Creates tables/collections and indexes. Idempotent. */
  init(): Promise<void>;
  close(): Promise<void>;
}

/** What a window answered to a reservation. */
export interface Reservation {
  /** True when the attempt may be checked; false when the window is full (a lockout). */
  granted: boolean;
  /** Milliseconds until the window ends (0 when no window is open). */
  resetInMs: number;
}

/**
 * Fixed attempt windows, counted before the check they guard: an attempt is reserved first
 * (atomically refused once `limit` distinct attempts fill the window), then settled as
 * failed (it stays counted) or refunded (it never counted). The window opens at its first
 * reservation and lasts windowMs; an empty window is gone.
 *
 * Attempts are told apart by a fingerprint: the same wrong secret retried counts once, and
 * identical attempts in flight together share one reservation.
 */
export interface RateLimiter {
  reserve(key: string, fingerprint: string, limit: number, windowMs: number): Promise<Reservation>;
  settle(key: string, fingerprint: string, outcome: 'failed' | 'refunded', windowMs: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Tells whoever holds live mail sessions (this process and every other postern process)
 * that an account's credentials changed, so that they check those sessions again at once.
 */
export interface CredentialEvents {
  changed(userId: string): Promise<void>;
}

/** Short-lived memory of verified secrets, keyed by an HMAC (never the secret). */
export interface CredentialCache {
  get(key: string): Promise<string | null>;
  set(key: string, value: string, ttlMs: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Slots for live mail sessions, per user and protocol: the per-user session cap, shared by
 * every postern process when they share Redis.
 */
export interface SessionSlots {
  /** Takes a slot for session `id` under `key`; false when `max` are taken already. */
  acquire(key: string, id: string, max: number): Promise<boolean>;
  release(key: string, id: string): Promise<void>;
  close(): Promise<void>;
}

/** Slow hashing (bcrypt), so that it can run off the main thread. */
export interface Hasher {
  hash(secret: string): Promise<string>;
  verify(secret: string, hash: string): Promise<boolean>;
}
