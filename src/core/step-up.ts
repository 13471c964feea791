import type { Clock } from './clock.js';
import { PosternError } from './errors.js';
import type { ChallengeStore } from './ports.js';

/**
 * Elevated web sessions (Authelia's term; Google asks again before app passwords too): a
 * session may add or remove second factors, make new recovery codes, ASPs or API tokens, or
 * change its PGP key only within `windowMs` of proving the password (and the second factor,
 * when the account has one) again. A sign-in that checked them counts as that proof; one that
 * skipped the second factor on a trusted device does not.
 *
 * Kept as a challenge record that expires on its own, so it is shared by every postern
 * process, and signing a session out or ending it leaves nothing to clean.
 */
export class StepUp {
  constructor(
    private readonly challenges: ChallengeStore,
    private readonly clock: Clock,
    private readonly windowMs: number,
  ) {}

  private key(sessionId: string): string {
    return `stepup:${sessionId}`;
  }

  async mark(sessionId: string): Promise<void> {
    const now = this.clock.now();
    await this.challenges.put({ key: this.key(sessionId), codeHash: '', triesLeft: 0, createdAt: now, expiresAt: new Date(now.getTime() + this.windowMs) });
  }

  /**
   * Refuses a change that users make to their own account through a web session that has not
   * proved itself recently. The command line and automation tokens act for the operator, and
   * an administrator working on someone else's account is guarded by the role.
   */
  async require(actor: { name: string; sessionId?: string }, owner?: { username: string; mustChangePassword: boolean }): Promise<void> {
    if (!actor.sessionId || (owner && owner.username !== actor.name)) return;
    // A temporary password (admin reset, new account) opens nothing but its own change.
    if (owner?.mustChangePassword) {
      throw new PosternError('password_change_required', 'This is a temporary password: change it first (PUT /api/v1/me/password)');
    }
    if (await this.challenges.get(this.key(actor.sessionId), this.clock.now())) return;
    throw new PosternError(
      'step_up_required',
      'Confirm it is you: enter your password (and second factor) again with POST /api/v1/session/confirm, then retry',
    );
  }
}
