import type { Socket } from 'node:net';
import { fail } from '../core/authenticate.js';
import { PosternError } from '../core/errors.js';
import type { AuthResult, ProtocolScope } from '../core/types.js';
import { clientInfo, newSessionId, startTls, type FrontendContext } from './context.js';
import { endRelayed, splice } from './relay.js';
import { LineReader, LineTooLong } from './line-reader.js';
import type { ProxiedPeer } from './proxy-protocol.js';
import type { ClientInfo, UpstreamSession } from './upstream/mail-upstream.js';

export type Refusal = Extract<AuthResult, { ok: false }>;
export type Granted = Extract<AuthResult, { ok: true }>;

/** Carries a logged-in session between client and upstream until either side closes. */
/** Carries a logged-in session; `clientEnded`: the client half-closed already, after what is pending. */
export type Relay = (client: Socket, up: UpstreamSession, clientPending: Buffer, onClose: () => void, clientEnded: boolean) => void;

/** The words a protocol uses for the moments every session goes through. */
export interface SessionWords {
  tooManyConnections: string;
  idle: string;
  tooSlow: string;
  /** Sent when a live session ends because its credential changed (revoked, new password, ...). */
  credentialChanged: string;
  /** Sent to every session when postern shuts down. */
  shuttingDown: string;
  lineTooLong: string;
  tooManyFailures: string;
  internalError: string;
  tooManySessions: string;
  upstreamDown: string;
  /** The mail server itself refused the account (no mailbox for it there): permanent. */
  noMailbox: string;
  refusal(r: Refusal): string;
}

/**
 * A client connection before login, shared by IMAP and POP3: bounded reading, one command at
 * a time with input paused, STARTTLS, the per-connection failure limit, and the hand-over to
 * a byte pipe to the upstream once the core said yes.
 */
export abstract class PreauthSession {
  protected socket: Socket;
  protected secure: boolean;
  protected reader: LineReader;
  protected readonly id = newSessionId();
  protected readonly ip: string;
  private done = false;
  private busy = false;
  private handedOver = false;
  private holdsPreauth = false;
  /** The client half-closed: no more commands will come. */
  private clientEnded = false;
  private deadline: NodeJS.Timeout | null = null;
  /**
   * The idle timeout, reset by every byte the client sends. A timer of postern's own rather
   * than socket.setTimeout(), which leaves its timer object on the socket for the whole
   * relayed session even once turned off.
   */
  private idle: NodeJS.Timeout | null = null;
  private failures = 0;
  /** What the client says it is (IMAP ID name/version), for the audit trail. */
  protected clientName: string | undefined;

  constructor(
    protected readonly ctx: FrontendContext,
    /** Most live sessions one user may hold in this protocol. */
    private readonly maxSessions: number,
    private readonly words: SessionWords,
    private readonly scope: ProtocolScope,
    socket: Socket,
    secure: boolean,
    /** The client as a trusted load balancer named it (PROXY protocol); null: the socket's peer. */
    private readonly peer: ProxiedPeer | null = null,
  ) {
    this.socket = socket;
    this.secure = secure;
    this.ip = clientInfo(socket, this.id, peer).ip;
    this.reader = new LineReader(ctx.settings.maxLineLength);
  }

  /** Sends the greeting. */
  protected abstract greet(): void;
  /** The handler for the next complete command in `reader`, or null if more input is needed. */
  protected abstract next(): (() => Promise<void> | void) | null;
  /** After STARTTLS: reset protocol state that was tied to the old reader. */
  protected onTlsStarted(): void {}
  /** Opens the upstream session for an authenticated user. */
  protected abstract openUpstream(username: string, client: ClientInfo): Promise<UpstreamSession>;
  /** How the session is carried once logged in: bytes as they are, unless a protocol must look. */
  protected async relayFor(_login: Granted): Promise<Relay> {
    return splice;
  }

  start(): void {
    this.attach(this.socket);
    if (!this.ctx.preauth.acquire(this.ip)) return this.close(this.words.tooManyConnections);
    this.holdsPreauth = true;
    this.ctx.preLogin.add(this);
    // The idle timeout alone is reset by every byte; this one is not.
    this.deadline = setTimeout(() => this.close(this.words.tooSlow), this.ctx.settings.preauthDeadlineMs);
    this.deadline.unref();
    this.idle = setTimeout(() => this.close(this.words.idle), this.ctx.settings.preauthTimeoutMs);
    this.idle.unref();
    this.greet();
  }

  private attach(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.idle?.refresh();
      this.reader.push(chunk);
      this.pump();
    });
    // A client that half-closes after its last command (printf … | nc -N) still gets the
    // answers to what it sent: the listeners allow half-open sockets, and the connection ends
    // once those commands are answered.
    socket.on('end', () => {
      this.clientEnded = true;
      this.pump();
    });
    socket.on('error', () => this.finish());
    socket.on('close', () => this.finish());
  }

  private detach(socket: Socket): void {
    for (const ev of ['data', 'end', 'close', 'error']) socket.removeAllListeners(ev);
  }

  protected get plaintextOk(): boolean {
    return this.secure || this.ctx.settings.plaintextAllowed(this.ip);
  }

  protected send(line: string): void {
    if (!this.done) this.socket.write(`${line}\r\n`);
  }

  /** Sends a last line and closes. */
  /**
   * Sends a last line and closes, after the line is out: a TLS connection ends with its
   * close_notify, so that the client reads the line instead of an unexpected EOF.
   */
  protected close(line: string): void {
    this.send(line);
    this.endGracefully();
  }

  private endGracefully(): void {
    if (this.done) return;
    this.done = true;
    this.releasePreauth();
    const socket = this.socket;
    const destroy = () => socket.destroy();
    // A client that never reads its last bytes cannot hold the connection.
    setTimeout(destroy, 2000).unref();
    socket.end(destroy);
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.releasePreauth();
    this.socket.destroy();
  }

  /** postern is shutting down: the client is told, and the connection closed. */
  shutdown(): void {
    this.close(this.words.shuttingDown);
  }

  private releasePreauth(): void {
    this.ctx.preLogin.delete(this);
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = null;
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    if (this.holdsPreauth) this.ctx.preauth.release(this.ip);
    this.holdsPreauth = false;
  }

  private pump(): void {
    while (!this.busy && !this.done && !this.handedOver) {
      let handler: (() => Promise<void> | void) | null;
      try {
        handler = this.next();
      } catch (err) {
        if (err instanceof LineTooLong) return this.close(this.words.lineTooLong);
        throw err;
      }
      if (!handler) {
        // Everything the client sent before it half-closed has been answered.
        if (this.clientEnded) this.endGracefully();
        return;
      }
      this.run(handler);
    }
  }

  /** Runs one handler with reading paused, so a slow login cannot be flooded with input. */
  private run(fn: () => Promise<void> | void): void {
    this.busy = true;
    this.socket.pause();
    Promise.resolve()
      .then(fn)
      .catch((err: unknown) => {
        this.ctx.log.error({ err: (err as Error).message, session: this.id, protocol: this.scope }, 'session error');
        this.close(this.words.internalError);
      })
      .finally(() => {
        this.busy = false;
        if (this.done || this.handedOver) return;
        this.socket.resume();
        this.pump();
      });
  }

  /** Switches to TLS after the protocol's go-ahead was sent. */
  protected startTls(): void {
    // Anything the client pipelined after STARTTLS came in clear: dropped, never obeyed.
    this.reader.drain();
    const raw = this.socket;
    this.detach(raw);
    raw.on('error', () => this.finish());
    this.socket = startTls(raw, this.ctx.tls);
    this.secure = true;
    this.reader = new LineReader(this.ctx.settings.maxLineLength);
    this.onTlsStarted();
    this.attach(this.socket);
  }

  /**
   * Asks the core, then opens the upstream and becomes a pipe. `ok` is sent to the client
   * once the upstream session is ready.
   */
  protected async login(username: string, password: string, ok: (up: UpstreamSession) => string, prefix = ''): Promise<void> {
    const { result, recorded } = await this.ctx.auth.decideAndRecord({
      username,
      secret: password,
      scope: this.scope,
      ip: this.ip,
      protocol: this.scope,
      sessionId: this.id,
      userAgent: this.clientName,
    });
    if (!result.ok) {
      await recorded;
      this.send(`${prefix}${this.words.refusal(result)}`);
      if (result.reason !== 'temporary_failure' && ++this.failures >= this.ctx.settings.maxAuthFailures) {
        this.close(this.words.tooManyFailures);
      }
      return;
    }
    // The upstream login runs while the audit event is written (a user waits for the longer of
    // the two, not for both); no answer goes out before the event is stored.
    const unrecorded = recorded.then(
      () => null,
      (err: unknown) => err as Error,
    );
    const answer = async (line: string) => {
      await unrecorded;
      this.send(`${prefix}${line}`);
    };
    const slot = `${this.scope}:${result.username}`;
    let taken: boolean;
    try {
      taken = await this.ctx.slots.acquire(slot, this.id, this.maxSessions);
    } catch {
      return answer(this.words.refusal(fail('temporary_failure')));
    }
    if (!taken) return answer(this.words.tooManySessions);
    const release = releaser(this.ctx.slots, slot, this.id);
    try {
      const relay = await this.relayFor(result);
      const up = await this.openUpstream(result.username, clientInfo(this.socket, this.id, this.peer));
      const notStored = await unrecorded;
      if (notStored) {
        up.socket.destroy();
        release();
        this.ctx.log.error(
          { err: notStored.message, session: this.id, user: result.username, protocol: this.scope },
          'login refused: its audit event could not be stored',
        );
        return answer(this.words.refusal(fail('temporary_failure')));
      }
      if (this.done) {
        up.socket.destroy();
        return release();
      }
      this.send(ok(up));
      this.handOver(result, up, relay, release);
    } catch (err) {
      release();
      this.ctx.onUpstreamError?.(this.scope);
      this.ctx.log.error({ err: (err as Error).message, session: this.id, user: result.username, protocol: this.scope }, 'upstream login failed');
      const noMailbox = err instanceof PosternError && err.code === 'no_mailbox';
      await answer(noMailbox ? this.words.noMailbox : this.words.upstreamDown);
    }
  }

  /**
   * Becomes a byte pipe. A method of its own so that the closures the relayed session keeps
   * alive share no scope with the login's: they capture what they use by value, and the
   * session object itself is let go (an idle session's memory is mostly these closures).
   */
  private handOver(result: Granted, up: UpstreamSession, relay: Relay, release: () => void): void {
    this.handedOver = true;
    this.releasePreauth();
    this.detach(this.socket);
    const { ctx, scope, words } = this;
    ctx.onSession?.(scope, 1);
    const client = this.socket;
    const upstream = up.socket;
    const unregister = ctx.live.add(result.grant, result.username, this.id, (why) =>
      endRelayed(client, upstream, why === 'shutdown' ? words.shuttingDown : words.credentialChanged),
    );
    relay(
      client,
      up,
      this.reader.drain(),
      () => {
        ctx.onSession?.(scope, -1);
        unregister();
        release();
      },
      this.clientEnded,
    );
    client.resume();
  }
}

/**
 * Gives the session slot back, once. Made out here, so that the closure a relayed session
 * keeps captures these three values and not the scope of the login that took the slot.
 */
function releaser(slots: FrontendContext['slots'], slot: string, id: string): () => void {
  let called = false;
  return () => {
    if (!called) void slots.release(slot, id).catch(() => undefined);
    called = true;
  };
}
