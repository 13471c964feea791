// A small SMTP/LMTP client for relaying to the upstream. Hand-written because postern needs
// XCLIENT (to hand Postfix the user and the client's address) and per-recipient LMTP
// replies streamed from a message stream; nodemailer's transport offers neither XCLIENT nor
// a raw envelope+stream send with per-recipient results.
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { UpstreamConnection, upstreamDown, type Endpoint } from './connection.js';

export interface Reply {
  code: number;
  text: string;
}

export interface Envelope {
  from: string;
  to: string[];
}

export interface SendResult {
  /** One reply per recipient (LMTP), or the same reply for all (SMTP). */
  perRecipient: Array<Reply & { rcpt: string }>;
}

/** Doubles each dot that starts a line (RFC 5321 section 4.5.2), across chunk ends. */
export const dotStuff = (chunk: Buffer, atLineStart: boolean): { out: Buffer; atLineStart: boolean } => {
  const parts: Buffer[] = [];
  let start = 0;
  let lineStart = atLineStart;
  for (let i = 0; i < chunk.length; i++) {
    if (lineStart && chunk[i] === 0x2e) {
      parts.push(chunk.subarray(start, i), Buffer.from('.'));
      start = i;
    }
    lineStart = chunk[i] === 0x0a;
  }
  parts.push(chunk.subarray(start));
  return { out: Buffer.concat(parts), atLineStart: lineStart };
};

export class SmtpClient {
  private constructor(
    private readonly conn: UpstreamConnection,
    private readonly lmtp: boolean,
  ) {}

  static async open(ep: Endpoint, opts: { lmtp: boolean; heloName: string }): Promise<SmtpClient> {
    const conn = await UpstreamConnection.open(ep);
    const client = new SmtpClient(conn, opts.lmtp);
    try {
      client.expect(await client.reply(), 220, 'greeting');
      await client.hello(opts.heloName);
      if (conn.startTlsWanted) {
        client.expect(await client.command('STARTTLS'), 220, 'STARTTLS');
        await conn.upgrade();
        await client.hello(opts.heloName);
      }
      return client;
    } catch (err) {
      conn.close();
      throw err;
    }
  }

  private capabilities: string[] = [];

  private async hello(name: string): Promise<void> {
    const r = await this.command(`${this.lmtp ? 'LHLO' : 'EHLO'} ${name}`);
    this.expect(r, 250, 'EHLO');
    this.capabilities = r.text
      .split('\n')
      .slice(1)
      .map((l) => l.toUpperCase());
  }

  supports(ext: string): boolean {
    return this.capabilities.some((c) => c === ext || c.startsWith(`${ext} `));
  }

  /** Tells Postfix who submitted, then greets again as XCLIENT requires. */
  async xclient(attrs: Record<string, string>, heloName: string): Promise<void> {
    if (!this.supports('XCLIENT')) throw upstreamDown('upstream SMTP does not offer XCLIENT to postern');
    const xtext = (v: string) => v.replace(/[^\x21-\x7e]|[+=]/g, (c) => `+${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
    const line = Object.entries(attrs)
      .map(([k, v]) => `${k}=${xtext(v)}`)
      .join(' ');
    const r = await this.command(`XCLIENT ${line}`);
    this.expect(r, 220, 'XCLIENT');
    await this.hello(heloName);
  }

  private expect(r: Reply, code: number, what: string): void {
    if (r.code !== code) throw upstreamDown(`${what} answered ${r.code} ${r.text.split('\n')[0]}`);
  }

  async reply(): Promise<Reply> {
    const lines: string[] = [];
    for (;;) {
      const line = await this.conn.line();
      lines.push(line.slice(4));
      if (line[3] !== '-') return { code: Number(line.slice(0, 3)), text: lines.join('\n') };
      if (lines.length > 200) throw upstreamDown('SMTP reply too long');
    }
  }

  async command(line: string): Promise<Reply> {
    this.conn.write(`${line}\r\n`);
    return this.reply();
  }

  /**
   * Sends one message. Recipients the upstream refuses come back with its reply; if none is
   * accepted the message is not sent.
   */
  async send(env: Envelope, message: Readable): Promise<SendResult> {
    const mail = await this.command(`MAIL FROM:<${env.from}>`);
    if (mail.code !== 250) return { perRecipient: env.to.map((rcpt) => ({ rcpt, ...mail })) };
    const refused = new Map<string, Reply>();
    for (const rcpt of env.to) {
      const r = await this.command(`RCPT TO:<${rcpt}>`);
      if (r.code >= 300) refused.set(rcpt, r);
    }
    const accepted = env.to.filter((r) => !refused.has(r));
    if (accepted.length === 0) {
      await this.command('RSET');
      message.resume();
      return { perRecipient: env.to.map((rcpt) => ({ rcpt, ...refused.get(rcpt)! })) };
    }
    const data = await this.command('DATA');
    if (data.code !== 354) {
      message.resume();
      return { perRecipient: env.to.map((rcpt) => ({ rcpt, ...(refused.get(rcpt) ?? data) })) };
    }
    await this.stream(message);
    const results = new Map<string, Reply>();
    if (this.lmtp) {
      for (const rcpt of accepted) results.set(rcpt, await this.reply());
    } else {
      const r = await this.reply();
      for (const rcpt of accepted) results.set(rcpt, r);
    }
    return { perRecipient: env.to.map((rcpt) => ({ rcpt, ...(refused.get(rcpt) ?? results.get(rcpt)!) })) };
  }

  /** Sends the message after a 354 to DATA, dot-stuffed; the answer is the caller's to read. */
  async data(message: Readable): Promise<Reply> {
    const go = await this.command('DATA');
    if (go.code !== 354) {
      message.resume();
      return go;
    }
    await this.stream(message);
    return this.reply();
  }

  private async stream(message: Readable): Promise<void> {
    const socket = this.conn.socket;
    let atLineStart = true;
    let last = 0x0a;
    for await (const chunk of message as AsyncIterable<Buffer>) {
      if (chunk.length === 0) continue;
      const r = dotStuff(chunk, atLineStart);
      atLineStart = r.atLineStart;
      last = chunk[chunk.length - 1]!;
      if (!socket.write(r.out)) await once(socket, 'drain');
    }
    socket.write(last === 0x0a ? '.\r\n' : '\r\n.\r\n');
  }

  async quit(): Promise<void> {
    try {
      await this.command('QUIT');
    } catch {
      // The message is already through; a lost QUIT changes nothing.
    }
    this.conn.close();
  }

  close(): void {
    this.conn.close();
  }
}
