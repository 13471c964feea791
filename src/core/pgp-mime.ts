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

const ARMOR = /^-----BEGIN PGP MESSAGE-----\r?\n([\s\S]*?)\r?\n-----END PGP MESSAGE-----$/;

/**
 * Whether text is exactly one ASCII-armored OpenPGP message (RFC 4880 section 6.2) whose first
 * packet is an encrypted session key (tag 1, public key, or tag 3, symmetric): what encrypted
 * mail starts with. A quoted or pasted armor block inside other text is not.
 */
export function isArmoredEncryption(text: string): boolean {
  const m = ARMOR.exec(text.trim());
  if (!m || m[1]!.includes('-----BEGIN')) return false;
  // Armor headers (Version:, Comment:) end at the first empty line.
  const lines = m[1]!.split(/\r?\n/);
  const blank = lines.findIndex((l) => l.trim() === '');
  const data = (blank >= 0 ? lines.slice(blank + 1) : lines).filter((l) => !l.startsWith('='));
  const b64 = data.join('').replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return false;
  const first = Buffer.from(b64.slice(0, 4), 'base64')[0];
  if (first === undefined || (first & 0x80) === 0) return false;
  const tag = first & 0x40 ? first & 0x3f : (first >> 2) & 0x0f;
  return tag === 1 || tag === 3;
}

const param = (header: string, key: string): string | null => {
  const m = new RegExp(`;\\s*${key}\\s*=\\s*(?:"([^"]*)"|([^;\\s]+))`, 'i').exec(header);
  return m ? (m[1] ?? m[2] ?? null) : null;
};

/**
 * Already encrypted, judged by structure and not by a marker anywhere in the text: a
 * PGP/MIME message (RFC 3156: multipart/encrypted for application/pgp-encrypted, whose two
 * parts are the version part and one encrypted message), or a plain-text message whose whole
 * body is one encrypted armored message (inline PGP). Such mail is stored as it is; anything
 * else is sealed, including mail that merely quotes an armor block.
 */
export function isEncrypted(raw: Buffer): boolean {
  const { headers, body } = splitMessage(raw);
  const type = (headers.find((h) => name(h) === 'content-type') ?? '').replace(/\r\n[ \t]+/g, ' ');
  const encoding = (headers.find((h) => name(h) === 'content-transfer-encoding') ?? '').toLowerCase();
  if (/^content-type:\s*multipart\/encrypted\s*(;|$)/i.test(type)) {
    if ((param(type, 'protocol') ?? '').toLowerCase() !== 'application/pgp-encrypted') return false;
    const boundary = param(type, 'boundary');
    return boundary !== null && isPgpMimeBody(body.toString('latin1'), boundary);
  }
  const plain = type === '' || /^content-type:\s*text\/plain\s*(;|$)/i.test(type);
  return plain && !/base64|quoted-printable/.test(encoding) && isArmoredEncryption(body.toString('latin1'));
}

function isPgpMimeBody(body: string, boundary: string): boolean {
  const delimiter = new RegExp(`^--${boundary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(--)?[ \t]*\r?$`, 'm');
  // With one capture group, split gives [preamble, close?, part, close?, part, ...]: the
  // texts at even places, after each delimiter whether it was the closing one ("--").
  const pieces = body.split(delimiter);
  const texts = pieces.filter((_, i) => i % 2 === 0);
  const closes = pieces.filter((_, i) => i % 2 === 1);
  // Exactly two parts: two opening delimiters, then the closing one.
  if (closes.length < 3 || closes[0] !== undefined || closes[1] !== undefined || closes[2] !== '--') return false;
  const [version, payload] = [texts[1]!, texts[2]!].map((p) => splitMessage(Buffer.from(p.replace(/^\r?\n/, ''), 'latin1')));
  const typeOf = (m: SplitMessage) => (m.headers.find((h) => name(h) === 'content-type') ?? '').toLowerCase();
  if (!/^content-type:\s*application\/pgp-encrypted/.test(typeOf(version!))) return false;
  if (!/^content-type:\s*application\/octet-stream/.test(typeOf(payload!))) return false;
  return isArmoredEncryption(payload!.body.toString('latin1'));
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
