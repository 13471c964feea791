import * as openpgp from 'openpgp';
import { beforeAll, describe, expect, it } from 'vitest';
import { isArmoredEncryption, isEncrypted, pgpMime, sealMessage, splitMessage } from '../../src/core/pgp-mime.js';

let encrypted: string;
let signedOnly: string;
let encrypt: (inner: Buffer) => Promise<string>;

beforeAll(async () => {
  const { privateKey, publicKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ email: 'alice@example.test' }],
    format: 'object',
  });
  encrypt = async (inner) =>
    String(await openpgp.encrypt({ message: await openpgp.createMessage({ binary: inner }), encryptionKeys: publicKey, format: 'armored' }));
  encrypted = await encrypt(Buffer.from('secret words'));
  signedOnly = String(await openpgp.sign({ message: await openpgp.createMessage({ text: 'signed, not secret' }), signingKeys: privateKey, format: 'armored' }));
});

const msg = (headers: string[], body: string) => Buffer.from(`${headers.join('\r\n')}\r\n\r\n${body}`, 'latin1');
const FROM = ['From: bob@example.test', 'To: alice@example.test', 'Subject: hello'];

describe('what counts as already encrypted', () => {
  it('a PGP/MIME message and a message whose whole body is one encrypted armored message', async () => {
    const wrapped = pgpMime(splitMessage(msg(FROM, 'hi')), encrypted);
    expect(isEncrypted(wrapped)).toBe(true);
    expect(isEncrypted(msg(FROM, `${encrypted}\r\n`))).toBe(true);
    expect(isEncrypted(msg([...FROM, 'Content-Type: text/plain; charset=utf-8'], `\r\n${encrypted}`))).toBe(true);
  });

  it('not mail that merely contains an armor block, or armor that is not encryption', async () => {
    expect(isEncrypted(msg(FROM, `Here is what I got:\r\n${encrypted}\r\nand my bank PIN is 1234`))).toBe(false);
    expect(isEncrypted(msg(FROM, '-----BEGIN PGP MESSAGE-----\r\n\r\nnot really\r\n-----END PGP MESSAGE-----'))).toBe(false);
    expect(isEncrypted(msg(FROM, signedOnly))).toBe(false);
    expect(isArmoredEncryption(signedOnly)).toBe(false);
    expect(isEncrypted(msg([...FROM, 'Content-Type: text/html'], encrypted))).toBe(false);
    expect(isEncrypted(msg([...FROM, 'Content-Transfer-Encoding: base64'], encrypted))).toBe(false);
  });

  it('not a multipart/encrypted that is not RFC 3156 PGP/MIME, or that carries a part in clear', async () => {
    const wrapped = pgpMime(splitMessage(msg(FROM, 'hi')), encrypted).toString('latin1');
    const boundary = /boundary="([^"]+)"/.exec(wrapped)![1]!;
    expect(isEncrypted(Buffer.from(wrapped.replace('protocol="application/pgp-encrypted"; ', ''), 'latin1'))).toBe(false);
    const extra = wrapped.replace(`--${boundary}--`, `--${boundary}\r\nContent-Type: text/plain\r\n\r\nmy secret in clear\r\n--${boundary}--`);
    expect(isEncrypted(Buffer.from(extra, 'latin1'))).toBe(false);
    const fakePayload = wrapped.replace(encrypted.replace(/\r?\n/g, '\r\n').trimEnd(), 'plain words');
    expect(isEncrypted(Buffer.from(fakePayload, 'latin1'))).toBe(false);
  });

  it('seals mail that quotes an armor block, and the result counts as encrypted', async () => {
    const quoting = msg(FROM, `> ${encrypted.split('\n').join('\n> ')}\r\nmy reply in clear`);
    const sealed = await sealMessage(quoting, encrypt);
    expect(sealed.toString('latin1')).not.toContain('my reply in clear');
    expect(isEncrypted(sealed)).toBe(true);
    const already = msg(FROM, encrypted);
    expect(await sealMessage(already, encrypt)).toBe(already);
  });
});
