import { aspPrefixHash, normalizeAspInput } from './asp.js';
import type { AuditLog } from './audit-log.js';
import type { Clock } from './clock.js';
import { isTemporary } from './errors.js';
import { keyedHash } from './keyed-hash.js';
import type { CredentialCache, Hasher, Store } from './ports.js';
import type { RateWindows } from './rate-windows.js';
import { needsRehash, parseStoredHash } from './password-schemes.js';
import type { Policy } from './policy.js';
import { hashRecoveryCode } from './recovery-codes.js';
import type { SecretBox } from './secret-box.js';
import type { SecurityKeys } from './security-keys.js';
import { checkTotp } from './totp.js';
import type { Asp, AuthFailReason, AuthRequest, AuthResult, SecondFactor, SecondFactorKind, User, WebAuthnCredential } from './types.js';
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
  temporary_failure: 'Temporary failure, try again later',
};

const LAST_USE_PRECISION_MS = 60_000;

/** Longer secrets are refused before hashing: nobody's password is this long. */
const MAX_SECRET_LENGTH = 1024;

type Match = { kind: 'password' } | { kind: 'asp'; asp: Asp };
type Outcome = { result: AuthResult; user: User | null; aspId: string | null };

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
    const username = normalizeUsername(req.username);
    let outcome: Outcome;
    try {
      outcome = await this.decide(req, username);
    } catch (err) {
      if (!isTemporary(err)) throw err;
      outcome = { result: fail('temporary_failure'), user: null, aspId: null };
    }
    const { result, user, aspId } = outcome;
    await this.d.audit.record({
      action: 'auth',
      result: result.ok ? 'success' : result.reason === 'temporary_failure' ? 'error' : 'failure',
      reason: result.ok ? result.credential : result.reason,
      userId: user?.id ?? null,
      username: username || null,
      ip: req.ip,
      protocol: req.protocol,
      scope: req.scope,
      aspId,
      sessionId: req.sessionId ?? null,
      userAgent: req.userAgent ?? null,
    });
    return result;
  }

  private async decide(req: AuthRequest, username: string): Promise<Outcome> {
    const none = (result: AuthResult, user: User | null = null): Outcome => ({ result, user, aspId: null });
    if (!username || !req.secret || req.secret.length > MAX_SECRET_LENGTH) {
      return none(fail('invalid_credentials'));
    }
    const [lock, user] = await Promise.all([
      this.d.windows.passwordLock(username, req.ip),
      this.d.store.users.findByName(username),
    ]);
    const cacheKey = user
      ? keyedHash(this.d.serverKey, 'verified', user.id, req.scope, req.secret, String(user.credentialVersion))
      : null;
    const cached = cacheKey ? await this.d.cache.get(cacheKey) : null;
    // A secret verified moments ago keeps working during a lockout; strangers' guesses are
    // refused here, before any hash is computed.
    if (lock.locked && !cached) return none(fail('locked', { retryAfter: lock.retryAfterSec }), user);

    const match = cached && user ? await this.fromCache(user, cached) : await this.verifyOnce(user, req.secret);
    if (!user || !match) {
      await this.d.windows.passwordFailed(username, req.ip, this.fingerprint(username, req.secret));
      return none(fail('invalid_credentials'), user);
    }
    const aspId = match.kind === 'asp' ? match.asp.id : null;
    const result = await this.applyRules(req, user, match);
    if (!result.ok && result.reason !== 'second_factor_required' && result.reason !== 'second_factor_invalid') {
      // A right secret in the wrong place still counts (once, by fingerprint): else it is an oracle.
      if (result.reason !== 'locked') {
        await this.d.windows.passwordFailed(username, req.ip, this.fingerprint(username, req.secret));
      }
      return { result, user, aspId };
    }
    if (!result.ok) return { result, user, aspId };

    await this.d.windows.succeeded(username);
    if (!cached && cacheKey) await this.remember(cacheKey, match);
    if (!cached && match.kind === 'password') await this.upgradeHash(user, req.secret);
    if (match.kind === 'asp' && this.lastUseIsStale(match.asp, req)) {
      await this.d.store.asps.recordUse(match.asp.id, { time: this.d.clock.now(), ip: req.ip, protocol: req.protocol });
    }
    return { result, user, aspId };
  }

  private verifyOnce(user: User | null, secret: string): Promise<Match | null> {
    if (!user) return this.verifySecret(null, secret);
    const key = keyedHash(this.d.serverKey, 'inflight', user.id, secret, String(user.credentialVersion));
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
    if (!user) {
      await this.d.hasher.verify(secret, this.d.dummyHash);
      return null;
    }
    const aspSecret = normalizeAspInput(secret);
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

  private async remember(cacheKey: string, match: Match): Promise<void> {
    let ttl = this.d.settings.verifiedCacheTtlMs;
    if (match.kind === 'asp' && match.asp.expiresAt) {
      ttl = Math.min(ttl, match.asp.expiresAt.getTime() - this.d.clock.now().getTime());
    }
    if (ttl > 0) await this.d.cache.set(cacheKey, match.kind === 'asp' ? `asp:${match.asp.id}` : 'password', ttl);
  }

  /** Scope rules of MISSION A2/A3/A9 once the secret is known to be right. */
  private async applyRules(req: AuthRequest, user: User, match: Match): Promise<AuthResult> {
    const now = this.d.clock.now();
    if (user.status !== 'active') return fail('account_disabled');
    const required = !user.twoFactor && (await this.d.policy.enabled('two_factor_required', user.domain));
    // Without a second factor under mandatory 2FA, mail clients are refused and the account
    // page opens only to set one up (B3).
    if (required && req.scope !== 'master') return fail('two_factor_setup_required');
    const recommended = !user.twoFactor && !required && (await this.d.policy.enabled('two_factor_recommended', user.domain));
    const ok = (): AuthResult => ({
      ok: true,
      userId: user.id,
      username: user.username,
      credential: match.kind,
      aspId: match.kind === 'asp' ? match.asp.id : null,
      mustChangePassword: match.kind === 'password' && user.mustChangePassword,
      mustSetUpTwoFactor: required,
      encryptTo: user.pgp?.encrypt ? user.pgp.publicKey : null,
      notices: recommended ? [...user.notices, 'two_factor_recommended'] : user.notices,
    });

    if (match.kind === 'asp') {
      const asp = match.asp;
      if (asp.expiresAt && asp.expiresAt.getTime() <= now.getTime()) return fail('asp_expired');
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
    if (!user.twoFactor || req.trustedDevice) return ok();
    return (await this.checkSecondFactor(req, user)) ?? ok();
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
    const lock = await this.d.windows.totpLock(user.username);
    if (lock.locked) return fail('locked', { retryAfter: lock.retryAfterSec });

    if (await this.passes(user, keys, factor)) return null;
    const presented = factor.kind === 'security_key' ? JSON.stringify(factor.assertion) : factor.code;
    await this.d.windows.totpFailed(user.username, this.fingerprint(user.username, `${factor.kind}:${presented}`));
    return fail('second_factor_invalid', { methods });
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
