import { aspPrefixHash, normalizeAspInput } from './asp.js';
import type { AuditLog } from './audit-log.js';
import type { Clock } from './clock.js';
import { isTemporary } from './errors.js';
import { keyedHash } from './keyed-hash.js';
import type { CredentialCache, Hasher, Store } from './ports.js';
import { networkMatcher, type Attempt, type RateWindows } from './rate-windows.js';
import { needsRehash, parseStoredHash } from './password-schemes.js';
import type { Policy } from './policy.js';
import { hashRecoveryCode } from './recovery-codes.js';
import type { SecretBox } from './secret-box.js';
import type { SecurityKeys } from './security-keys.js';
import { checkTotp } from './totp.js';
import type { Asp, AuthFailReason, AuthRequest, AuthResult, Grant, SecondFactor, SecondFactorKind, User, WebAuthnCredential } from './types.js';
import { normalizeUsername } from './username.js';

export interface AuthSettings {
  totpWindowSteps: number;
  verifiedCacheTtlMs: number;
  /** bcrypt cost new hashes get; imported or weaker hashes are replaced at the next good login. */
  bcryptCost: number;
}

export interface AuthDeps {
  store: Pick<Store, 'users' | 'asps' | 'recoveryCodes'>;
  audit: AuditLog;
  windows: RateWindows;
  cache: CredentialCache;
  hasher: Hasher;
  box: SecretBox;
  /** HMAC key for fingerprints, cache keys and recovery code hashes. */
  serverKey: Buffer;
  clock: Clock;
  settings: AuthSettings;
  /** bcrypt hash of nothing anyone knows: compared against for unknown users. */
  dummyHash: string;
  /** Server and domain feature settings (mandatory / recommended 2FA). */
  policy: Policy;
  securityKeys: SecurityKeys;
  /** Told of every decision once it is made (one log line each); never sees the secret. */
  onDecision?: (d: Decision) => void;
}

/** One authentication decision, as logged: who, from where, over what, the answer, how long. */
export interface Decision {
  user: string | null;
  protocol: string;
  scope: string;
  ip: string | null;
  result: 'success' | 'failure' | 'error';
  reason: string;
  asp: string | null;
  session: string | null;
  ms: number;
}

const MESSAGES: Record<AuthFailReason, string> = {
  invalid_credentials: 'Invalid username or password',
  locked: 'Too many failed attempts, try again later',
  account_disabled: 'Account is disabled',
  scope_denied: 'This password is not valid for this service',
  asp_required: 'Two-factor authentication is on: use an application-specific password for mail clients',
  asp_expired: 'This application-specific password has expired',
  asp_not_for_master: 'Application-specific passwords cannot sign in to the account',
  second_factor_required: 'A second factor is required',
  second_factor_invalid: 'Invalid second factor',
  password_expired: 'This temporary password has expired',
  email_code_required: 'A code was sent to your email address: enter it to continue',
  email_code_invalid: 'Wrong email code',
  two_factor_setup_required: 'Two-factor authentication is required for this account: sign in to the account page and set it up first',
  address_denied: 'This application-specific password is not valid from this address',
  temporary_failure: 'Temporary failure, try again later',
};

const LAST_USE_PRECISION_MS = 60_000;

/** Longer secrets are refused before hashing: nobody's password is this long. */
const MAX_SECRET_LENGTH = 1024;

type Match = { kind: 'password' } | { kind: 'asp'; asp: Asp };
/** `guess`: the attempt counts against the password windows (a wrong or misplaced secret). */
type Outcome = { result: AuthResult; user: User | null; aspId: string | null; guess: boolean };

/**
 * Refusals that come only after the password proved right: they are not password guesses (a
 * wrong second factor is counted in its own window; emailed codes spend their own tries).
 */
const PASSWORD_WAS_RIGHT = new Set<AuthFailReason>(['second_factor_required', 'second_factor_invalid', 'locked', 'email_code_required', 'email_code_invalid']);

/** Looked up for unknown users, so that they cost what known ones do; no account has it. */
const NO_USER_ID = '0'.repeat(24);

export const fail = (reason: AuthFailReason, extra: Partial<Extract<AuthResult, { ok: false }>> = {}): Extract<AuthResult, { ok: false }> => ({
  ok: false,
  reason,
  message: MESSAGES[reason],
  ...extra,
});

/**
 * The one decision: may this secret open this scope for this user? Every call writes one
 * audit event. Faults of a store or Redis give `temporary_failure`, never a wrong-password
 * answer.
 */
export class Authenticator {
  /** Checks in flight, so identical ones arriving together share one bcrypt run (F3). */
  private readonly inFlight = new Map<string, Promise<Match | null>>();

  constructor(private readonly d: AuthDeps) {}

  async authenticate(req: AuthRequest): Promise<AuthResult> {
    const { result, recorded } = await this.decideAndRecord(req);
    await recorded;
    return result;
  }

  /**
   * The decision as soon as it is made, and its audit event being stored. An edge may start
   * what the answer needs (opening the upstream session) while the event is written, but lets
   * nobody in, and answers nothing, before `recorded` has settled; when it rejects (the event
   * could be neither stored nor spooled) the answer is a temporary failure.
   */
  async decideAndRecord(req: AuthRequest): Promise<{ result: AuthResult; recorded: Promise<void> }> {
    const started = performance.now();
    const username = normalizeUsername(req.username);
    let outcome: Outcome;
    try {
      outcome = await this.decide(req, username);
    } catch (err) {
      if (!isTemporary(err)) throw err;
      outcome = { result: fail('temporary_failure'), user: null, aspId: null, guess: false };
    }
    const { result, user, aspId } = outcome;
    const verdict = result.ok ? 'success' : result.reason === 'temporary_failure' ? 'error' : 'failure';
    const reason = result.ok ? result.credential : result.reason;
    this.d.onDecision?.({
      user: username || null,
      protocol: req.protocol,
      scope: req.scope,
      ip: req.ip,
      result: verdict,
      reason,
      asp: aspId,
      session: req.sessionId ?? null,
      ms: Math.round((performance.now() - started) * 10) / 10,
    });
    const recorded = this.d.audit.record({
      action: 'auth',
      result: verdict,
      reason,
      userId: user?.id ?? null,
      username: username || null,
      ip: req.ip,
      protocol: req.protocol,
      scope: req.scope,
      aspId,
      sessionId: req.sessionId ?? null,
      userAgent: req.userAgent ?? null,
    });
    // Handled here as well, so that a failure before the caller awaits it is not reported as
    // unhandled; the caller still sees it.
    recorded.catch(() => undefined);
    return { result, recorded };
  }

  private async decide(req: AuthRequest, username: string): Promise<Outcome> {
    if (!username || !req.secret || req.secret.length > MAX_SECRET_LENGTH) {
      return { result: fail('invalid_credentials'), user: null, aspId: null, guess: false };
    }
    const fingerprint = this.fingerprint(username, req.secret);
    // The attempt is counted before anything is checked: parallel guesses cannot all slip
    // through between a look at the window and the failure being written.
    const [found, reserved] = await Promise.allSettled([this.d.store.users.findByName(username), this.d.windows.password(username, req.ip, fingerprint)]);
    if (reserved.status === 'rejected') throw reserved.reason;
    const gate = reserved.value;
    if (found.status === 'rejected') {
      if (gate.granted) await gate.attempt.settle('refunded');
      throw found.reason;
    }
    const user = found.value;
    const cacheKey = this.cacheKey(user, username, req.scope, req.secret);
    if (!gate.granted) return this.duringLockout(req, user, username, cacheKey, fingerprint, gate.retryAfterSec);
    return this.settled(gate.attempt, () => this.check(req, user, username, cacheKey));
  }

  /** Runs a check under its reservation and settles it by the outcome; a fault gives it back. */
  private async settled(attempt: Attempt, check: () => Promise<Outcome>): Promise<Outcome> {
    let outcome: Outcome;
    try {
      outcome = await check();
    } catch (err) {
      await attempt.settle('refunded');
      throw err;
    }
    await attempt.settle(outcome.guess ? 'failed' : 'refunded');
    return outcome;
  }

  /** The secret against the verified-credential cache, else bcrypt; then the scope rules. */
  private async check(req: AuthRequest, user: User | null, username: string, cacheKey: string): Promise<Outcome> {
    // Unknown users look the cache up too (their key never exists): the same work either way.
    const cached = await this.d.cache.get(cacheKey);
    const match = cached && user ? await this.fromCache(user, cached) : await this.verifyOnce(user, username, req.secret);
    if (!user || !match) return { result: fail('invalid_credentials'), user, aspId: null, guess: true };
    return this.conclude(req, user, match, cached ? null : cacheKey);
  }

  /**
   * An account locked by its password window, or an address locked by its window: strangers
   * are refused before any hash is computed. The account's own clients keep working: a secret
   * verified from the same address moments ago is still accepted, from the cache alone.
   */
  private async duringLockout(
    req: AuthRequest,
    user: User | null,
    username: string,
    cacheKey: string,
    fingerprint: string,
    retryAfter: number,
  ): Promise<Outcome> {
    const locked: Outcome = { result: fail('locked', { retryAfter }), user, aspId: null, guess: true };
    if (!req.ip) return locked;
    const known = await this.d.cache.get(this.addressKey(username, req.ip));
    if (!known || !user) return locked;
    const gate = await this.d.windows.lockoutBypass(username, req.ip, fingerprint);
    if (!gate.granted) return locked;
    return this.settled(gate.attempt, async () => {
      const cached = await this.d.cache.get(cacheKey);
      const match = cached ? await this.fromCache(user, cached) : null;
      return match ? this.conclude(req, user, match, null) : locked;
    });
  }

  /**
   * The scope rules once the secret is known to be right, and what a success leaves behind.
   * `remember` is the cache key to store the verified secret under (null when it came from
   * the cache).
   */
  private async conclude(req: AuthRequest, user: User, match: Match, remember: string | null): Promise<Outcome> {
    const aspId = match.kind === 'asp' ? match.asp.id : null;
    const result = await this.applyRules(req, user, match);
    if (!result.ok) {
      // A right secret in the wrong place still counts (once, by fingerprint): else it is an
      // oracle. A wrong or missing second factor is counted in its own window instead.
      return { result, user, aspId, guess: !PASSWORD_WAS_RIGHT.has(result.reason) };
    }
    if (remember) await this.remember(remember, match, user.username, req.ip);
    if (remember && match.kind === 'password') await this.upgradeHash(user, req.secret);
    if (match.kind === 'asp' && this.lastUseIsStale(match.asp, req)) {
      await this.d.store.asps.recordUse(match.asp.id, { time: this.d.clock.now(), ip: req.ip, protocol: req.protocol });
    }
    return { result, user, aspId, guess: false };
  }

  private cacheKey(user: User | null, username: string, scope: string, secret: string): string {
    return user
      ? keyedHash(this.d.serverKey, 'verified', user.id, scope, secret, String(user.credentialVersion))
      : keyedHash(this.d.serverKey, 'verified-nobody', username, scope, secret);
  }

  /** Marks that the account's secret was verified from this address (the lockout way in). */
  private addressKey(username: string, ip: string): string {
    return keyedHash(this.d.serverKey, 'verified-from', username, ip);
  }

  /** Identical checks in flight share one bcrypt run, for unknown users as for known ones (F3). */
  private verifyOnce(user: User | null, username: string, secret: string): Promise<Match | null> {
    const key = user
      ? keyedHash(this.d.serverKey, 'inflight', user.id, secret, String(user.credentialVersion))
      : keyedHash(this.d.serverKey, 'inflight-nobody', username, secret);
    let p = this.inFlight.get(key);
    if (!p) {
      p = this.verifySecret(user, secret).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, p);
    }
    return p;
  }

  /** Replaces an imported (scrypt, SHA512-CRYPT, ...) or cheaper hash with bcrypt at the configured cost. */
  private async upgradeHash(user: User, secret: string): Promise<void> {
    if (!needsRehash(user.passwordHash, this.d.settings.bcryptCost)) return;
    try {
      const passwordHash = await this.d.hasher.hash(secret);
      await this.d.store.users.update(user.id, { passwordHash }, this.d.clock.now(), false);
      await this.d.audit.record({ action: 'password.rehash', result: 'success', userId: user.id, username: user.username });
    } catch {
      // The login itself succeeded; the upgrade is tried again next time.
    }
  }

  /** ASP candidates first (picked by prefix hash), then the account password. */
  private async verifySecret(user: User | null, secret: string): Promise<Match | null> {
    const aspSecret = normalizeAspInput(secret);
    if (!user) {
      // The same store round trip a known user's ASP-shaped secret costs.
      if (aspSecret) await this.d.store.asps.findByPrefix(NO_USER_ID, aspPrefixHash(aspSecret));
      await this.d.hasher.verify(secret, this.d.dummyHash);
      return null;
    }
    if (aspSecret) {
      const candidates = await this.d.store.asps.findByPrefix(user.id, aspPrefixHash(aspSecret));
      for (const asp of candidates) {
        if (await this.d.hasher.verify(aspSecret, asp.hash)) return { kind: 'asp', asp };
      }
    }
    const ok = await this.d.hasher.verify(secret, user.passwordHash);
    // An imported hash (SSHA, SHA512-CRYPT, ...) answers much faster than bcrypt: spend a
    // bcrypt check too, so such accounts cannot be told from unknown ones by timing.
    if (parseStoredHash(user.passwordHash)?.scheme !== 'bcrypt') await this.d.hasher.verify(secret, this.d.dummyHash);
    return ok ? { kind: 'password' } : null;
  }

  private async fromCache(user: User, cached: string): Promise<Match | null> {
    if (cached === 'password') return { kind: 'password' };
    const aspId = cached.slice('asp:'.length);
    const asp = (await this.d.store.asps.listByUser(user.id)).find((a) => a.id === aspId);
    return asp ? { kind: 'asp', asp } : null;
  }

  private async remember(cacheKey: string, match: Match, username: string, ip: string | null): Promise<void> {
    const ttlMs = this.d.settings.verifiedCacheTtlMs;
    let ttl = ttlMs;
    if (match.kind === 'asp' && match.asp.expiresAt) {
      ttl = Math.min(ttl, match.asp.expiresAt.getTime() - this.d.clock.now().getTime());
    }
    await Promise.all([
      ttl > 0 ? this.d.cache.set(cacheKey, match.kind === 'asp' ? `asp:${match.asp.id}` : 'password', ttl) : null,
      ip ? this.d.cache.set(this.addressKey(username, ip), '1', ttlMs) : null,
    ]);
  }

  /**
   * Whether logins granted earlier would still be granted now, by the same scope rules, with
   * the account as it is now: the account still active, an ASP still there and in scope, the
   * password not changed since (nor 2FA turned on in its way), encryption as it was. The
   * secret is not asked for again. One answer per grant, in order.
   */
  async stillGranted(grants: Grant[]): Promise<boolean[]> {
    const byUser = new Map<string, Grant[]>();
    for (const g of grants) byUser.set(g.userId, [...(byUser.get(g.userId) ?? []), g]);
    const verdicts = new Map<Grant, boolean>();
    await Promise.all(
      [...byUser].map(async ([userId, mine]) => {
        const user = await this.d.store.users.findById(userId);
        const asps = user && mine.some((g) => g.credential === 'asp') ? await this.d.store.asps.listByUser(userId) : [];
        for (const g of mine) verdicts.set(g, user ? await this.grantHolds(g, user, asps) : false);
      }),
    );
    return grants.map((g) => verdicts.get(g) ?? false);
  }

  private async grantHolds(g: Grant, user: User, asps: Asp[]): Promise<boolean> {
    if ((user.pgp?.encrypt ? user.pgp.publicKey : null) !== g.encryptTo) return false;
    let match: Match;
    if (g.credential === 'asp') {
      const asp = asps.find((a) => a.id === g.aspId);
      if (!asp) return false;
      match = { kind: 'asp', asp };
    } else {
      if (user.passwordChangedAt.getTime() !== g.passwordSetAt?.getTime()) return false;
      match = { kind: 'password' };
    }
    // Mail scopes only: the master scope's sessions are bound to the store's session records.
    const req: AuthRequest = { username: user.username, secret: '', scope: g.scope, ip: g.ip, protocol: 'imap' };
    return (await this.applyRules(req, user, match)).ok;
  }

  /** Scope rules once the secret is known to be right. */
  private async applyRules(req: AuthRequest, user: User, match: Match): Promise<AuthResult> {
    const now = this.d.clock.now();
    if (user.status !== 'active') return fail('account_disabled');
    const required = !user.twoFactor && (await this.d.policy.enabled('two_factor_required', user.domain));
    // Without a second factor under mandatory 2FA, mail clients are refused and the account
    // page opens only to set one up.
    if (required && req.scope !== 'master') return fail('two_factor_setup_required');
    const recommended = !user.twoFactor && !required && (await this.d.policy.enabled('two_factor_recommended', user.domain));
    const encryptTo = user.pgp?.encrypt ? user.pgp.publicKey : null;
    const ok = (): Extract<AuthResult, { ok: true }> => ({
      ok: true,
      userId: user.id,
      username: user.username,
      credential: match.kind,
      aspId: match.kind === 'asp' ? match.asp.id : null,
      mustChangePassword: match.kind === 'password' && user.mustChangePassword,
      mustSetUpTwoFactor: required,
      encryptTo,
      notices: recommended ? [...user.notices, 'two_factor_recommended'] : user.notices,
      secondFactor: null,
      grant: {
        userId: user.id,
        scope: req.scope,
        credential: match.kind,
        aspId: match.kind === 'asp' ? match.asp.id : null,
        encryptTo,
        passwordSetAt: match.kind === 'password' ? user.passwordChangedAt : null,
        ip: req.ip,
      },
    });

    if (match.kind === 'asp') {
      const asp = match.asp;
      if (asp.expiresAt && asp.expiresAt.getTime() <= now.getTime()) return fail('asp_expired');
      if (asp.networks.length && !(req.ip && networkMatcher(asp.networks)(req.ip))) return fail('address_denied');
      if (req.scope === 'master') return fail('asp_not_for_master');
      if (!asp.scopes.includes(req.scope) || !user.scopes.includes(req.scope)) return fail('scope_denied');
      return ok();
    }

    if (user.passwordExpiresAt && user.passwordExpiresAt.getTime() <= now.getTime()) return fail('password_expired');
    if (req.scope !== 'master') {
      if (user.twoFactor) return fail('asp_required');
      // A temporary password (admin reset, new account) opens only the account page.
      if (user.mustChangePassword || !user.scopes.includes(req.scope)) return fail('scope_denied');
      return ok();
    }
    // A further check the caller asks for once the password is right (the emailed code at a
    // sign-in from a new device), before anything single-use such as a recovery code is spent.
    const withheld = req.afterPassword ? await req.afterPassword(user) : null;
    if (withheld) return withheld;
    if (!user.twoFactor || req.trustedDevice) return ok();
    const refused = await this.checkSecondFactor(req, user);
    return refused ?? { ...ok(), secondFactor: req.secondFactor!.kind };
  }

  /** Null when the second factor passed; otherwise the refusal. */
  private async checkSecondFactor(req: AuthRequest, user: User): Promise<AuthResult | null> {
    const keys = await this.d.securityKeys.list(user.id);
    const methods: SecondFactorKind[] = [...(user.totp ? ['totp' as const] : []), ...(keys.length ? ['security_key' as const] : []), 'recovery'];
    const factor = req.secondFactor;
    if (!factor || (factor.kind !== 'security_key' && !factor.code)) {
      // A key's challenge is issued only here, after the password was right.
      const securityKeyOptions = await this.d.securityKeys.signInOptions(user, keys);
      return fail('second_factor_required', { methods, ...(securityKeyOptions ? { securityKeyOptions } : {}) });
    }
    const presented = factor.kind === 'security_key' ? JSON.stringify(factor.assertion) : factor.code;
    const gate = await this.d.windows.secondFactor(user.username, this.fingerprint(user.username, `${factor.kind}:${presented}`));
    if (!gate.granted) return fail('locked', { retryAfter: gate.retryAfterSec });
    let passed: boolean;
    try {
      passed = await this.passes(user, keys, factor);
    } catch (err) {
      await gate.attempt.settle('refunded');
      throw err;
    }
    await gate.attempt.settle(passed ? 'refunded' : 'failed');
    return passed ? null : fail('second_factor_invalid', { methods });
  }

  private passes(user: User, keys: WebAuthnCredential[], factor: SecondFactor): Promise<boolean> {
    if (factor.kind === 'security_key') return this.d.securityKeys.verifySignIn(user, keys, factor.assertion);
    return factor.kind === 'totp' ? this.checkTotpCode(user, factor.code) : this.useRecoveryCode(user, factor.code);
  }

  private async checkTotpCode(user: User, code: string): Promise<boolean> {
    if (!user.totp) return false;
    const seed = this.d.box.open(user.totp.sealedSecret, user.id);
    const step = await checkTotp(seed, code, this.d.clock.now(), this.d.settings.totpWindowSteps, user.totpLastStep);
    // The store refuses a step that is not newer, so two logins racing with one code cannot both pass.
    return step !== null && (await this.d.store.users.advanceTotpStep(user.id, step));
  }

  private async useRecoveryCode(user: User, code: string): Promise<boolean> {
    const hash = hashRecoveryCode(this.d.serverKey, user.id, code);
    const used = await this.d.store.recoveryCodes.consume(user.id, hash, this.d.clock.now());
    if (used) {
      await this.d.audit.record({ action: 'recovery.use', result: 'success', userId: user.id, username: user.username });
    }
    return used;
  }

  /**
   * Last use is kept to the minute: a client reconnecting from the same address over the same
   * protocol does not cost a disk write per login (the audit trail has every login anyway).
   */
  private lastUseIsStale(asp: Asp, req: AuthRequest): boolean {
    const last = asp.lastUse;
    if (!last || last.ip !== req.ip || last.protocol !== req.protocol) return true;
    return this.d.clock.now().getTime() - last.time.getTime() >= LAST_USE_PRECISION_MS;
  }

  private fingerprint(username: string, secret: string): string {
    return keyedHash(this.d.serverKey, 'failed', username, secret);
  }
}
