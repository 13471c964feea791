import type { Socket } from 'node:net';
import type { FrontendContext } from '../context.js';
import type { ProxiedPeer } from '../proxy-protocol.js';
import { PreauthSession, type Refusal, type SessionWords } from '../preauth-session.js';
import { SaslExchange, saslMechanism } from '../sasl.js';
import type { ClientInfo } from '../upstream/mail-upstream.js';

const MAX_BAD_COMMANDS = 10;
const PLAINTEXT_REFUSED = '-ERR [AUTH] Plaintext authentication is disallowed on non-secure connections, use STLS';

/** POP3 answer for a refused login, with RFC 2449/3206 response codes. */
export function pop3Refusal(r: Refusal): string {
  if (r.reason === 'locked') return `-ERR [LOGIN-DELAY] Too many failed attempts, try again in ${r.retryAfter ?? 60} seconds`;
  if (r.reason === 'temporary_failure') return '-ERR [SYS/TEMP] Temporary authentication failure, try again later';
  return `-ERR [AUTH] ${r.message}`;
}

const WORDS: SessionWords = {
  tooManyConnections: '-ERR [SYS/TEMP] Too many connections from your address',
  idle: '-ERR Disconnected for inactivity.',
  tooSlow: '-ERR Took too long to log in.',
  credentialChanged: '-ERR [AUTH] Your credentials changed: log in again.',
  shuttingDown: '-ERR [SYS/TEMP] Server shutting down, reconnect in a moment.',
  lineTooLong: '-ERR Line too long.',
  tooManyFailures: '-ERR Too many invalid authentication attempts',
  internalError: '-ERR Internal error.',
  tooManySessions: '-ERR [IN-USE] Too many simultaneous POP3 sessions for this account',
  upstreamDown: '-ERR [SYS/TEMP] Mail server is unavailable, try again later',
  noMailbox: '-ERR [AUTH] The mail server has no mailbox for this account: ask your administrator',
  refusal: pop3Refusal,
};

/** POP3 (RFC 1939, 2449, 5034) before login: CAPA, STLS, USER/PASS, AUTH, QUIT. */
export class Pop3Session extends PreauthSession {
  private user: string | null = null;
  private sasl: SaslExchange | null = null;
  private bad = 0;

  constructor(ctx: FrontendContext, maxSessions: number, socket: Socket, secure: boolean, peer: ProxiedPeer | null = null) {
    super(ctx, maxSessions, WORDS, 'pop3', socket, secure, peer);
  }

  protected greet(): void {
    this.send(`+OK ${this.ctx.settings.hostname} postern ready.`);
  }

  protected openUpstream(username: string, client: ClientInfo) {
    return this.ctx.upstream.pop3(username, client);
  }

  protected next(): (() => Promise<void> | void) | null {
    const line = this.reader.line();
    if (line === null) return null;
    return () => (this.sasl ? this.saslStep(line) : this.handle(line));
  }

  private capa(): string[] {
    const lines = ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'IMPLEMENTATION postern'];
    if (!this.secure) lines.push('STLS');
    if (this.plaintextOk) lines.push('USER', 'SASL PLAIN LOGIN');
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
        return this.close('+OK Logging out');
      case 'NOOP':
        return this.send('+OK');
      case 'STLS':
        if (this.secure) return this.send('-ERR TLS is already active');
        this.send('+OK Begin TLS negotiation');
        return this.startTls();
      case 'USER':
        if (!this.plaintextOk) return this.send(PLAINTEXT_REFUSED);
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
        if (++this.bad >= MAX_BAD_COMMANDS) this.close('-ERR Too many invalid commands');
    }
  }

  private async auth(arg: string): Promise<void> {
    const [name = '', initial] = arg.split(' ');
    if (!name) return this.send(['+OK', 'PLAIN', 'LOGIN', '.'].join('\r\n'));
    const mech = saslMechanism(name);
    if (!mech) return this.send('-ERR Unsupported authentication mechanism');
    if (!this.plaintextOk) return this.send(PLAINTEXT_REFUSED);
    this.sasl = new SaslExchange(mech);
    if (initial !== undefined) return this.saslStep(initial === '=' ? '' : initial);
    this.send(`+ ${this.sasl.first()}`);
  }

  private async saslStep(line: string): Promise<void> {
    const step = this.sasl!.step(line);
    if (step.kind === 'challenge') return this.send(`+ ${step.text}`);
    this.sasl = null;
    if (step.kind === 'canceled') return this.send('-ERR Authentication canceled');
    if (step.kind === 'invalid') return this.send(`-ERR ${step.message}`);
    await this.tryLogin(step.username, step.password);
  }

  private tryLogin(username: string, password: string): Promise<void> {
    return this.login(username, password, () => '+OK Logged in.');
  }
}

export function pop3SessionFactory(ctx: FrontendContext, maxSessionsPerUser: number) {
  return (socket: Socket, secure: boolean, peer: ProxiedPeer | null) => new Pop3Session(ctx, maxSessionsPerUser, socket, secure, peer).start();
}
