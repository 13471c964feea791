import type { Socket } from 'node:net';
import type { FrontendContext } from '../context.js';
import type { ProxiedPeer } from '../proxy-protocol.js';
import { PreauthSession, type Granted, type Refusal, type Relay, type SessionWords } from '../preauth-session.js';
import { SaslExchange, saslMechanism } from '../sasl.js';
import type { ClientInfo } from '../upstream/mail-upstream.js';
import { inspectableCapabilities, spliceEncrypting } from './encrypting-relay.js';
import { ImapCommandAssembler, ImapSyntaxError, type ImapArg, type ImapCommand } from './imap-command.js';

const BASE_CAPS = 'IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+';
const MAX_BAD_COMMANDS = 10;
const NEED_LOGIN = new Set(['SELECT', 'EXAMINE', 'LIST', 'LSUB', 'STATUS', 'FETCH', 'APPEND', 'ENABLE', 'IDLE', 'CREATE']);

/** IMAP answer for a refused login (RFC 5530 codes): faults never look like a wrong password. */
export function imapRefusal(r: Refusal): string {
  if (r.reason === 'locked') return `NO [LIMIT] Too many failed attempts, try again in ${r.retryAfter ?? 60} seconds`;
  if (r.reason === 'temporary_failure') return 'NO [UNAVAILABLE] Temporary authentication failure, try again later';
  return `NO [AUTHENTICATIONFAILED] ${r.message}`;
}

const WORDS: SessionWords = {
  tooManyConnections: '* BYE Too many connections from your address, try again later',
  idle: '* BYE Disconnected for inactivity.',
  tooSlow: '* BYE Took too long to log in.',
  credentialChanged: '* BYE Your credentials changed: log in again.',
  shuttingDown: '* BYE [UNAVAILABLE] Server shutting down, reconnect in a moment.',
  lineTooLong: '* BYE Line too long.',
  tooManyFailures: '* BYE Too many invalid authentication attempts.',
  internalError: '* BYE Internal error.',
  tooManySessions: 'NO [IN-USE] Too many simultaneous IMAP sessions for this account, close one first.',
  upstreamDown: 'NO [UNAVAILABLE] Mail server is unavailable, try again later',
  noMailbox: 'NO [AUTHORIZATIONFAILED] The mail server has no mailbox for this account: ask your administrator',
  refusal: imapRefusal,
};

type SaslState = { tag: string; exchange: SaslExchange };

/** IMAP (RFC 9051/3501) before login: CAPABILITY, ID, STARTTLS, LOGIN, AUTHENTICATE, LOGOUT. */
export class ImapSession extends PreauthSession {
  private assembler: ImapCommandAssembler;
  private sasl: SaslState | null = null;
  private badCommands = 0;
  /** The user's uploads are sealed with PGP on the way to the upstream. */
  private sealing = false;

  constructor(ctx: FrontendContext, maxSessions: number, socket: Socket, secure: boolean, peer: ProxiedPeer | null = null) {
    super(ctx, maxSessions, WORDS, 'imap', socket, secure, peer);
    this.assembler = this.newAssembler();
  }

  private newAssembler() {
    const s = this.ctx.settings;
    return new ImapCommandAssembler(this.reader, s.maxLiteralSize, s.maxLineLength);
  }

  protected override onTlsStarted(): void {
    this.assembler = this.newAssembler();
  }

  protected greet(): void {
    this.send(`* OK [CAPABILITY ${this.capabilities()}] ${this.ctx.settings.hostname} postern ready.`);
  }

  protected openUpstream(username: string, client: ClientInfo) {
    return this.ctx.upstream.imap(username, client);
  }

  protected override async relayFor(login: Granted): Promise<Relay> {
    const key = login.encryptTo;
    this.sealing = key !== null;
    if (key === null) return super.relayFor(login);
    const settings = {
      maxMessageSize: this.ctx.settings.maxAppendSize,
      seal: (raw: Buffer) => this.ctx.seal(key, raw),
      budget: this.ctx.uploads,
    };
    return (client, up, pending, onClose, clientEnded) => spliceEncrypting(client, up, pending, settings, onClose, clientEnded);
  }

  private capabilities(): string {
    if (this.secure) return `${BASE_CAPS} AUTH=PLAIN AUTH=LOGIN`;
    return `${BASE_CAPS} STARTTLS ${this.plaintextOk ? 'AUTH=PLAIN AUTH=LOGIN' : 'LOGINDISABLED'}`;
  }

  protected next(): (() => Promise<void> | void) | null {
    for (;;) {
      if (this.sasl) {
        const line = this.reader.line();
        return line === null ? null : () => this.saslStep(line);
      }
      try {
        const step = this.assembler.next();
        if (step.kind === 'need-more') return null;
        if (step.kind === 'continue') {
          this.send('+ Ready for literal data');
          continue;
        }
        return () => this.handle(step.command);
      } catch (err) {
        if (!(err instanceof ImapSyntaxError)) throw err;
        this.send(`${err.tag} BAD ${err.message}`);
        if (++this.badCommands >= MAX_BAD_COMMANDS) return () => this.close('* BYE Too many invalid commands.');
      }
    }
  }

  private async handle(cmd: ImapCommand): Promise<void> {
    const { tag } = cmd;
    switch (cmd.name) {
      case 'CAPABILITY':
        this.send(`* CAPABILITY ${this.capabilities()}`);
        return this.send(`${tag} OK Capability completed.`);
      case 'NOOP':
        return this.send(`${tag} OK NOOP completed.`);
      case 'ID':
        this.clientName = clientIdName(cmd.args[0]);
        this.send('* ID ("name" "postern")');
        return this.send(`${tag} OK ID completed.`);
      case 'LOGOUT':
        this.send('* BYE Logging out');
        return this.close(`${tag} OK Logout completed.`);
      case 'STARTTLS':
        if (this.secure) return this.send(`${tag} BAD TLS is already active.`);
        this.send(`${tag} OK Begin TLS negotiation now.`);
        return this.startTls();
      case 'LOGIN':
        return this.loginCommand(tag, cmd.args);
      case 'AUTHENTICATE':
        return this.authenticate(tag, cmd.args);
      default:
        if (NEED_LOGIN.has(cmd.name)) return this.send(`${tag} BAD Please log in first.`);
        this.send(`${tag} BAD Unknown command.`);
        if (++this.badCommands >= MAX_BAD_COMMANDS) this.close('* BYE Too many invalid commands.');
    }
  }

  private privacyRequired(tag: string): boolean {
    if (this.plaintextOk) return false;
    this.send(`${tag} NO [PRIVACYREQUIRED] Plaintext authentication is disallowed on non-secure connections.`);
    return true;
  }

  private async loginCommand(tag: string, args: ImapArg[]): Promise<void> {
    const [user, pass] = args;
    if (args.length !== 2 || typeof user !== 'string' || typeof pass !== 'string') {
      return this.send(`${tag} BAD LOGIN expects a username and a password.`);
    }
    if (!this.privacyRequired(tag)) await this.tryLogin(tag, user, pass);
  }

  private async authenticate(tag: string, args: ImapArg[]): Promise<void> {
    const mech = saslMechanism(typeof args[0] === 'string' ? args[0] : '');
    if (!mech) return this.send(`${tag} NO [CANNOT] Unsupported authentication mechanism.`);
    if (this.privacyRequired(tag)) return;
    this.sasl = { tag, exchange: new SaslExchange(mech) };
    const initial = args[1];
    if (typeof initial === 'string') return this.saslStep(initial === '=' ? '' : initial);
    this.send(`+ ${this.sasl.exchange.first()}`);
  }

  private async saslStep(line: string): Promise<void> {
    const { tag, exchange } = this.sasl!;
    const step = exchange.step(line);
    if (step.kind === 'challenge') return this.send(`+ ${step.text}`);
    this.sasl = null;
    if (step.kind === 'canceled') return this.send(`${tag} BAD Authentication canceled.`);
    if (step.kind === 'invalid') return this.send(`${tag} BAD ${step.message}.`);
    await this.tryLogin(tag, step.username, step.password);
  }

  private tryLogin(tag: string, username: string, password: string): Promise<void> {
    // COMPRESS passes through only when nothing after login is read.
    const caps = (up: { capabilities: string }) => (this.sealing ? inspectableCapabilities(up.capabilities) : up.capabilities);
    return this.login(username, password, (up) => `${tag} OK [CAPABILITY ${caps(up)}] Logged in`, `${tag} `);
  }
}

/** "Thunderbird/128.0" from an ID list ("name" "Thunderbird" "version" "128.0" ...), bounded. */
function clientIdName(list: ImapArg | undefined): string | undefined {
  if (!Array.isArray(list)) return undefined;
  const fields = new Map<string, string>();
  for (let i = 0; i + 1 < list.length; i += 2) {
    const k = list[i];
    const v = list[i + 1];
    if (typeof k === 'string' && typeof v === 'string') fields.set(k.toLowerCase(), v);
  }
  const name = [fields.get('name'), fields.get('version')].filter(Boolean).join('/');
  return name ? name.replace(/[^\x20-\x7e]/g, '?').slice(0, 120) : undefined;
}

export function imapSessionFactory(ctx: FrontendContext, maxSessionsPerUser: number) {
  return (socket: Socket, secure: boolean, peer: ProxiedPeer | null) => new ImapSession(ctx, maxSessionsPerUser, socket, secure, peer).start();
}
