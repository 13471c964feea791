import { PosternError } from '../../core/errors.js';
import type { Socket } from 'node:net';
import { proxyHeader } from '../proxy-protocol.js';
import { b64 } from '../sasl.js';
import { UpstreamConnection, upstreamDown, type Endpoint, type UpstreamReader, type UpstreamTls } from './connection.js';
import { SpareConnections } from './spares.js';

export interface UpstreamSettings {
  /** Dovecot: IMAP, POP3 and LMTP. */
  host: string;
  /** The relay for submitted mail. */
  smtpHost: string;
  imapPort: number;
  pop3Port: number;
  timeoutMs: number;
  /** authzid: SASL PLAIN as (user, master, pw); separator: (`user*master`, pw). */
  login: 'authzid' | 'separator';
  masterUser: string;
  masterPassword: string;
  separator: string;
  tls: UpstreamTls;
  /** A PROXY protocol header first on every IMAP and POP3 connection (Dovecot's haproxy listeners). */
  proxyProtocol: 'off' | 'v1' | 'v2';
  /** Greeted connections kept ready per protocol (none with the PROXY protocol: its header names the client). */
  spareConnections: number;
}

export interface ClientInfo {
  ip: string;
  port: number;
  localIp: string;
  localPort: number;
  sessionId: string;
}

export interface UpstreamSession {
  socket: Socket;
  /** Bytes the upstream sent after the login answer, to pass on first. */
  pending: Buffer;
  /** Where the upstream's bytes go from now on (not the socket's 'data' events, which may never come). */
  read: UpstreamReader;
  /** IMAP: the capabilities as the upstream sees them after login. */
  capabilities: string;
}

const imapQuote = (s: string) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

/** Logs in to the upstream as the user, on the master credentials postern holds. */
export class MailUpstream {
  private readonly spares: { imap: SpareConnections; pop3: SpareConnections } | null;

  constructor(private readonly s: UpstreamSettings) {
    const keep = s.proxyProtocol === 'off' ? s.spareConnections : 0;
    this.spares =
      keep > 0
        ? { imap: new SpareConnections(() => this.greeted('imap', null), keep), pop3: new SpareConnections(() => this.greeted('pop3', null), keep) }
        : null;
  }

  /** Closes the spare connections (postern is stopping). */
  close(): void {
    this.spares?.imap.close();
    this.spares?.pop3.close();
  }

  /** A connection to the IMAP or POP3 port, greeted and (with STARTTLS) upgraded: ready for the login. */
  private async greeted(kind: 'imap' | 'pop3', client: ClientInfo | null): Promise<UpstreamConnection> {
    const port = kind === 'imap' ? this.s.imapPort : this.s.pop3Port;
    const conn = await UpstreamConnection.open(client ? this.mailEndpoint(port, client) : this.endpoint(port));
    try {
      const greeting = await conn.line();
      if (kind === 'imap') {
        if (!greeting.startsWith('* OK')) throw upstreamDown(`IMAP greeting "${greeting.slice(0, 80)}"`);
        if (conn.startTlsWanted) {
          conn.write('P0 STARTTLS\r\n');
          const { tagged } = await this.imapTagged(conn, 'P0');
          if (!/^P0 OK/i.test(tagged)) throw upstreamDown(`IMAP STARTTLS refused: ${tagged.slice(3, 120)}`);
          await conn.upgrade();
        }
      } else {
        if (!greeting.startsWith('+OK')) throw upstreamDown(`POP3 greeting "${greeting.slice(0, 80)}"`);
        if (conn.startTlsWanted) {
          conn.write('STLS\r\n');
          const r = await conn.line();
          if (!r.startsWith('+OK')) throw upstreamDown(`POP3 STLS refused: ${r.slice(0, 80)}`);
          await conn.upgrade();
        }
      }
      return conn;
    } catch (err) {
      conn.close();
      throw err;
    }
  }

  /**
   * Runs a login on a greeted connection: a spare when there is one. A spare the upstream
   * closed meanwhile (a restart, its idle timeout) costs one retry on a new connection, never
   * the user's login.
   */
  private async withGreeted<T>(kind: 'imap' | 'pop3', client: ClientInfo, login: (conn: UpstreamConnection) => Promise<T>): Promise<T> {
    const pool = this.spares?.[kind];
    // A connection whose login failed is closed, whatever the failure.
    const attempt = async (conn: UpstreamConnection) => {
      try {
        return await login(conn);
      } catch (err) {
        conn.close();
        throw err;
      }
    };
    try {
      const { conn, spare } = pool ? await pool.take() : { conn: await this.greeted(kind, client), spare: false };
      try {
        return await attempt(conn);
      } catch (err) {
        if (!spare || (err instanceof PosternError && err.code === 'no_mailbox')) throw err;
        return await attempt(await this.greeted(kind, client));
      }
    } finally {
      pool?.topUp();
    }
  }

  private plain(username: string): string {
    const { masterUser, masterPassword, separator } = this.s;
    return this.s.login === 'authzid' ? b64(`${username}\0${masterUser}\0${masterPassword}`) : b64(`\0${username}${separator}${masterUser}\0${masterPassword}`);
  }

  /** Host, timeout and TLS for one of Dovecot's ports (LMTP names the client with XCLIENT). */
  endpoint(port: number): Endpoint {
    return { host: this.s.host, port, timeoutMs: this.s.timeoutMs, tls: this.s.tls };
  }

  /** The submission relay's endpoint (it is told the client with XCLIENT). */
  relayEndpoint(port: number): Endpoint {
    return { ...this.endpoint(port), host: this.s.smtpHost };
  }

  /** An IMAP or POP3 port's endpoint, with the PROXY header that names this client when configured. */
  private mailEndpoint(port: number, client: ClientInfo): Endpoint {
    if (this.s.proxyProtocol === 'off') return this.endpoint(port);
    return { ...this.endpoint(port), preamble: proxyHeader(this.s.proxyProtocol === 'v1' ? 1 : 2, client) };
  }

  /** An IMAP connection logged in as the user, still read line by line, and its capabilities. */
  private async imapLogin(username: string, client: ClientInfo): Promise<{ conn: UpstreamConnection; capabilities: string }> {
    return this.withGreeted('imap', client, async (conn) => {
      // The client's real address reaches the upstream (Dovecot trusts it from login_trusted_networks).
      const id = [
        ['x-originating-ip', client.ip],
        ['x-originating-port', String(client.port)],
        ['x-connected-ip', client.localIp],
        ['x-connected-port', String(client.localPort)],
        ['x-session-ext-id', client.sessionId],
      ]
        .map(([k, v]) => `${imapQuote(k!)} ${imapQuote(v!)}`)
        .join(' ');
      // ID and the login in one write (one round trip less): the upstream answers them in order,
      // and the login does not depend on ID's answer.
      conn.write(`P1 ID (${id})\r\nP2 AUTHENTICATE PLAIN ${this.plain(username)}\r\n`);
      await this.imapTagged(conn, 'P1');
      const { tagged, untagged } = await this.imapTagged(conn, 'P2');
      // Dovecot says AUTHORIZATIONFAILED when the master login is right but the account is not
      // one it may open (unknown to it, or a name it refuses): that is no outage, and a client
      // told "try again later" would retry for ever. Anything else stays a temporary failure.
      if (/^P2 NO \[AUTHORIZATIONFAILED\]/i.test(tagged))
        throw new PosternError('no_mailbox', `the mail server refused the account ${username}: ${tagged.slice(3, 120)}`);
      if (!/^P2 OK/i.test(tagged)) throw upstreamDown(`IMAP login for ${username} refused: ${tagged.slice(3, 120)}`);
      let caps = /\[CAPABILITY ([^\]]*)\]/i.exec(tagged)?.[1] ?? capabilityLine(untagged);
      if (!caps) {
        conn.write('P3 CAPABILITY\r\n');
        caps = capabilityLine((await this.imapTagged(conn, 'P3')).untagged) ?? 'IMAP4rev1';
      }
      return { conn, capabilities: caps };
    });
  }

  async imap(username: string, client: ClientInfo): Promise<UpstreamSession> {
    const { conn, capabilities } = await this.imapLogin(username, client);
    return { ...conn.handOver(), capabilities };
  }

  /**
   * Stores a message, marked seen, in one of the user's mailboxes (e.g. a copy of submitted
   * mail in Sent), creating the mailbox when the upstream says it does not exist yet.
   */
  async imapAppend(username: string, client: ClientInfo, mailbox: string, message: Buffer): Promise<void> {
    const { conn } = await this.imapLogin(username, client);
    let tag = 'S1';
    const append = () => {
      conn.write(`${tag} APPEND ${imapQuote(mailbox)} (\\Seen) {${message.length}}\r\n`);
      return this.imapGoAhead(conn, tag);
    };
    try {
      let go = await append();
      if (/\[TRYCREATE\]/i.test(go)) {
        conn.write(`S2 CREATE ${imapQuote(mailbox)}\r\n`);
        await this.imapTagged(conn, 'S2');
        tag = 'S3';
        go = await append();
      }
      if (!go.startsWith('+')) throw upstreamDown(`IMAP APPEND to ${mailbox} refused: ${go.slice(0, 120)}`);
      conn.write(message);
      conn.write('\r\n');
      const { tagged } = await this.imapTagged(conn, tag);
      if (!new RegExp(`^${tag} OK`, 'i').test(tagged)) throw upstreamDown(`IMAP APPEND to ${mailbox} refused: ${tagged.slice(3, 120)}`);
      conn.write('S9 LOGOUT\r\n');
    } finally {
      conn.close();
    }
  }

  /** The "+" go-ahead for a literal, or the tagged answer that refuses it. */
  private async imapGoAhead(conn: UpstreamConnection, tag: string): Promise<string> {
    for (let i = 0; i < 100; i++) {
      const line = await conn.line();
      if (line.startsWith('+') || line.startsWith(`${tag} `)) return line;
    }
    throw upstreamDown('IMAP upstream sent too many lines');
  }

  private async imapTagged(conn: UpstreamConnection, tag: string): Promise<{ tagged: string; untagged: string[] }> {
    const untagged: string[] = [];
    for (;;) {
      const line = await conn.line();
      if (line.startsWith(`${tag} `)) return { tagged: line, untagged };
      untagged.push(line);
      if (untagged.length > 100) throw upstreamDown('IMAP upstream sent too many lines');
    }
  }

  async pop3(username: string, client: ClientInfo): Promise<UpstreamSession> {
    return this.withGreeted('pop3', client, async (conn) => {
      conn.write('CAPA\r\n');
      const capa = await this.pop3Multiline(conn);
      if (capa.some((l) => /^XCLIENT\b/i.test(l))) {
        conn.write(`XCLIENT ADDR=${client.ip} PORT=${client.port} SESSION=${client.sessionId}\r\n`);
        const r = await conn.line();
        if (!r.startsWith('+OK')) throw upstreamDown(`POP3 XCLIENT refused: ${r.slice(0, 80)}`);
      }
      conn.write(`AUTH PLAIN ${this.plain(username)}\r\n`);
      const r = await conn.line();
      // As over IMAP: the master login passed but this account may not be opened. Dovecot says
      // "Authorization" here and "Authentication" when the master password itself is wrong.
      if (/^-ERR \[AUTH\] Authorization failed/i.test(r))
        throw new PosternError('no_mailbox', `the mail server refused the account ${username}: ${r.slice(5, 120)}`);
      if (!r.startsWith('+OK')) throw upstreamDown(`POP3 login for ${username} refused: ${r.slice(0, 120)}`);
      return { ...conn.handOver(), capabilities: '' };
    });
  }

  private async pop3Multiline(conn: UpstreamConnection): Promise<string[]> {
    const first = await conn.line();
    if (!first.startsWith('+OK')) return [];
    const lines: string[] = [];
    for (;;) {
      const l = await conn.line();
      if (l === '.') return lines;
      lines.push(l);
      if (lines.length > 100) throw upstreamDown('POP3 upstream sent too many lines');
    }
  }
}

function capabilityLine(untagged: string[]): string | undefined {
  return untagged.find((l) => /^\* CAPABILITY /i.test(l))?.slice('* CAPABILITY '.length);
}
