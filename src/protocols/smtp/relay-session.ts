import type { Readable } from 'node:stream';
import type { SMTPServer, SMTPServerAddress } from 'smtp-server';
import type { FrontendContext } from '../context.js';
import { SmtpClient, type Reply } from '../upstream/smtp-client.js';

export interface RelayIdentity {
  /** The logged-in user, for XCLIENT LOGIN=. */
  username: string;
  ip: string;
  helo: string;
}

/** ESMTP parameters of MAIL FROM passed on when the relay offers their extension (RFC 5321 4.1.2). */
const MAIL_PARAMS: Array<[param: string, extension: string]> = [
  ['BODY', '8BITMIME'],
  ['SMTPUTF8', 'SMTPUTF8'],
  ['SIZE', 'SIZE'],
  ['RET', 'DSN'],
  ['ENVID', 'DSN'],
];
const RCPT_PARAMS: Array<[param: string, extension: string]> = [
  ['NOTIFY', 'DSN'],
  ['ORCPT', 'DSN'],
];

/**
 * What the relay offers, as last seen, shared by every submission listener: EHLO then offers
 * only that (a client is not invited to use SMTPUTF8 or DSN the relay would refuse). Until
 * the relay was first reached, SMTPUTF8 and DSN are not offered.
 */
export class RelayOffer {
  private supports: ((ext: string) => boolean) | null = null;

  seen(supports: (ext: string) => boolean): void {
    this.supports = supports;
  }

  /** smtp-server reads its hide* options at each EHLO. */
  applyTo(server: SMTPServer): void {
    const o = server.options as unknown as Record<string, unknown>;
    const has = this.supports ?? ((ext: string) => ext === '8BITMIME');
    o.hideSMTPUTF8 = !has('SMTPUTF8');
    o.hide8BITMIME = !has('8BITMIME');
    o.hideDSN = !has('DSN');
  }

  /** A first look at the relay, so that even the first EHLO offers what it offers. */
  probe(ctx: FrontendContext, port: number): void {
    void SmtpClient.open(ctx.upstream.relayEndpoint(port), { lmtp: false, heloName: ctx.settings.hostname }).then(
      (c) => {
        this.seen((ext) => c.supports(ext));
        void c.quit();
      },
      () => undefined,
    );
  }
}

/**
 * One submission session's connection to the relay, carried command by command: MAIL FROM
 * and each RCPT TO go to the relay as the client sends them and its answer is the client's
 * answer, so that DATA is only ever answered for recipients the relay took, and a 250 after
 * DATA means the mail went out to all of them (a partial refusal is seen at RCPT time, not
 * as a 550 for mail that was in fact sent).
 */
export class RelaySession {
  private client: SmtpClient | null = null;
  /** Whether the relay holds a transaction begun by MAIL FROM and not yet ended by DATA. */
  private open = false;

  constructor(
    private readonly ctx: FrontendContext,
    private readonly port: number,
    private readonly identity: 'xclient' | 'none',
    private readonly who: () => RelayIdentity,
    /** Told what the relay offers, each time a connection to it opens. */
    private readonly onCapabilities: (supports: (ext: string) => boolean) => void = () => undefined,
  ) {}

  private async connection(): Promise<SmtpClient> {
    if (this.client) return this.client;
    const client = await SmtpClient.open(this.ctx.upstream.relayEndpoint(this.port), { lmtp: false, heloName: this.ctx.settings.hostname });
    this.onCapabilities((ext) => client.supports(ext));
    try {
      if (this.identity === 'xclient') {
        const w = this.who();
        await client.xclient({ LOGIN: w.username, ADDR: w.ip, NAME: '[UNAVAILABLE]', PROTO: 'ESMTP', HELO: w.helo || 'unknown' }, this.ctx.settings.hostname);
      }
    } catch (err) {
      client.close();
      throw err;
    }
    this.client = client;
    return client;
  }

  private params(args: SMTPServerAddress['args'], table: Array<[string, string]>, client: SmtpClient): string {
    if (!args || typeof args !== 'object') return '';
    const out: string[] = [];
    for (const [param, ext] of table) {
      const v = (args as Record<string, string | boolean>)[param];
      if (v === undefined || v === false || !client.supports(ext)) continue;
      out.push(v === true ? param : `${param}=${v}`);
    }
    return out.length ? ` ${out.join(' ')}` : '';
  }

  /** Begins a transaction on the relay (ending one the client left with RSET first). */
  async mail(from: SMTPServerAddress | false): Promise<Reply> {
    const client = await this.connection();
    if (this.open) await client.command('RSET');
    const r = await client.command(`MAIL FROM:<${from ? from.address : ''}>${from ? this.params(from.args, MAIL_PARAMS, client) : ''}`);
    this.open = r.code < 300;
    return r;
  }

  async rcpt(to: SMTPServerAddress): Promise<Reply> {
    const client = await this.connection();
    return client.command(`RCPT TO:<${to.address}>${this.params(to.args, RCPT_PARAMS, client)}`);
  }

  async data(message: Readable): Promise<Reply> {
    const client = await this.connection();
    try {
      return await client.data(message);
    } finally {
      this.open = false;
    }
  }

  /** Drops the connection (a broken transaction, or the session is over). */
  close(): void {
    this.client?.close();
    this.client = null;
    this.open = false;
  }

  async quit(): Promise<void> {
    const c = this.client;
    this.client = null;
    await c?.quit();
  }
}
