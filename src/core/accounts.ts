import { randomBytes } from 'node:crypto';
import { readKey } from 'openpgp';
import { aspPrefixHash, formatAsp, generateAspSecret } from './asp.js';
import type { AuditInput, AuditLog } from './audit-log.js';
import type { Clock } from './clock.js';
import { keyedHash } from './keyed-hash.js';
import { expiryAfter } from './lifetime.js';
import { parseNetworks } from './rate-windows.js';
import type { StepUp } from './step-up.js';
import { PosternError, conflict, invalid, notFound } from './errors.js';
import type { CredentialEvents, Hasher, Store, UserPatch } from './ports.js';
import { checkPasswordPolicy, type PasswordPolicy } from './password-policy.js';
import { parseStoredHash, plainPassword } from './password-schemes.js';
import { generateRecoveryCode, hashRecoveryCode } from './recovery-codes.js';
import type { SecretBox } from './secret-box.js';
import type { SecurityKeys } from './security-keys.js';
import { checkTotp, newTotpSecret, totpUri } from './totp.js';
import { PROTOCOL_SCOPES, type Asp, type ProtocolScope, type Role, type User, type WebAuthnCredential } from './types.js';
import { domainOf, normalizeUsername, validUsername } from './username.js';

/** How long a profile link (a QR code for a phone's mail profile) may be opened. */
export const PROFILE_LINK_TTL_MS = 10 * 60_000;

export interface AccountSettings {
  aspMaxPerUser: number;
  recoveryCodeCount: number;
  totpIssuer: string;
  totpWindowSteps: number;
  tempPasswordTtlMs: number;
  passwordPolicy: PasswordPolicy;
}

export interface AccountDeps {
  store: Store;
  audit: AuditLog;
  hasher: Hasher;
  box: SecretBox;
  serverKey: Buffer;
  clock: Clock;
  securityKeys: SecurityKeys;
  settings: AccountSettings;
  stepUp: StepUp;
  events?: CredentialEvents;
}

/** Who asked for a change, for the audit trail. */
export interface Actor {
  name: string;
  ip?: string | null;
  protocol?: 'http' | 'cli';
  /** The web session making the change: it stays signed in when users change their own account. */
  sessionId?: string;
}

export interface NewAspResult {
  asp: Asp;
  /** Shown once, grouped in fours; never stored in clear. */
  password: string;
}

const KNOWN_FORMS =
  '{BLF-CRYPT}, {SHA512-CRYPT}, {SHA256-CRYPT}, {MD5-CRYPT}, {CRYPT}, {SSHA}, {SSHA256}, {SSHA512}, {ARGON2ID}, {PBKDF2}, {PLAIN}, $pbkdf2-…, scrypt log2N|r|p|salt|hash, $2b$…';

/** The scheme of a hash being imported ('plain' for a cleartext entry); refuses one postern cannot check. */
export function checkImportedHash(username: string, stored: string): string {
  if (plainPassword(stored) !== null) return 'plain';
  const parsed = parseStoredHash(stored);
  if (!parsed) throw invalid(`password hash of "${username}" is in no known form (${KNOWN_FORMS})`);
  return parsed.scheme;
}

/**
 * Every change to authentication data goes through here, so each one bumps the credential
 * version where it must and leaves an audit event.
 */
export class Accounts {
  constructor(private readonly d: AccountDeps) {}

  private now(): Date {
    return this.d.clock.now();
  }

  private async audit(actor: Actor, user: Pick<User, 'id' | 'username'> | null, e: AuditInput): Promise<void> {
    await this.d.audit.record({
      userId: user?.id ?? null,
      username: user?.username ?? null,
      actor: actor.name,
      ip: actor.ip ?? null,
      protocol: actor.protocol ?? null,
      ...e,
    });
  }

  async get(username: string): Promise<User> {
    const user = await this.d.store.users.findByName(normalizeUsername(username));
    if (!user) throw notFound(`user "${normalizeUsername(username)}"`);
    return user;
  }

  async createUser(
    actor: Actor,
    input: { username: string; password: string; role?: Role; email?: string | null; scopes?: ProtocolScope[]; temporary?: boolean },
  ): Promise<User> {
    checkPasswordPolicy(input.password, this.d.settings.passwordPolicy);
    const user = await this.insertUser(input, () => this.d.hasher.hash(input.password));
    await this.audit(actor, user, { action: 'user.create', result: 'success', reason: user.role });
    return user;
  }

  /**
   * A new account that starts with recovery codes as its only second factor and a
   * temporary password to change at first sign-in (a "recovery-codes-only starter").
   * Returns the codes, shown once.
   */
  async createStarterUser(
    actor: Actor,
    input: { username: string; password: string; role?: Role; email?: string | null },
  ): Promise<{ user: User; recoveryCodes: string[] }> {
    const created = await this.createUser(actor, { ...input, temporary: true });
    const user = await this.patch(created, { twoFactor: true }, true);
    return { user, recoveryCodes: await this.regenerateRecoveryCodes(actor, user.username) };
  }

  /**
   * An account moved from another system with its existing hash (Dovecot {SCHEME}, WildDuck
   * PBKDF2, scrypt, bcrypt). The password is unknown here, so no policy check; the hash is
   * replaced by bcrypt at the user's next good login.
   */
  async importUser(actor: Actor, input: { username: string; passwordHash: string; role?: Role; email?: string | null }): Promise<User> {
    const scheme = checkImportedHash(input.username, input.passwordHash);
    const plain = plainPassword(input.passwordHash);
    // A cleartext password is hashed now: postern never stores one.
    const user = await this.insertUser({ ...input, temporary: false }, async () => (plain === null ? input.passwordHash : this.d.hasher.hash(plain)));
    await this.audit(actor, user, { action: 'user.import', result: 'success', reason: scheme });
    return user;
  }

  private async insertUser(
    input: { username: string; role?: Role; email?: string | null; scopes?: ProtocolScope[]; temporary?: boolean },
    /** Called only once the name is known to be valid and free: bcrypt is not spent on a refusal. */
    hashPassword: () => Promise<string>,
  ): Promise<User> {
    const username = validUsername(input.username);
    if (await this.d.store.users.findByName(username)) throw conflict(`user "${username}" already exists`);
    const passwordHash = await hashPassword();
    const now = this.now();
    return this.d.store.users.create(
      {
        username,
        displayName: input.username.trim(),
        domain: domainOf(username),
        email: input.email ?? null,
        role: input.role ?? 'user',
        status: 'active',
        passwordHash,
        passwordChangedAt: now,
        mustChangePassword: input.temporary ?? false,
        passwordExpiresAt: input.temporary ? new Date(now.getTime() + this.d.settings.tempPasswordTtlMs) : null,
        scopes: input.scopes ?? [...PROTOCOL_SCOPES],
        twoFactor: false,
        totp: null,
        totpPending: null,
        pgp: null,
        notices: [],
      },
      now,
    );
  }

  /**
   * The rule for every change of password, second factors or status: trust given before it
   * ends. Every web session of the account goes (but the one making a change to its own
   * account), every trusted device goes, and live mail sessions are checked again.
   */
  private async endTrust(actor: Actor, user: User): Promise<void> {
    const keep = actor.name === user.username ? actor.sessionId : undefined;
    await this.d.store.sessions.deleteAllOfUser(user.id, keep);
    await this.d.store.devices.deleteAllOfUser(user.id);
    await this.announce(user);
  }

  /** Live mail sessions of the account check their credential again. */
  private async announce(user: User): Promise<void> {
    // The change is stored already; a lost announcement is caught by the periodic re-check.
    await this.d.events?.changed(user.id).catch(() => undefined);
  }

  private async patch(user: User, patch: UserPatch, bump: boolean): Promise<User> {
    const updated = await this.d.store.users.update(user.id, patch, this.now(), bump);
    if (!updated) throw notFound(`user "${user.username}"`);
    return updated;
  }

  async setPassword(actor: Actor, username: string, password: string, opts: { temporary?: boolean } = {}): Promise<User> {
    const user = await this.get(username);
    checkPasswordPolicy(password, this.d.settings.passwordPolicy);
    const now = this.now();
    const updated = await this.patch(
      user,
      {
        passwordHash: await this.d.hasher.hash(password),
        // Always later than the last change: live sessions tell passwords apart by this time.
        passwordChangedAt: new Date(Math.max(now.getTime(), user.passwordChangedAt.getTime() + 1)),
        mustChangePassword: opts.temporary ?? false,
        passwordExpiresAt: opts.temporary ? new Date(now.getTime() + this.d.settings.tempPasswordTtlMs) : null,
      },
      true,
    );
    await this.endTrust(actor, updated);
    await this.audit(actor, user, { action: opts.temporary ? 'password.reset' : 'password.change', result: 'success' });
    return updated;
  }

  async setStatus(actor: Actor, username: string, status: User['status']): Promise<User> {
    const user = await this.get(username);
    const updated = await this.patch(user, { status }, true);
    if (status === 'disabled') await this.endTrust(actor, updated);
    else await this.announce(updated);
    await this.audit(actor, user, { action: 'user.status', result: 'success', reason: status });
    return updated;
  }

  async setRole(actor: Actor, username: string, role: Role): Promise<User> {
    const user = await this.get(username);
    const updated = await this.patch(user, { role }, true);
    await this.audit(actor, user, { action: 'user.update', result: 'success', reason: `role=${role}` });
    return updated;
  }

  /**
   * Where notices and emailed codes go. Users changing their own need a step-up: whoever
   * controls the address receives the codes that guard the account.
   */
  async setEmail(actor: Actor, username: string, email: string | null): Promise<User> {
    const user = await this.get(username);
    await this.d.stepUp.require(actor, user);
    const address = email?.trim() || null;
    if (address !== null && (address.length > 254 || !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(address))) throw invalid(`"${address}" is not an email address`);
    const updated = await this.patch(user, { email: address }, false);
    await this.audit(actor, user, { action: 'user.update', result: 'success', reason: address ? 'email' : 'email removed' });
    return updated;
  }

  async deleteUser(actor: Actor, username: string): Promise<void> {
    const user = await this.get(username);
    await this.d.store.asps.deleteAllOfUser(user.id);
    await this.d.store.sessions.deleteAllOfUser(user.id);
    await this.d.store.devices.deleteAllOfUser(user.id);
    await this.d.store.securityKeys.deleteAllOfUser(user.id);
    await this.d.store.recoveryCodes.replace(user.id, [], this.now());
    await this.d.store.users.delete(user.id);
    await this.announce(user);
    await this.audit(actor, user, { action: 'user.delete', result: 'success' });
  }

  async createAsp(
    actor: Actor,
    username: string,
    input: { description: string; scopes: ProtocolScope[]; expiresInMs?: number | null; networks?: string[] },
  ): Promise<NewAspResult> {
    const user = await this.get(username);
    await this.d.stepUp.require(actor, user);
    return this.makeAsp(actor, user, input);
  }

  /**
   * A single-use link that makes an ASP for IMAP and SMTP when it is opened (a phone scanning
   * a QR code for its mail profile): asked for like an ASP (the same confirmation), it holds no
   * secret itself, lives PROFILE_LINK_TTL_MS, and stops working once the account's credentials
   * change. The token is stored only as a keyed hash.
   */
  async issueProfileLink(actor: Actor, username: string): Promise<{ token: string; expiresAt: Date }> {
    const user = await this.get(username);
    await this.d.stepUp.require(actor, user);
    await this.aspRoom(user);
    const secret = randomBytes(24).toString('base64url');
    const expiresAt = new Date(this.now().getTime() + PROFILE_LINK_TTL_MS);
    await this.d.store.challenges.put({
      key: this.profileLinkKey(user.id, secret),
      codeHash: String(user.credentialVersion),
      triesLeft: 1,
      createdAt: this.now(),
      expiresAt,
    });
    await this.audit(actor, user, { action: 'asp.link', result: 'success' });
    return { token: `${user.id}.${secret}`, expiresAt };
  }

  /** Opens a profile link once: the account and a new IMAP+SMTP ASP; not_found when used, expired or stale. */
  async redeemProfileLink(token: string, ip: string | null): Promise<{ user: User } & NewAspResult> {
    const gone = () => notFound('This setup link (it works once, for 10 minutes)');
    const [userId = '', secret = '', extra] = token.split('.');
    if (!userId || !secret || extra !== undefined) throw gone();
    const key = this.profileLinkKey(userId, secret);
    const link = await this.d.store.challenges.get(key, this.now());
    // Whoever deletes it is the one who opens it: two phones racing get one profile.
    if (!link || !(await this.d.store.challenges.delete(key))) throw gone();
    const user = await this.d.store.users.findById(userId);
    if (!user || user.status !== 'active' || String(user.credentialVersion) !== link.codeHash) throw gone();
    const made = await this.makeAsp({ name: user.username, ip: ip ?? undefined, protocol: 'http' }, user, {
      description: 'Apple Mail profile',
      scopes: ['imap', 'smtp'],
    });
    return { user, ...made };
  }

  private profileLinkKey(userId: string, secret: string): string {
    return `profile:${userId}:${keyedHash(this.d.serverKey, 'profile-link', secret)}`;
  }

  private async aspRoom(user: User): Promise<void> {
    if ((await this.d.store.asps.countByUser(user.id)) >= this.d.settings.aspMaxPerUser) {
      throw new PosternError('limit_reached', `at most ${this.d.settings.aspMaxPerUser} ASPs per user: revoke one first`);
    }
  }

  private async makeAsp(
    actor: Actor,
    user: User,
    input: { description: string; scopes: ProtocolScope[]; expiresInMs?: number | null; networks?: string[] },
  ): Promise<NewAspResult> {
    const description = input.description.trim();
    if (description.length > 200) throw invalid('ASP description must be at most 200 characters');
    if (input.scopes.length === 0) throw invalid('an ASP needs at least one scope');
    const expiresAt = expiryAfter(this.now(), input.expiresInMs, 'the ASP lifetime');
    if ((input.networks?.length ?? 0) > 50) throw invalid('at most 50 networks per ASP');
    const networks = parseNetworks(input.networks ?? []);
    await this.aspRoom(user);
    const secret = generateAspSecret();
    const asp = await this.d.store.asps.create({
      userId: user.id,
      description,
      scopes: input.scopes,
      hash: await this.d.hasher.hash(secret),
      prefixHash: aspPrefixHash(secret),
      createdAt: this.now(),
      expiresAt,
      networks,
    });
    await this.patch(user, {}, true);
    await this.audit(actor, user, { action: 'asp.create', result: 'success', aspId: asp.id, reason: asp.scopes.join(',') });
    return { asp, password: formatAsp(secret) };
  }

  async listAsps(username: string): Promise<Asp[]> {
    const user = await this.get(username);
    return this.d.store.asps.listByUser(user.id);
  }

  async revokeAsp(actor: Actor, username: string, aspId: string): Promise<void> {
    const user = await this.get(username);
    if (!(await this.d.store.asps.delete(user.id, aspId))) throw notFound(`ASP "${aspId}" of "${user.username}"`);
    await this.patch(user, {}, true);
    // Only that ASP's sessions end: the re-check finds it gone.
    await this.announce(user);
    await this.audit(actor, user, { action: 'asp.delete', result: 'success', aspId });
  }

  /** Step one of enrolment: a new seed to show; 2FA stays off until confirmTotp. */
  async setupTotp(actor: Actor, username: string): Promise<{ secret: string; uri: string }> {
    const user = await this.get(username);
    await this.d.stepUp.require(actor, user);
    // Replacing a working authenticator must go through disabling it (password + factor).
    if (user.totp) throw new PosternError('conflict', 'TOTP is already on: turn it off first to enrol a new authenticator');
    const secret = newTotpSecret();
    await this.patch(user, { totpPending: this.d.box.seal(secret, user.id) }, false);
    await this.audit(actor, user, { action: 'totp.setup', result: 'success' });
    return { secret, uri: totpUri(secret, this.d.settings.totpIssuer, user.username) };
  }

  /** Step two: a valid code turns TOTP on and returns fresh recovery codes (shown once). */
  async confirmTotp(actor: Actor, username: string, code: string): Promise<{ recoveryCodes: string[] }> {
    const user = await this.get(username);
    await this.d.stepUp.require(actor, user);
    if (!user.totpPending) throw new PosternError('totp_not_pending', 'start TOTP setup first');
    const seed = this.d.box.open(user.totpPending, user.id);
    const step = await checkTotp(seed, code, this.now(), this.d.settings.totpWindowSteps, null);
    if (step === null) {
      await this.audit(actor, user, { action: 'totp.enable', result: 'failure', reason: 'invalid_code' });
      throw new PosternError('invalid_code', 'the code does not match: check the device clock and try the next code');
    }
    await this.patch(user, { totp: { sealedSecret: user.totpPending, enabledAt: this.now() }, totpPending: null, twoFactor: true }, true);
    // The enrolment code counts as used, so it cannot sign in a second time.
    await this.d.store.users.advanceTotpStep(user.id, step);
    await this.endTrust(actor, user);
    await this.audit(actor, user, { action: 'totp.enable', result: 'success' });
    return { recoveryCodes: await this.regenerateRecoveryCodes(actor, user.username) };
  }

  async regenerateRecoveryCodes(actor: Actor, username: string): Promise<string[]> {
    const user = await this.get(username);
    await this.d.stepUp.require(actor, user);
    const codes = Array.from({ length: this.d.settings.recoveryCodeCount }, generateRecoveryCode);
    const hashes = codes.map((c) => hashRecoveryCode(this.d.serverKey, user.id, c));
    await this.d.store.recoveryCodes.replace(user.id, hashes, this.now());
    await this.audit(actor, user, { action: 'recovery.regenerate', result: 'success' });
    return codes;
  }

  /**
   * Admin reset, for a user who lost their second factor: every factor goes, and the
   * account starts again like a new one: a temporary password (master only, expiring, to be
   * changed before anything else) and fresh recovery codes as its only second factor, both
   * for the administrator to hand over. The reset never leaves the old password alone
   * opening the account. The user is told at the next sign-in.
   */
  async resetSecondFactor(actor: Actor, username: string): Promise<{ user: User; temporaryPassword: string; recoveryCodes: string[] }> {
    const user = await this.get(username);
    const notices = [...new Set([...user.notices, 'two_factor_reset_by_admin'])];
    await this.d.store.securityKeys.deleteAllOfUser(user.id);
    await this.patch(user, { twoFactor: true, totp: null, totpPending: null, notices }, true);
    const recoveryCodes = await this.regenerateRecoveryCodes(actor, user.username);
    const temporaryPassword = await this.issueTemporaryPassword(actor, user.username);
    await this.audit(actor, user, { action: '2fa.reset', result: 'success' });
    return { user: await this.get(user.username), temporaryPassword, recoveryCodes };
  }

  /** The user turns their own second factors off (the caller checked password and factor). */
  async disableSecondFactor(actor: Actor, username: string): Promise<User> {
    const user = await this.get(username);
    await this.d.stepUp.require(actor, user);
    const updated = await this.patch(user, { twoFactor: false, totp: null, totpPending: null }, true);
    await this.d.store.recoveryCodes.replace(user.id, [], this.now());
    await this.d.store.securityKeys.deleteAllOfUser(user.id);
    await this.endTrust(actor, updated);
    await this.audit(actor, user, { action: 'totp.disable', result: 'success' });
    return updated;
  }

  /** Step one of adding a security key: options (with a fresh challenge) for the browser. */
  async securityKeyOptions(actor: Actor, username: string): Promise<Record<string, unknown>> {
    const user = await this.get(username);
    await this.d.stepUp.require(actor, user);
    return this.d.securityKeys.registrationOptions(user);
  }

  /**
   * Step two: the browser's answer is checked and the key becomes a second factor, turning
   * 2FA on. Recovery codes come with it (shown once) when the account has none left.
   */
  async addSecurityKey(
    actor: Actor,
    username: string,
    response: Record<string, unknown>,
    label: string,
  ): Promise<{ key: WebAuthnCredential; recoveryCodes: string[] | null }> {
    const user = await this.get(username);
    await this.d.stepUp.require(actor, user);
    const checked = await this.d.securityKeys.verifyRegistration(user, response, label);
    if (!checked) {
      await this.audit(actor, user, { action: 'security_key.add', result: 'failure', reason: 'invalid_response' });
      throw new PosternError('invalid_security_key', 'The security key answer did not check out (wrong page, expired or reused challenge): start again');
    }
    const key = await this.d.store.securityKeys.create(checked);
    await this.patch(user, { twoFactor: true }, true);
    await this.endTrust(actor, user);
    await this.audit(actor, user, { action: 'security_key.add', result: 'success', reason: key.id });
    const needCodes = (await this.d.store.recoveryCodes.countUnused(user.id)) === 0;
    return { key, recoveryCodes: needCodes ? await this.regenerateRecoveryCodes(actor, user.username) : null };
  }

  /**
   * Removes one key. 2FA stays on: the account keeps its other factors, at least its
   * recovery codes; turning 2FA off is its own, guarded operation.
   */
  async removeSecurityKey(actor: Actor, username: string, id: string): Promise<void> {
    const user = await this.get(username);
    await this.d.stepUp.require(actor, user);
    if (!(await this.d.store.securityKeys.delete(user.id, id))) throw notFound(`security key "${id}"`);
    await this.patch(user, {}, true);
    await this.endTrust(actor, user);
    await this.audit(actor, user, { action: 'security_key.delete', result: 'success', reason: id });
  }

  /**
   * Sets (or with null, removes) the account's PGP public key and whether mail is stored
   * encrypted to it. The key must be able to encrypt.
   */
  async setPgpKey(actor: Actor, username: string, armoredKey: string | null, encrypt: boolean): Promise<User> {
    const user = await this.get(username);
    await this.d.stepUp.require(actor, user);
    let pgp: User['pgp'] = null;
    if (armoredKey !== null) {
      const key = await readKey({ armoredKey }).catch(() => null);
      if (!key || key.isPrivate()) throw invalid('publicKey must be an armored OpenPGP public key');
      if (!(await key.getEncryptionKey().catch(() => null))) throw invalid('this PGP key has no valid encryption subkey');
      pgp = { publicKey: key.armor(), fingerprint: key.getFingerprint().toUpperCase(), encrypt };
    } else if (encrypt) {
      throw invalid('encryption needs a public key');
    }
    const updated = await this.patch(user, { pgp }, false);
    // Live IMAP sessions reconnect, so that uploads are sealed (or no longer) from now on.
    await this.announce(updated);
    await this.audit(actor, user, { action: 'pgp.update', result: 'success', reason: pgp ? `${pgp.fingerprint} encrypt=${encrypt}` : 'removed' });
    return updated;
  }

  /** A temporary password for master only; it does not bypass the second factor. */
  async issueTemporaryPassword(actor: Actor, username: string): Promise<string> {
    const password = `${randomBytes(9).toString('base64url')}aA1!`;
    await this.setPassword(actor, username, password, { temporary: true });
    return password;
  }

  async clearNotices(username: string): Promise<void> {
    const user = await this.get(username);
    await this.patch(user, { notices: [] }, false);
  }
}
