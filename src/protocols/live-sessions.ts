import type { Authenticator } from '../core/authenticate.js';
import type { Grant } from '../core/types.js';
import type { Logger } from '../log.js';

export type EndReason = 'credentials' | 'shutdown';

/** Accounts checked together in a periodic sweep (one store lookup each). */
const SWEEP_BATCH = 100;

interface Live {
  grant: Grant;
  sessionId: string;
  username: string;
  /** Closes the session with the protocol's last words for the reason. */
  end(why: EndReason): void;
}

/**
 * The proxied mail sessions this process holds, by account, so that a credential change ends
 * them: a revoked ASP, a new password, a disabled account, 2FA turned on in the password's
 * way. Each is checked again by the core's own rules (`stillGranted`) when a change is
 * announced, and every `recheckMs` as well, which catches changes made where no announcement
 * reaches (another process without Redis, the command line).
 *
 * A store that cannot answer a re-check leaves the sessions running: that is not a decision
 * about the credential, and ending every session on a store blip would lock everyone out.
 */
export class LiveSessions {
  private readonly byUser = new Map<string, Set<Live>>();
  private readonly timer: NodeJS.Timeout;
  private sweeping = false;

  constructor(
    private readonly auth: Authenticator,
    private readonly log: Logger,
    recheckMs: number,
  ) {
    this.timer = setInterval(() => void this.recheckAll(), recheckMs);
    this.timer.unref();
  }

  /** Registers a session; the returned function unregisters it (when it closes on its own). */
  add(grant: Grant, username: string, sessionId: string, end: (why: EndReason) => void): () => void {
    const live: Live = { grant, username, sessionId, end };
    let set = this.byUser.get(grant.userId);
    if (!set) this.byUser.set(grant.userId, (set = new Set()));
    set.add(live);
    return () => this.remove(live);
  }

  get size(): number {
    let n = 0;
    for (const set of this.byUser.values()) n += set.size;
    return n;
  }

  /** Checks the sessions of one account again (on an announced change). */
  async recheck(userId: string): Promise<void> {
    const set = this.byUser.get(userId);
    if (set?.size) await this.check([...set]);
  }

  /**
   * Every session, a batch of accounts at a time, so that the periodic check puts a bounded
   * number of lookups on the store at once however many sessions there are. A sweep still
   * running when the next is due lets that one pass.
   */
  async recheckAll(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const users = [...this.byUser.keys()];
      for (let i = 0; i < users.length; i += SWEEP_BATCH) {
        const batch = users.slice(i, i + SWEEP_BATCH).flatMap((u) => [...(this.byUser.get(u) ?? [])]);
        if (batch.length) await this.check(batch);
      }
    } finally {
      this.sweeping = false;
    }
  }

  /** Ends every session (postern is shutting down). */
  endAll(): void {
    const all = [...this.byUser.values()].flatMap((s) => [...s]);
    this.byUser.clear();
    for (const s of all) s.end('shutdown');
  }

  close(): void {
    clearInterval(this.timer);
  }

  private async check(sessions: Live[]): Promise<void> {
    let verdicts: boolean[];
    try {
      verdicts = await this.auth.stillGranted(sessions.map((s) => s.grant));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'live sessions not re-checked: store unavailable');
      return;
    }
    sessions.forEach((s, i) => {
      if (verdicts[i]) return;
      this.remove(s);
      this.log.info({ session: s.sessionId, user: s.username, protocol: s.grant.scope, asp: s.grant.aspId }, 'session ended: its credential changed');
      s.end('credentials');
    });
  }

  private remove(live: Live): void {
    const set = this.byUser.get(live.grant.userId);
    if (!set) return;
    set.delete(live);
    if (set.size === 0) this.byUser.delete(live.grant.userId);
  }
}
