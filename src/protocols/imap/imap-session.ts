import type { Socket } from 'node:net';
import type { AuthResult } from '../../core/types.js';
import { clientInfo, newSessionId, splice, startTls, type FrontendContext } from '../frontend.js';
import { ConnectionCounter } from '../limits.js';
import { LineReader, LineTooLong } from '../line-reader.js';
import { b64, decodeBase64Line, decodePlain } from '../sasl.js';
import { ImapCommandAssembler, ImapSyntaxError, type ImapArg, type ImapCommand } from './imap-command.js';

const BASE_CAPS = 'IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+';
const MAX_BAD_COMMANDS = 10;

/** IMAP answer for a refused login (RFC 5530 codes): faults never look like a wrong password. */
export function imapRefusal(r: Extract<AuthResult, { ok: false }>): string {
  if (r.reason === 'locked') return `NO [LIMIT] Too many failed attempts, try again in ${r.retryAfter ?? 60} seconds`;
  if (r.reason === 'temporary_failure') return 'NO [UNAVAILABLE] Temporary authentication failure, try again later';
  return `NO [AUTHENTICATIONFAILED] ${r.message}`;
}

type SaslState = { tag: string; mech: 'PLAIN' | 'LOGIN'; username?: string };

/** One client connection before login; after login it becomes a byte pipe to the upstream. */
export class ImapSession {
  private socket: Socket;
  private secure: boolean;
  private reader: LineReader;
  private assembler: ImapCommandAssembler;
  private sasl: SaslState | null = null;
  private busy = false;
  private done = false;
  private failures = 0;
  private badCommands = 0;
  private readonly id = newSessionId();
  private readonly ip: string;
  private holdsPreauth = false;

  constructor(
    private readonly ctx: FrontendContext,
    private readonly sessions: ConnectionCounter,
    socket: Socket,
    secure: boolean,
  ) {
    this.socket = socket;
    this.secure = secure;
    this.ip = clientInfo(socket, this.id).ip;
    this.reader = new LineReader(ctx.settings.maxLineLength);
    this.assembler = this.newAssembler();
  }

  private newAssembler() {
    const s = this.ctx.settings;
    return new ImapCommandAssembler(this.reader, s.maxLiteralSize, s.maxLineLength);
  }

  start(): void {
    this.attach(this.socket);
    if (!this.ctx.preauth.acquire(this.ip)) {
      this.bye('Too many connections from your address, try again later');
      return;
    }
    this.holdsPreauth = true;
    this.send(`* OK [CAPABILITY ${this.capabilities()}] ${this.ctx.settings.hostname} postern ready.`);
  }

  private attach(socket: Socket): void {
    socket.setTimeout(this.ctx.settings.preauthTimeoutMs);
    socket.on('timeout', () => this.bye('Disconnected for inactivity.'));
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      this.pump();
    });
    socket.on('error', () => this.finish());
    socket.on('close', () => this.finish());
  }

  private capabilities(): string {
    if (this.secure) return `${BASE_CAPS} AUTH=PLAIN AUTH=LOGIN`;
    const auth = this.plaintextOk() ? 'AUTH=PLAIN AUTH=LOGIN' : 'LOGINDISABLED';
    return `${BASE_CAPS} STARTTLS ${auth}`;
  }

  private plaintextOk(): boolean {
    return this.secure || this.ctx.settings.plaintextAllowed(this.ip);
  }

  private send(line: string): void {
    if (!this.done) this.socket.write(`${line}\r\n`);
  }

  private bye(text: string): void {
    this.send(`* BYE ${text}`);
    this.socket.end();
    this.finish();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    if (this.holdsPreauth) this.ctx.preauth.release(this.ip);
    this.holdsPreauth = false;
    this.socket.destroy();
  }

  /** Handles every complete command in the buffer, one at a time. */
  private pump(): void {
    while (!this.busy && !this.done) {
      try {
        if (this.sasl) {
          const line = this.reader.line();
          if (line === null) return;
          this.run(() => this.saslStep(line));
          continue;
        }
        const step = this.assembler.next();
        if (step.kind === 'need-more') return;
        if (step.kind === 'continue') {
          this.send('+ Ready for literal data');
          continue;
        }
        this.run(() => this.handle(step.command));
      } catch (err) {
        if (err instanceof LineTooLong) return this.bye('Line too long.');
        if (err instanceof ImapSyntaxError) {
          this.send(`${err.tag} BAD ${err.message}`);
          if (++this.badCommands >= MAX_BAD_COMMANDS) return this.bye('Too many invalid commands.');
          continue;
        }
        throw err;
      }
    }
  }

  /** Runs a handler with reading paused, so a slow login cannot be flooded with input. */
  private run(fn: () => Promise<void> | void): void {
    this.busy = true;
    this.socket.pause();
    Promise.resolve()
      .then(fn)
      .catch((err: unknown) => {
        this.ctx.log.error({ err: (err as Error).message, session: this.id }, 'imap session error');
        this.bye('Internal error.');
      })
      .finally(() => {
        this.busy = false;
        if (!this.done && !this.handedOver) {
          this.socket.resume();
          this.pump();
        }
      });
  }

  private handedOver = false;

  private async handle(cmd: ImapCommand): Promise<void> {
    const { tag } = cmd;
    switch (cmd.name) {
      case 'CAPABILITY':
        this.send(`* CAPABILITY ${this.capabilities()}`);
        return this.send(`${tag} OK Capability completed.`);
      case 'NOOP':
        return this.send(`${tag} OK NOOP completed.`);
      case 'ID':
        this.send(`* ID ("name" "postern")`);
        return this.send(`${tag} OK ID completed.`);
      case 'LOGOUT':
        this.send('* BYE Logging out');
        this.send(`${tag} OK Logout completed.`);
        this.socket.end();
        return this.finish();
      case 'STARTTLS':
        return this.startTls(tag);
      case 'LOGIN':
        return this.login(tag, cmd.args);
      case 'AUTHENTICATE':
        return this.authenticate(tag, cmd.args);
      case 'SELECT': case 'EXAMINE': case 'LIST': case 'STATUS': case 'FETCH': case 'APPEND': case 'ENABLE':
        return this.send(`${tag} BAD Please log in first.`);
      default:
        this.send(`${tag} BAD Unknown command.`);
        if (++this.badCommands >= MAX_BAD_COMMANDS) this.bye('Too many invalid commands.');
    }
  }

  private startTls(tag: string): void {
    if (this.secure) return this.send(`${tag} BAD TLS is already active.`);
    this.send(`${tag} OK Begin TLS negotiation now.`);
    // Anything the client pipelined after STARTTLS was sent in clear: it must not be obeyed.
    this.reader.drain();
    const raw = this.socket;
    raw.removeAllListeners('data');
    raw.removeAllListeners('timeout');
    raw.removeAllListeners('close');
    raw.removeAllListeners('error');
    raw.on('error', () => this.finish());
    this.socket = startTls(raw, this.ctx.tls);
    this.secure = true;
    this.reader = new LineReader(this.ctx.settings.maxLineLength);
    this.assembler = this.newAssembler();
    this.attach(this.socket);
  }

  private async login(tag: string, args: ImapArg[]): Promise<void> {
    const [user, pass] = args;
    if (args.length !== 2 || typeof user !== 'string' || typeof pass !== 'string') {
      return this.send(`${tag} BAD LOGIN expects a username and a password.`);
    }
    if (!this.plaintextOk()) {
      return this.send(`${tag} NO [PRIVACYREQUIRED] Plaintext authentication is disallowed on non-secure connections.`);
    }
    await this.tryLogin(tag, user, pass);
  }

  private async authenticate(tag: string, args: ImapArg[]): Promise<void> {
    const mech = typeof args[0] === 'string' ? args[0].toUpperCase() : '';
    if (mech !== 'PLAIN' && mech !== 'LOGIN') return this.send(`${tag} NO [CANNOT] Unsupported authentication mechanism.`);
    if (!this.plaintextOk()) {
      return this.send(`${tag} NO [PRIVACYREQUIRED] Plaintext authentication is disallowed on non-secure connections.`);
    }
    this.sasl = { tag, mech };
    const initial = args[1];
    if (typeof initial === 'string') return this.saslStep(initial === '=' ? '' : initial);
    this.send(mech === 'PLAIN' ? '+ ' : `+ ${b64('Username:')}`);
  }

  private async saslStep(line: string): Promise<void> {
    const state = this.sasl!;
    if (line.trim() === '*') {
      this.sasl = null;
      return this.send(`${state.tag} BAD Authentication canceled.`);
    }
    if (state.mech === 'PLAIN') {
      this.sasl = null;
      const creds = decodePlain(line);
      if (!creds) return this.send(`${state.tag} BAD Invalid SASL PLAIN response.`);
      return this.tryLogin(state.tag, creds.username, creds.password);
    }
    const value = decodeBase64Line(line);
    if (value === null) {
      this.sasl = null;
      return this.send(`${state.tag} BAD Invalid base64 data.`);
    }
    if (state.username === undefined) {
      state.username = value;
      return this.send(`+ ${b64('Password:')}`);
    }
    this.sasl = null;
    await this.tryLogin(state.tag, state.username, value);
  }

  private async tryLogin(tag: string, username: string, password: string): Promise<void> {
    const result = await this.ctx.auth.authenticate({
      username,
      secret: password,
      scope: 'imap',
      ip: this.ip,
      protocol: 'imap',
      sessionId: this.id,
    });
    if (!result.ok) {
      this.send(`${tag} ${imapRefusal(result)}`);
      if (result.reason !== 'temporary_failure' && ++this.failures >= this.ctx.settings.maxAuthFailures) {
        this.bye('Too many invalid authentication attempts.');
      }
      return;
    }
    if (!this.sessions.acquire(result.username)) {
      return this.send(`${tag} NO [IN-USE] Too many simultaneous IMAP sessions for this account, close one first.`);
    }
    let released = false;
    const release = () => {
      if (!released) this.sessions.release(result.username);
      released = true;
    };
    try {
      const up = await this.ctx.upstream.imap(result.username, clientInfo(this.socket, this.id));
      if (this.done) {
        up.socket.destroy();
        return release();
      }
      this.send(`${tag} OK [CAPABILITY ${up.capabilities}] Logged in`);
      this.handedOver = true;
      if (this.holdsPreauth) this.ctx.preauth.release(this.ip);
      this.holdsPreauth = false;
      this.socket.removeAllListeners('data');
      this.socket.removeAllListeners('timeout');
      this.socket.removeAllListeners('close');
      this.socket.removeAllListeners('error');
      splice(this.socket, up, this.reader.drain(), () => {
        this.done = true;
        release();
      });
      this.socket.resume();
    } catch (err) {
      release();
      this.ctx.log.error({ err: (err as Error).message, session: this.id, user: result.username }, 'imap upstream login failed');
      this.send(`${tag} NO [UNAVAILABLE] Mail server is unavailable, try again later`);
    }
  }
}

export function imapSessionFactory(ctx: FrontendContext, maxSessionsPerUser: number) {
  const sessions = new ConnectionCounter(maxSessionsPerUser);
  return (socket: Socket, secure: boolean) => new ImapSession(ctx, sessions, socket, secure).start();
}
