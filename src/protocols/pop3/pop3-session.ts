import type { Socket } from 'node:net';
import type { AuthResult } from '../../core/types.js';
import { clientInfo, newSessionId, splice, startTls, type FrontendContext } from '../frontend.js';
import { ConnectionCounter } from '../limits.js';
import { LineReader, LineTooLong } from '../line-reader.js';
import { b64, decodeBase64Line, decodePlain } from '../sasl.js';

const MAX_BAD_COMMANDS = 10;

/** POP3 answer for a refused login, with RFC 2449/3206 response codes. */
export function pop3Refusal(r: Extract<AuthResult, { ok: false }>): string {
  if (r.reason === 'locked') return `-ERR [LOGIN-DELAY] Too many failed attempts, try again in ${r.retryAfter ?? 60} seconds`;
  if (r.reason === 'temporary_failure') return '-ERR [SYS/TEMP] Temporary authentication failure, try again later';
  return `-ERR [AUTH] ${r.message}`;
}

type Sasl = { mech: 'PLAIN' | 'LOGIN'; username?: string };

/** One POP3 client before login (RFC 1939, 2449, 5034); afterwards a pipe to the upstream. */
export class Pop3Session {
  private socket: Socket;
  private secure: boolean;
  private reader: LineReader;
  private user: string | null = null;
  private sasl: Sasl | null = null;
  private busy = false;
  private done = false;
  private handedOver = false;
  private failures = 0;
  private bad = 0;
  private holdsPreauth = false;
  private readonly id = newSessionId();
  private readonly ip: string;

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
  }

  start(): void {
    this.attach(this.socket);
    if (!this.ctx.preauth.acquire(this.ip)) return this.quit('-ERR [SYS/TEMP] Too many connections from your address');
    this.holdsPreauth = true;
    this.send(`+OK ${this.ctx.settings.hostname} postern ready.`);
  }

  private attach(socket: Socket): void {
    socket.setTimeout(this.ctx.settings.preauthTimeoutMs);
    socket.on('timeout', () => this.quit('-ERR Disconnected for inactivity.'));
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      this.pump();
    });
    socket.on('error', () => this.finish());
    socket.on('close', () => this.finish());
  }

  private plaintextOk(): boolean {
    return this.secure || this.ctx.settings.plaintextAllowed(this.ip);
  }

  private send(line: string): void {
    if (!this.done) this.socket.write(`${line}\r\n`);
  }

  private quit(line: string): void {
    this.send(line);
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

  private pump(): void {
    while (!this.busy && !this.done) {
      let line: string | null;
      try {
        line = this.reader.line();
      } catch (err) {
        if (err instanceof LineTooLong) return this.quit('-ERR Line too long.');
        throw err;
      }
      if (line === null) return;
      const l = line;
      this.busy = true;
      this.socket.pause();
      Promise.resolve()
        .then(() => (this.sasl ? this.saslStep(l) : this.handle(l)))
        .catch((err: unknown) => {
          this.ctx.log.error({ err: (err as Error).message, session: this.id }, 'pop3 session error');
          this.quit('-ERR Internal error.');
        })
        .finally(() => {
          this.busy = false;
          if (!this.done && !this.handedOver) {
            this.socket.resume();
            this.pump();
          }
        });
    }
  }

  private capa(): string[] {
    const lines = ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'IMPLEMENTATION postern'];
    if (!this.secure) lines.push('STLS');
    if (this.plaintextOk()) lines.push('USER', 'SASL PLAIN LOGIN');
    return lines;
  }

  private async handle(line: string): Promise<void> {
    const sp = line.indexOf(' ');
    const cmd = (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
    const arg = sp < 0 ? '' : line.slice(sp + 1);
    switch (cmd) {
      case 'CAPA':
        return this.send(['+OK Capability list follows', ...this.capa(), '.'].join('\r\n'));
      case 'QUIT':
        return this.quit('+OK Logging out');
      case 'NOOP':
        return this.send('+OK');
      case 'STLS':
        return this.stls();
      case 'USER':
        if (!this.plaintextOk()) return this.send('-ERR [AUTH] Plaintext authentication is disallowed on non-secure connections, use STLS');
        if (!arg) return this.send('-ERR USER needs a name');
        this.user = arg;
        return this.send('+OK');
      case 'PASS': {
        if (this.user === null) return this.send('-ERR USER first');
        const user = this.user;
        this.user = null;
        return this.tryLogin(user, arg);
      }
      case 'AUTH':
        return this.auth(arg);
      default:
        this.send('-ERR Unknown command or not logged in');
        if (++this.bad >= MAX_BAD_COMMANDS) this.quit('-ERR Too many invalid commands');
    }
  }

  private stls(): void {
    if (this.secure) return this.send('-ERR TLS is already active');
    this.send('+OK Begin TLS negotiation');
    // Bytes pipelined after STLS came in clear: dropped, never obeyed.
    this.reader.drain();
    const raw = this.socket;
    for (const ev of ['data', 'timeout', 'close', 'error']) raw.removeAllListeners(ev);
    raw.on('error', () => this.finish());
    this.socket = startTls(raw, this.ctx.tls);
    this.secure = true;
    this.reader = new LineReader(this.ctx.settings.maxLineLength);
    this.attach(this.socket);
  }

  private async auth(arg: string): Promise<void> {
    const [mechRaw = '', initial] = arg.split(' ');
    const mech = mechRaw.toUpperCase();
    if (!mech) return this.send(['+OK', 'PLAIN', 'LOGIN', '.'].join('\r\n'));
    if (mech !== 'PLAIN' && mech !== 'LOGIN') return this.send('-ERR Unsupported authentication mechanism');
    if (!this.plaintextOk()) return this.send('-ERR [AUTH] Plaintext authentication is disallowed on non-secure connections, use STLS');
    this.sasl = { mech };
    if (initial !== undefined) return this.saslStep(initial === '=' ? '' : initial);
    this.send(mech === 'PLAIN' ? '+ ' : `+ ${b64('Username:')}`);
  }

  private async saslStep(line: string): Promise<void> {
    const state = this.sasl!;
    if (line.trim() === '*') {
      this.sasl = null;
      return this.send('-ERR Authentication canceled');
    }
    if (state.mech === 'PLAIN') {
      this.sasl = null;
      const creds = decodePlain(line);
      if (!creds) return this.send('-ERR Invalid SASL PLAIN response');
      return this.tryLogin(creds.username, creds.password);
    }
    const value = decodeBase64Line(line);
    if (value === null) {
      this.sasl = null;
      return this.send('-ERR Invalid base64 data');
    }
    if (state.username === undefined) {
      state.username = value;
      return this.send(`+ ${b64('Password:')}`);
    }
    this.sasl = null;
    await this.tryLogin(state.username, value);
  }

  private async tryLogin(username: string, password: string): Promise<void> {
    const result = await this.ctx.auth.authenticate({ username, secret: password, scope: 'pop3', ip: this.ip, protocol: 'pop3', sessionId: this.id });
    if (!result.ok) {
      this.send(pop3Refusal(result));
      if (result.reason !== 'temporary_failure' && ++this.failures >= this.ctx.settings.maxAuthFailures) {
        this.quit('-ERR Too many invalid authentication attempts');
      }
      return;
    }
    if (!this.sessions.acquire(result.username)) {
      return this.send('-ERR [IN-USE] Too many simultaneous POP3 sessions for this account');
    }
    try {
      const up = await this.ctx.upstream.pop3(result.username, clientInfo(this.socket, this.id));
      if (this.done) {
        up.socket.destroy();
        return this.sessions.release(result.username);
      }
      this.send('+OK Logged in.');
      this.handedOver = true;
      if (this.holdsPreauth) this.ctx.preauth.release(this.ip);
      this.holdsPreauth = false;
      for (const ev of ['data', 'timeout', 'close', 'error']) this.socket.removeAllListeners(ev);
      splice(this.socket, up, this.reader.drain(), () => {
        this.done = true;
        this.sessions.release(result.username);
      });
      this.socket.resume();
    } catch (err) {
      this.sessions.release(result.username);
      this.ctx.log.error({ err: (err as Error).message, session: this.id, user: result.username }, 'pop3 upstream login failed');
      this.send('-ERR [SYS/TEMP] Mail server is unavailable, try again later');
    }
  }
}

export function pop3SessionFactory(ctx: FrontendContext, maxSessionsPerUser: number) {
  const sessions = new ConnectionCounter(maxSessionsPerUser);
  return (socket: Socket, secure: boolean) => new Pop3Session(ctx, sessions, socket, secure).start();
}
