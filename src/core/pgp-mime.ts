// PGP/MIME (RFC 3156) wrapping of a whole message, as stored for users who turned
// encryption on. Routing headers stay readable; the MIME entity (content headers and body)
// goes inside the encrypted part.
import { randomBytes } from 'node:crypto';

export interface SplitMessage {
  /** Header fields, each with its continuation lines, without line ends. */
  headers: string[];
  body: Buffer;
}

export function splitMessage(raw: Buffer): SplitMessage {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  const [end, gap] = crlf >= 0 && (lf < 0 || crlf < lf) ? [crlf, 4] : lf >= 0 ? [lf, 2] : [raw.length, 0];
  const lines = raw.subarray(0, end).toString('latin1').split(/\r?\n/);
  const headers: string[] = [];
  for (const line of lines) {
    if (/^[ \t]/.test(line) && headers.length) headers[headers.length - 1] += `\r\n${line}`;
    else if (line) headers.push(line);
  }
  return { headers, body: raw.subarray(Math.min(raw.length, end + gap)) };
}

const name = (h: string) => h.slice(0, h.indexOf(':')).trim().toLowerCase();
const isContentHeader = (h: string) => name(h).startsWith('content-') || name(h) === 'mime-version';

/** Already encrypted (PGP/MIME or inline PGP): stored as it is. */
export function isEncrypted(raw: Buffer): boolean {
  const { headers, body } = splitMessage(raw);
  const type = headers.find((h) => name(h) === 'content-type') ?? '';
  return /multipart\/encrypted/i.test(type) || body.includes('-----BEGIN PGP MESSAGE-----');
}

/** The part to encrypt: the message's own content headers and body. */
export function innerEntity(msg: SplitMessage): Buffer {
  const content = msg.headers.filter((h) => isContentHeader(h) && name(h) !== 'mime-version');
  const head = content.length ? content : ['Content-Type: text/plain; charset=us-ascii'];
  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1'), msg.body]);
}

/** The stored message: outer headers, then the two RFC 3156 parts around `armored`. */
export function pgpMime(msg: SplitMessage, armored: string): Buffer {
  const boundary = `postern-${randomBytes(12).toString('hex')}`;
  const outer = msg.headers.filter((h) => !isContentHeader(h));
  const text = [
    ...outer,
    'MIME-Version: 1.0',
    `Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="${boundary}"`,
    '',
    'This is an OpenPGP/MIME encrypted message (RFC 3156).',
    `--${boundary}`,
    'Content-Type: application/pgp-encrypted',
    'Content-Description: PGP/MIME version identification',
    '',
    'Version: 1',
    '',
    `--${boundary}`,
    'Content-Type: application/octet-stream; name="encrypted.asc"',
    'Content-Description: OpenPGP encrypted message',
    'Content-Disposition: inline; filename="encrypted.asc"',
    '',
    armored.replace(/\r?\n/g, '\r\n').trimEnd(),
    '',
    `--${boundary}--`,
    '',
  ].join('\r\n');
  return Buffer.from(text, 'latin1');
}

/**
 * The message as it is to be stored for a user with encryption on: PGP/MIME around the
 * message's own content, or the message unchanged when it is already encrypted. `encrypt`
 * turns the inner entity into an armored OpenPGP message (off the main thread).
 */
export async function sealMessage(raw: Buffer, encrypt: (inner: Buffer) => Promise<string>): Promise<Buffer> {
  if (isEncrypted(raw)) return raw;
  const msg = splitMessage(raw);
  return pgpMime(msg, await encrypt(innerEntity(msg)));
}
