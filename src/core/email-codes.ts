import { randomInt, timingSafeEqual } from 'node:crypto';
import type { Clock } from './clock.js';
import { PosternError, temporary } from './errors.js';
import { keyedHash } from './keyed-hash.js';
import type { ChallengeStore } from './ports.js';
import type { User } from './types.js';

/** Operations that need an emailed code when the `email_codes` feature is on. */
export type CodePurpose = 'sign_in' | 'asp' | 'token' | 'disable_2fa' | 'delete_account';

export interface CodeMailer {
  sendCode(to: string, code: string, purpose: CodePurpose): Promise<void>;
}

export interface EmailCodeSettings {
  /** How long a code (a nonce) lives: 300 s by default. */
  ttlMs: number;
  /** How soon a new code may be asked for: 300 s by default. */
  resendDelayMs: number;
  /** Wrong tries before the code is void. */
  tries: number;
}

export type CodeCheck = 'ok' | 'missing' | 'invalid';

/** Six-digit codes sent by email, stored hashed, single use, void after 3 wrong tries. */
export class EmailCodes {
  constructor(
    private readonly store: ChallengeStore,
    private readonly mailer: CodeMailer | null,
    private readonly clock: Clock,
    private readonly serverKey: Buffer,
    private readonly s: EmailCodeSettings,
  ) {}

  private key(user: User, purpose: CodePurpose): string {
    return `email:${user.id}:${purpose}`;
  }

  private hash(key: string, code: string): string {
    return keyedHash(this.serverKey, 'email-code', key, code.trim());
  }

  /** Sends a new code, unless one was sent less than the resend delay ago. */
  async send(user: User, purpose: CodePurpose): Promise<{ sent: true } | { retryAfter: number }> {
    if (!this.mailer || !user.email) throw new PosternError('no_email', 'this account has no email address for codes: ask an administrator');
    const key = this.key(user, purpose);
    const now = this.clock.now();
    const existing = await this.store.get(key, now);
    if (existing) {
      const wait = existing.createdAt.getTime() + this.s.resendDelayMs - now.getTime();
      if (wait > 0) return { retryAfter: Math.ceil(wait / 1000) };
    }
    const code = String(randomInt(0, 1_000_000)).padStart(6, '0');
    await this.store.put({
      key,
      codeHash: this.hash(key, code),
      triesLeft: this.s.tries,
      createdAt: now,
      expiresAt: new Date(now.getTime() + this.s.ttlMs),
    });
    try {
      await this.mailer.sendCode(user.email, code, purpose);
    } catch (err) {
      await this.store.delete(key);
      throw temporary(err, 'sending email');
    }
    return { sent: true };
  }

  /**
   * Spends one of the code's tries, then compares: however many guesses arrive together, no
   * more than `tries` are ever compared. A right code is used up; a code void after its last
   * wrong try is kept until it expires, so that the resend delay still holds.
   */
  async check(user: User, purpose: CodePurpose, code: string | undefined): Promise<CodeCheck> {
    if (!code) return 'missing';
    const key = this.key(user, purpose);
    const challenge = await this.store.spendTry(key, this.clock.now());
    if (!challenge) return 'missing';
    const given = Buffer.from(this.hash(key, code));
    const stored = Buffer.from(challenge.codeHash);
    if (given.length === stored.length && timingSafeEqual(given, stored)) {
      // Two right answers at once: only the one that removes it gets in.
      return (await this.store.delete(key)) ? 'ok' : 'missing';
    }
    return 'invalid';
  }
}
