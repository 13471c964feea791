// Domain types of postern, defined once and imported everywhere else.

/** Where a secret is used. `master` is the web API and account management. */
export type Scope = 'master' | 'imap' | 'pop3' | 'smtp';
export type ProtocolScope = Exclude<Scope, 'master'>;
export const PROTOCOL_SCOPES: readonly ProtocolScope[] = ['imap', 'pop3', 'smtp'];
export const SCOPES: readonly Scope[] = ['master', ...PROTOCOL_SCOPES];

export type Role = 'user' | 'admin' | 'auditor';
export const ROLES: readonly Role[] = ['user', 'admin', 'auditor'];

export type AccountStatus = 'active' | 'disabled';

/** The transport a request arrived on, recorded in audit events. */
export type Protocol = 'imap' | 'pop3' | 'smtp' | 'lmtp' | 'http' | 'cli';

export interface Totp {
  /** Seed, sealed with the application key (see secret-box). */
  sealedSecret: string;
  enabledAt: Date;
}

export interface PgpSettings {
  publicKey: string;
  fingerprint: string;
  encrypt: boolean;
}

export interface User {
  id: string;
  /** Normal form (NFC, lower case): the one key every lookup and rate window uses. */
  username: string;
  displayName: string;
  /** Domain part of the username, '' when there is none; domain policy hangs off it. */
  domain: string;
  email: string | null;
  role: Role;
  status: AccountStatus;
  passwordHash: string;
  passwordChangedAt: Date;
  /** Set on temporary passwords (admin reset, new account): usable for master only. */
  mustChangePassword: boolean;
  passwordExpiresAt: Date | null;
  /** Protocol scopes this account may use at all. */
  scopes: ProtocolScope[];
  /** True once any second factor is on (TOTP, security key, or the recovery-codes-only starter). */
  twoFactor: boolean;
  totp: Totp | null;
  /** Seed shown at setup, waiting for the first valid code before 2FA turns on. */
  totpPending: string | null;
  /** Newest TOTP time step accepted; codes at or before it are replays. */
  totpLastStep: number | null;
  pgp: PgpSettings | null;
  /** Messages for the user's next sign-in, e.g. that an admin turned 2FA off. */
  notices: string[];
  /** Bumped by every change of password, ASP, 2FA state or status; keys the verified-credential cache. */
  credentialVersion: number;
  createdAt: Date;
  updatedAt: Date;
}

export interface LastUse {
  time: Date;
  ip: string | null;
  protocol: Protocol | null;
}

/** Application-specific password. */
export interface Asp {
  id: string;
  userId: string;
  description: string;
  scopes: ProtocolScope[];
  /** bcrypt of the 16 letters. */
  hash: string;
  /** md5 of the first 4 letters: narrows the bcrypt checks at login to likely candidates. */
  prefixHash: string;
  createdAt: Date;
  expiresAt: Date | null;
  lastUse: LastUse | null;
  /** Addresses and CIDRs it may log in from; empty: from anywhere. */
  networks: string[];
}

export interface RecoveryCode {
  userId: string;
  hash: string;
  usedAt: Date | null;
}

/** A server-side session of the web API (token stored hashed). */
export interface Session {
  id: string;
  userId: string;
  tokenHash: string;
  trustedDeviceId: string | null;
  ip: string | null;
  userAgent: string | null;
  createdAt: Date;
  expiresAt: Date;
}

/** A device on which the second factor is not asked again until expiresAt. */
export interface TrustedDevice {
  id: string;
  userId: string;
  tokenHash: string;
  label: string;
  createdAt: Date;
  expiresAt: Date;
  lastUse: LastUse | null;
}

/** A security key (FIDO2/WebAuthn) registered as a second factor for the master scope. */
export interface WebAuthnCredential {
  id: string;
  userId: string;
  /** The authenticator's credential id, base64url. */
  credentialId: string;
  /** COSE public key, base64url. */
  publicKey: string;
  /** Signature counter last seen; 0 for keys that keep none. */
  signCount: number;
  transports: string[];
  label: string;
  createdAt: Date;
  lastUsedAt: Date | null;
}

export interface ApiToken {
  id: string;
  tokenHash: string;
  role: Exclude<Role, 'user'>;
  description: string;
  createdBy: string;
  createdAt: Date;
  expiresAt: Date | null;
}

/** One-time challenge (emailed code, nonce) with tries left and a time to live. */
export interface Challenge {
  key: string;
  codeHash: string;
  triesLeft: number;
  createdAt: Date;
  expiresAt: Date;
}

export type FeatureName = 'two_factor_required' | 'two_factor_recommended' | 'email_codes' | 'trusted_devices';
export interface FeatureSetting {
  status: 'enabled' | 'disabled';
  /** When locked, domain admins cannot override the server-wide status. */
  lock: 'locked' | 'unlocked';
}
export interface Domain {
  name: string;
  features: Partial<Record<FeatureName, FeatureSetting['status']>>;
  createdAt: Date;
}

export type AuditResult = 'success' | 'failure' | 'error';

export const AUDIT_ACTIONS = [
  'auth',
  'user.create',
  'user.delete',
  'user.update',
  'user.status',
  'password.change',
  'password.reset',
  'password.rehash',
  'user.import',
  'asp.create',
  'asp.delete',
  'asp.link',
  'totp.setup',
  'totp.enable',
  'totp.disable',
  '2fa.reset',
  'recovery.regenerate',
  'recovery.use',
  'pgp.update',
  'security_key.add',
  'security_key.delete',
  'policy.update',
  'device.create',
  'device.delete',
  'token.create',
  'token.delete',
  'session.signout',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export const AUDIT_RESULTS = ['success', 'failure', 'error'] as const;
export const PROTOCOLS = ['imap', 'pop3', 'smtp', 'lmtp', 'http', 'cli'] as const;

export interface AuditEvent {
  /** Unique, given when the event is recorded: a store keeps one copy per id. */
  id?: string;
  time: Date;
  action: AuditAction;
  result: AuditResult;
  /** Machine-readable why, e.g. an AuthFailReason. */
  reason: string | null;
  userId: string | null;
  username: string | null;
  ip: string | null;
  protocol: Protocol | null;
  scope: Scope | null;
  aspId: string | null;
  sessionId: string | null;
  userAgent: string | null;
  /** Who made a change: the user themself, an admin's name, or 'cli'. */
  actor: string | null;
}

export interface AuditQuery {
  username?: string;
  action?: AuditAction;
  result?: AuditResult;
  ip?: string;
  protocol?: Protocol;
  since?: Date;
  until?: Date;
  limit: number;
  /** Opaque cursor from a previous page. */
  cursor?: string;
}

export interface AuditPage {
  events: AuditEvent[];
  nextCursor: string | null;
}

/** How a secret was recognised. */
export type CredentialKind = 'password' | 'asp';
export type SecondFactorKind = 'totp' | 'recovery' | 'security_key';
/** A security key's signed answer to a challenge (WebAuthn AuthenticationResponseJSON). */
export type SecurityKeyAssertion = Record<string, unknown>;
export type SecondFactor = { kind: 'totp' | 'recovery'; code: string } | { kind: 'security_key'; assertion: SecurityKeyAssertion };

export type AuthFailReason =
  | 'invalid_credentials'
  | 'locked'
  | 'account_disabled'
  | 'scope_denied'
  | 'asp_required'
  | 'asp_expired'
  | 'asp_not_for_master'
  | 'second_factor_required'
  | 'second_factor_invalid'
  | 'password_expired'
  | 'two_factor_setup_required'
  | 'email_code_required'
  | 'email_code_invalid'
  | 'address_denied'
  | 'temporary_failure';

export interface AuthRequest {
  username: string;
  secret: string;
  scope: Scope;
  ip: string | null;
  protocol: Protocol;
  secondFactor?: SecondFactor;
  /** The caller already checked a trusted-device token of this user (web sign-in only). */
  trustedDevice?: boolean;
  /**
   * Master scope: run once the password is right and before any second factor is checked or
   * spent; a refusal it returns is the answer.
   */
  afterPassword?: (user: User) => Promise<Extract<AuthResult, { ok: false }> | null>;
  sessionId?: string;
  userAgent?: string;
}

/**
 * What a successful login was granted on, kept by whoever holds the session it opened, so
 * that the grant can be checked again when the account's credentials change.
 */
export interface Grant {
  userId: string;
  scope: Scope;
  credential: CredentialKind;
  aspId: string | null;
  /** The key stored mail was sealed to at login; a change means the session must start over. */
  encryptTo: string | null;
  /** For the account password: when the password checked was set (a new one ends the grant). */
  passwordSetAt: Date | null;
  /** The client's address at login, for ASPs bound to networks. */
  ip: string | null;
}

export type AuthResult =
  | {
      ok: true;
      userId: string;
      username: string;
      credential: CredentialKind;
      aspId: string | null;
      /** The secret was a temporary password: the user must change it now. */
      mustChangePassword: boolean;
      /** Mandatory 2FA is on and this account has none: it may only set it up. */
      mustSetUpTwoFactor: boolean;
      notices: string[];
      /** The armored key this account's stored mail is encrypted to, null when encryption is off. */
      encryptTo: string | null;
      /** The second factor this very check verified; null when none was checked (no 2FA, a trusted device). */
      secondFactor: SecondFactorKind | null;
      grant: Grant;
    }
  | {
      ok: false;
      reason: AuthFailReason;
      /** Safe to show the client. */
      message: string;
      /** Seconds to wait, for `locked`. */
      retryAfter?: number;
      /** Second factors the account can use, for `second_factor_required`. */
      methods?: SecondFactorKind[];
      /** WebAuthn request options (with a fresh challenge) when the account has security keys. */
      securityKeyOptions?: Record<string, unknown>;
    };
