import type { SMTPServer, SMTPServerSession } from 'smtp-server';
import type { FrontendContext } from '../context.js';
import { peerIp } from '../limits.js';
import { smtpError, type SmtpError } from './replies.js';

interface Waiting {
  ip: string;
  failures: number;
  deadline: NodeJS.Timeout;
  /** Its entry in the context's connections not logged in yet. */
  entry: { shutdown(): void };
}

/**
 * The discipline every connection gets before login, as IMAP and POP3 give it: a slot of the
 * per-address cap shared with them, a deadline for the whole login however busy the client
 * keeps the connection, no AUTH offered in clear off the plaintext networks, and the
 * connection closed after too many failed logins.
 *
 * AUTH is hidden before TLS through smtp-server's per-session `disabledCommands`. With AUTH
 * disabled, smtp-server no longer demands a login before MAIL, RCPT and DATA itself, so
 * `requireLogin` must guard those three handlers.
 */
export class SubmissionPreauth {
  private readonly waiting = new Map<string, Waiting>();

  constructor(
    private readonly ctx: FrontendContext,
    private readonly server: () => SMTPServer,
  ) {}

  /** onConnect: null to go on, or the refusal to send. */
  connected(session: SMTPServerSession): SmtpError | null {
    const ip = peerIp(session.remoteAddress);
    if (!this.ctx.preauth.acquire(ip)) return smtpError(421, 'Too many connections from your address, try again later');
    const deadline = setTimeout(() => this.close(session, 'Took too long to log in'), this.ctx.settings.preauthDeadlineMs);
    deadline.unref();
    const entry = { shutdown: () => this.close(session, 'Server shutting down, try again in a moment') };
    this.ctx.preLogin.add(entry);
    this.waiting.set(session.id, { ip, failures: 0, deadline, entry });
    if (!session.secure && !this.ctx.settings.plaintextAllowed(ip)) session.disabledCommands = ['AUTH'];
    return null;
  }

  /** onSecure (after STARTTLS, or at once on implicit TLS): AUTH is offered from now on. */
  secured(session: SMTPServerSession): void {
    session.disabledCommands = [];
  }

  /** Whether a login may be tried on this connection now (TLS, or a plaintext network). */
  authAllowed(session: SMTPServerSession): boolean {
    return session.secure || this.ctx.settings.plaintextAllowed(peerIp(session.remoteAddress));
  }

  /** A refused login; past the limit the connection is closed after the refusal is sent. */
  failed(session: SMTPServerSession): void {
    const w = this.waiting.get(session.id);
    if (!w || ++w.failures < this.ctx.settings.maxAuthFailures) return;
    setImmediate(() => this.close(session, 'Too many invalid authentication attempts'));
  }

  /** Logged in: the connection no longer holds a pre-login slot or runs against the deadline. */
  loggedIn(session: SMTPServerSession): void {
    this.release(session);
  }

  closed(session: SMTPServerSession): void {
    this.release(session);
  }

  /** MAIL, RCPT and DATA need a login, whatever smtp-server decided about AUTH. */
  requireLogin(session: SMTPServerSession): SmtpError | null {
    return session.user ? null : smtpError(530, 'Authentication required');
  }

  private release(session: SMTPServerSession): void {
    const w = this.waiting.get(session.id);
    if (!w) return;
    clearTimeout(w.deadline);
    this.ctx.preLogin.delete(w.entry);
    this.waiting.delete(session.id);
    this.ctx.preauth.release(w.ip);
  }

  /** Closes the connection with a 421 and this reason. */
  close(session: SMTPServerSession, why: string): void {
    for (const conn of this.server().connections) {
      // A 421 reply makes smtp-server close the connection.
      if (conn.session === session) conn.send(421, why);
    }
    this.release(session);
  }
}
