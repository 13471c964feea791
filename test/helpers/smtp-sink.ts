import { SMTPServer } from 'smtp-server';
import { freePort } from './ports.js';

export interface SmtpSink {
  port: number;
  /** Every message received: recipients and the raw text. */
  inbox: Array<{ to: string[]; text: string }>;
  close(): Promise<void>;
}

/** A real SMTP receiver (smtp-server) standing in for the site's mail relay. */
export async function startSmtpSink(
  opts: { tls?: { key: string; cert: string }; refuse?: (address: string) => boolean; host?: string } = {},
): Promise<SmtpSink> {
  const port = await freePort();
  const inbox: SmtpSink['inbox'] = [];
  const server = new SMTPServer({
    authOptional: true,
    // With a certificate it offers STARTTLS, as a real relay does.
    ...(opts.tls ? { key: opts.tls.key, cert: opts.tls.cert } : { disabledCommands: ['STARTTLS'] }),
    logger: false,
    onRcptTo(addr, _session, cb) {
      if (opts.refuse?.(addr.address)) return cb(Object.assign(new Error('5.1.1 No such mailbox here'), { responseCode: 550 }));
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        inbox.push({ to: session.envelope.rcptTo.map((r) => r.address), text: Buffer.concat(chunks).toString('utf8') });
        cb();
      });
    },
  });
  await new Promise<void>((r) => server.listen(port, opts.host ?? '127.0.0.1', () => r()));
  return { port, inbox, close: () => new Promise<void>((r) => server.close(() => r())) };
}
