import { randomBytes } from 'node:crypto';
import type { AuditLog } from './audit-log.js';
import { fail, type Authenticator } from './authenticate.js';
import type { EmailCodes } from './email-codes.js';
import type { Clock } from './clock.js';
import { PosternError, notFound } from './errors.js';
import { keyedHash } from './keyed-hash.js';
import { expiryAfter } from './lifetime.js';
import type { StepUp } from './step-up.js';
import type { Actor } from './accounts.js';
import { normalizeUsername } from './username.js';
import type { Policy } from './policy.js';
import type { Store } from './ports.js';
import type { ApiToken, AuthResult, Role, SecondFactor, Session, TrustedDevice, User } from './types.js';

export interface WebSessionSettings {
  sessionTtlMs: number;
  /** 0 turns trusted devices off. */
  trustedDeviceTtlMs: number;
  /** How long after proving the password (and second factor) sensitive changes are allowed. */
  stepUpWindowMs: number;
}

export interface SignInRequest {
  username: string;
  password: string;
  secondFactor?: SecondFactor;
  /** Token of a device trusted at an earlier sign-in. */
  deviceToken?: string;
  /** The emailed code, when the email_codes feature asks for one on a new device. */
  emailCode?: string;
  /** Trust this device from now on (only after a second factor was given). */
  trustDevice?: boolean;
  deviceLabel?: string;
  ip: string | null;
  userAgent: string | null;
}

export type SignInResult =
  | {
      ok: true;
      token: string;
      session: Session;
      user: User;
      deviceToken: string | null;
      notices: string[];
      mustChangePassword: boolean;
      mustSetUpTwoFactor: boolean;
    }
  | Extract<AuthResult, { ok: false }>;

/** Who a bearer token speaks for. */
export type Principal = { kind: 'session'; session: Session; user: User; role: Role } | { kind: 'token'; token: ApiToken; role: ApiToken['role'] };

const SESSION_PREFIX = 'pss_';
const API_TOKEN_PREFIX = 'pat_';
const DEVICE_PREFIX = 'ptd_';
/** `createdBy` of tokens made with the command line: not a possible username. */
export const CLI_CREATOR = '(command line)';

/**
 * Web API sign-in and bearer tokens. Tokens are 32 random bytes shown once; only their keyed
 * hash is stored, so a copy of the database opens no session.
 */
export class WebSessions {
  constructor(
    private readonly d: {
      store: Store;
      auth: Authenticator;
      audit: AuditLog;
      clock: Clock;
      serverKey: Buffer;
      settings: WebSessionSettings;
      policy: Policy;
      emailCodes: EmailCodes;
      stepUp: StepUp;
    },
  ) {}

  private hash(kind: string, token: string): string {
    return keyedHash(this.d.serverKey, kind, token);
  }

  private newToken(prefix: string): string {
    return `${prefix}${randomBytes(32).toString('base64url')}`;
  }

  private after(ms: number): Date {
    return new Date(this.d.clock.now().getTime() + ms);
  }

  async signIn(req: SignInRequest): Promise<SignInResult> {
    const user = await this.d.store.users.findByName(normalizeUsername(req.username));
    const device = user && req.deviceToken && this.d.settings.trustedDeviceTtlMs > 0 ? await this.trustedDevice(user, req.deviceToken) : null;
    const result = await this.d.auth.authenticate({
      username: req.username,
      secret: req.password,
      scope: 'master',
      ip: req.ip,
      protocol: 'http',
      secondFactor: req.secondFactor,
      trustedDevice: device !== null,
      userAgent: req.userAgent ?? undefined,
      // A new device (no trusted-device token) also needs an emailed code when that is on,
      // checked before the second factor so a recovery code is not spent in vain.
      afterPassword: device ? undefined : (u) => this.emailCodeAtSignIn(u, req.emailCode),
    });
    if (!result.ok) return result;
    const fresh = (await this.d.store.users.findById(result.userId))!;
    let deviceToken: string | null = null;
    // Trust is given only for a second factor this sign-in really checked: never for one an
    // account without 2FA ignored, and never renewed by a device that skipped the check.
    if (req.trustDevice && result.secondFactor !== null && this.d.settings.trustedDeviceTtlMs > 0) {
      deviceToken = this.newToken(DEVICE_PREFIX);
      await this.d.store.devices.create({
        userId: fresh.id,
        tokenHash: this.hash('device', deviceToken),
        label: (req.deviceLabel ?? req.userAgent ?? 'browser').slice(0, 120),
        createdAt: this.d.clock.now(),
        expiresAt: this.after(this.d.settings.trustedDeviceTtlMs),
      });
      await this.d.audit.record({
        action: 'device.create',
        result: 'success',
        userId: fresh.id,
        username: fresh.username,
        ip: req.ip,
        protocol: 'http',
        actor: fresh.username,
      });
    }
    if (device) await this.d.store.devices.recordUse(device.id, { time: this.d.clock.now(), ip: req.ip, protocol: 'http' });
    const token = this.newToken(SESSION_PREFIX);
    const session = await this.d.store.sessions.create({
      userId: fresh.id,
      tokenHash: this.hash('session', token),
      trustedDeviceId: device?.id ?? null,
      ip: req.ip,
      userAgent: req.userAgent,
      createdAt: this.d.clock.now(),
      expiresAt: this.after(this.d.settings.sessionTtlMs),
    });
    // A sign-in that proved everything the account has is a fresh step-up; one that skipped the
    // second factor on a trusted device is not.
    if (!fresh.twoFactor || result.secondFactor !== null) await this.d.stepUp.mark(session.id);
    // Notices (e.g. "an admin turned 2FA off") are told once, at this sign-in.
    if (fresh.notices.length) await this.d.store.users.update(fresh.id, { notices: [] }, this.d.clock.now(), false);
    return {
      ok: true,
      token,
      session,
      user: fresh,
      deviceToken,
      notices: result.notices,
      mustChangePassword: result.mustChangePassword,
      mustSetUpTwoFactor: result.mustSetUpTwoFactor,
    };
  }

  private async emailCodeAtSignIn(user: User, code: string | undefined): Promise<Extract<AuthResult, { ok: false }> | null> {
    if (!(await this.d.policy.enabled('email_codes', user.domain))) return null;
    const check = await this.d.emailCodes.check(user, 'sign_in', code);
    if (check === 'invalid') return fail('email_code_invalid');
    if (check === 'missing') {
      await this.d.emailCodes.send(user, 'sign_in');
      return fail('email_code_required');
    }
    return null;
  }

  private async trustedDevice(user: User, token: string): Promise<TrustedDevice | null> {
    return this.d.store.devices.findByTokenHash(user.id, this.hash('device', token), this.d.clock.now());
  }

  /** The principal behind an Authorization bearer token, or null. */
  async principal(token: string): Promise<Principal | null> {
    const now = this.d.clock.now();
    if (token.startsWith(SESSION_PREFIX)) {
      const session = await this.d.store.sessions.findByTokenHash(this.hash('session', token), now);
      const user = session ? await this.d.store.users.findById(session.userId) : null;
      if (!session || !user || user.status !== 'active') return null;
      return { kind: 'session', session, user, role: user.role };
    }
    if (token.startsWith(API_TOKEN_PREFIX)) {
      const t = await this.d.store.apiTokens.findByTokenHash(this.hash('api', token), now);
      return t && (await this.creatorStillAdmin(t, now)) ? { kind: 'token', token: t, role: t.role } : null;
    }
    return null;
  }

  /**
   * A token speaks for its creator: it works only while whoever made it could make it now.
   * An administrator who is demoted, disabled or deleted takes their tokens' power with them;
   * a token made by another token lives as long as that one does; the command line (the
   * host's operator) needs no account.
   */
  private async creatorStillAdmin(t: ApiToken, now: Date, depth = 0): Promise<boolean> {
    if (t.createdBy === CLI_CREATOR) return true;
    if (t.createdBy.startsWith('token:')) {
      const parentId = t.createdBy.slice('token:'.length);
      const parent = (await this.d.store.apiTokens.list()).find((p) => p.id === parentId);
      const live = parent && (!parent.expiresAt || parent.expiresAt.getTime() > now.getTime());
      return !!live && parent.role === 'admin' && depth < 8 && this.creatorStillAdmin(parent, now, depth + 1);
    }
    const creator = await this.d.store.users.findByName(t.createdBy);
    return creator?.status === 'active' && creator.role === 'admin';
  }

  async signOut(user: User, session: Session): Promise<boolean> {
    const gone = await this.d.store.sessions.delete(session.id);
    await this.d.audit.record({
      action: 'session.signout',
      result: 'success',
      userId: user.id,
      username: user.username,
      actor: user.username,
      protocol: 'http',
      sessionId: session.id,
    });
    return gone;
  }

  /** Ends the account's web sessions; `keep`: this one stays signed in ("sign out my other sessions"). */
  async signOutEverywhere(user: User, keep?: string): Promise<number> {
    const n = await this.d.store.sessions.deleteAllOfUser(user.id, keep);
    await this.d.audit.record({
      action: 'session.signout',
      result: 'success',
      userId: user.id,
      username: user.username,
      actor: user.username,
      protocol: 'http',
      reason: `${keep ? 'others' : 'all'}:${n}`,
    });
    return n;
  }

  listDevices(userId: string): Promise<TrustedDevice[]> {
    return this.d.store.devices.listByUser(userId, this.d.clock.now());
  }

  async removeDevice(user: User, id: string, actor: string): Promise<void> {
    if (!(await this.d.store.devices.delete(user.id, id))) throw notFound(`trusted device "${id}"`);
    await this.d.audit.record({ action: 'device.delete', result: 'success', userId: user.id, username: user.username, actor, reason: id });
  }

  /**
   * Proves the password (and a second factor, when the account has one) again for a signed-in
   * session, which may then make sensitive changes for a while (step-up).
   */
  async confirm(
    principal: { session: Session; user: User },
    req: { password: string; secondFactor?: SecondFactor; ip: string | null; userAgent: string | null },
  ): Promise<AuthResult> {
    const result = await this.d.auth.authenticate({
      username: principal.user.username,
      secret: req.password,
      scope: 'master',
      ip: req.ip,
      protocol: 'http',
      secondFactor: req.secondFactor,
      sessionId: principal.session.id,
      userAgent: req.userAgent ?? undefined,
    });
    if (result.ok) await this.d.stepUp.mark(principal.session.id);
    return result;
  }

  async createApiToken(actor: Actor, role: ApiToken['role'], description: string, ttlMs: number | null): Promise<{ token: string; record: ApiToken }> {
    await this.d.stepUp.require(actor);
    if (description.length > 200) throw new PosternError('invalid_input', 'description must be at most 200 characters');
    const expiresAt = expiryAfter(this.d.clock.now(), ttlMs, 'the token lifetime');
    const token = this.newToken(API_TOKEN_PREFIX);
    const record = await this.d.store.apiTokens.create({
      tokenHash: this.hash('api', token),
      role,
      description,
      createdBy: actor.name,
      createdAt: this.d.clock.now(),
      expiresAt,
    });
    await this.d.audit.record({ action: 'token.create', result: 'success', actor: actor.name, reason: `${role}:${record.id}` });
    return { token, record };
  }

  async revokeApiToken(actor: string, id: string): Promise<void> {
    if (!(await this.d.store.apiTokens.delete(id))) throw notFound(`API token "${id}"`);
    await this.d.audit.record({ action: 'token.delete', result: 'success', actor, reason: id });
  }

  async purgeExpired(): Promise<number> {
    const now = this.d.clock.now();
    return (await this.d.store.sessions.purgeExpired(now)) + (await this.d.store.devices.purgeExpired(now));
  }
}
