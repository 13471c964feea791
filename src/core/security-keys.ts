// Security keys (FIDO2/WebAuthn) as a second factor for the master scope. The
// protocol checks (CBOR, COSE keys, signatures, origins) are @simplewebauthn/server's; this
// module keeps the rules: one fresh challenge per ceremony, used once, within its lifetime,
// and a signature counter that only moves forward.
import { timingSafeEqual } from 'node:crypto';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import type { Clock } from './clock.js';
import { keyedHash } from './keyed-hash.js';
import type { ChallengeStore, NewSecurityKey, SecurityKeyStore } from './ports.js';
import type { SecurityKeyAssertion, User, WebAuthnCredential } from './types.js';

export interface SecurityKeySettings {
  /** The relying party id: the host name of the account page (no port, no scheme; checked with the configuration). */
  rpId: string;
  rpName: string;
  /** Origins the page is served from, e.g. https://mail.example.org. */
  origins: string[];
  /** How long a challenge may be answered. */
  challengeTtlMs: number;
}

type Ceremony = 'register' | 'sign_in';

export class SecurityKeys {
  constructor(
    private readonly d: {
      keys: SecurityKeyStore;
      challenges: ChallengeStore;
      clock: Clock;
      serverKey: Buffer;
      settings: SecurityKeySettings;
    },
  ) {}

  list(userId: string): Promise<WebAuthnCredential[]> {
    return this.d.keys.listByUser(userId);
  }

  /** Options for navigator.credentials.create(); keys the user has are excluded. */
  async registrationOptions(user: User): Promise<Record<string, unknown>> {
    const s = this.d.settings;
    const existing = await this.d.keys.listByUser(user.id);
    const options = await generateRegistrationOptions({
      rpName: s.rpName,
      rpID: s.rpId,
      userName: user.username,
      userID: new TextEncoder().encode(user.id),
      userDisplayName: user.displayName,
      attestationType: 'none',
      excludeCredentials: existing.map((k) => ({ id: k.credentialId, transports: k.transports })),
      authenticatorSelection: { residentKey: 'discouraged', userVerification: 'preferred' },
      timeout: s.challengeTtlMs,
    });
    await this.remember(user, 'register', options.challenge);
    return options as unknown as Record<string, unknown>;
  }

  /** Checks the answer of navigator.credentials.create(); null when it does not hold. */
  async verifyRegistration(user: User, response: Record<string, unknown>, label: string): Promise<NewSecurityKey | null> {
    const challenge = await this.challengeCheck(user, 'register');
    if (!challenge) return null;
    const s = this.d.settings;
    const result = await verifyRegistrationResponse({
      response: response as unknown as RegistrationResponseJSON,
      expectedChallenge: challenge,
      expectedOrigin: s.origins,
      expectedRPID: s.rpId,
      requireUserVerification: false,
    }).catch(() => null);
    if (!result?.verified || !(await this.spend(user, 'register'))) return null;
    const c = result.registrationInfo.credential;
    return {
      userId: user.id,
      credentialId: c.id,
      publicKey: Buffer.from(c.publicKey).toString('base64url'),
      signCount: c.counter,
      transports: c.transports ?? [],
      label: label.trim().slice(0, 120) || 'Security key',
      createdAt: this.d.clock.now(),
    };
  }

  /** Options for navigator.credentials.get() for the user's keys, or null when there are none. */
  async signInOptions(user: User, keys: WebAuthnCredential[]): Promise<Record<string, unknown> | null> {
    if (!keys.length) return null;
    const options = await generateAuthenticationOptions({
      rpID: this.d.settings.rpId,
      allowCredentials: keys.map((k) => ({ id: k.credentialId, transports: k.transports })),
      userVerification: 'preferred',
      timeout: this.d.settings.challengeTtlMs,
    });
    await this.remember(user, 'sign_in', options.challenge);
    return options as unknown as Record<string, unknown>;
  }

  /**
   * True when one of the user's keys signed the challenge issued to this user; the
   * challenge is then used up, and the key's counter must have moved forward.
   */
  async verifySignIn(user: User, keys: WebAuthnCredential[], assertion: SecurityKeyAssertion): Promise<boolean> {
    const response = assertion as unknown as AuthenticationResponseJSON;
    const key = keys.find((k) => k.credentialId === response.id);
    const challenge = key ? await this.challengeCheck(user, 'sign_in') : null;
    if (!key || !challenge) return false;
    const s = this.d.settings;
    const result = await verifyAuthenticationResponse({
      response,
      expectedChallenge: challenge,
      expectedOrigin: s.origins,
      expectedRPID: s.rpId,
      credential: { id: key.credentialId, publicKey: Buffer.from(key.publicKey, 'base64url'), counter: key.signCount, transports: key.transports },
      requireUserVerification: false,
    }).catch(() => null);
    if (!result?.verified || !(await this.spend(user, 'sign_in'))) return false;
    return this.d.keys.recordUse(key.id, result.authenticationInfo.newCounter, this.d.clock.now());
  }

  private key(user: User, ceremony: Ceremony): string {
    return `webauthn:${ceremony}:${user.id}`;
  }

  private hash(challenge: string): string {
    return keyedHash(this.d.serverKey, 'webauthn-challenge', challenge);
  }

  private async remember(user: User, ceremony: Ceremony, challenge: string): Promise<void> {
    const now = this.d.clock.now();
    await this.d.challenges.put({
      key: this.key(user, ceremony),
      codeHash: this.hash(challenge),
      triesLeft: 1,
      createdAt: now,
      expiresAt: new Date(now.getTime() + this.d.settings.challengeTtlMs),
    });
  }

  /** A matcher for the challenge the answer signed, or null when none is outstanding. */
  private async challengeCheck(user: User, ceremony: Ceremony): Promise<((c: string) => boolean) | null> {
    const stored = await this.d.challenges.get(this.key(user, ceremony), this.d.clock.now());
    if (!stored || stored.triesLeft < 1) return null;
    const expected = Buffer.from(stored.codeHash);
    return (c: string) => {
      const got = Buffer.from(this.hash(c));
      return got.length === expected.length && timingSafeEqual(got, expected);
    };
  }

  /** Uses the challenge up; false when another answer used it first. Atomic in the store. */
  private async spend(user: User, ceremony: Ceremony): Promise<boolean> {
    return (await this.d.challenges.spendTry(this.key(user, ceremony), this.d.clock.now())) !== null;
  }
}
