import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ImapFlow } from 'imapflow';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { python } from '../helpers/python.js';

const PW = 'Account-pass-1';
let gw: Gateway;
let gnupgHome: string;
let publicKey: string;

/** Reads the newest message of a mailbox through postern. */
async function newest(user: string): Promise<string> {
  const c = new ImapFlow({ host: '127.0.0.1', port: gw.ports.imaps, secure: true, tls: { rejectUnauthorized: false }, auth: { user, pass: PW }, logger: false });
  await c.connect();
  try {
    await c.mailboxOpen('INBOX');
    const msg = await c.fetchOne('*', { source: true });
    return msg && msg.source ? msg.source.toString() : '';
  } finally {
    await c.logout();
  }
}

beforeAll(async () => {
  gw = await startGateway();
  await gw.addUser('alice', PW);
  await gw.addUser('bob', PW);
  // A key as a user makes it, readable by GnuPG 2.2 (curve25519 "legacy" form).
  const keys = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ email: 'alice@example.test' }], format: 'armored' });
  publicKey = keys.publicKey;
  gnupgHome = mkdtempSync('/tmp/postern-gnupg-');
  writeFileSync(join(gnupgHome, 'secret.asc'), keys.privateKey);
  execFileSync('gpg', ['--homedir', gnupgHome, '--batch', '--import', join(gnupgHome, 'secret.asc')], { stdio: 'ignore' });
  await gw.app.accounts.setPgpKey({ name: 'alice' }, 'alice', publicKey, true);
}, 60_000);
afterAll(async () => gw?.stop());

describe('PGP on ingest (LMTP)', () => {
  it('stores mail for a user with encryption on as PGP/MIME that GnuPG decrypts; other recipients get it in clear', async () => {
    const r = await python(`
import smtplib, json
c = smtplib.LMTP('127.0.0.1', ${gw.ports.lmtp})
msg = 'From: carol@example.org\\r\\nTo: alice@example.test, bob@example.test\\r\\nSubject: quarterly numbers\\r\\nMIME-Version: 1.0\\r\\nContent-Type: text/plain; charset=utf-8\\r\\n\\r\\nThe secret figure is 42.\\r\\n'
print(json.dumps(c.sendmail('carol@example.org', ['alice@example.test', 'bob@example.test'], msg)))`);
    expect(r).toEqual({});

    const stored = await newest('alice');
    expect(stored).toContain('Subject: quarterly numbers');
    expect(stored).toMatch(/Content-Type: multipart\/encrypted; protocol="application\/pgp-encrypted"/);
    expect(stored).not.toContain('The secret figure is 42.');
    const armored = stored.slice(stored.indexOf('-----BEGIN PGP MESSAGE-----'), stored.indexOf('-----END PGP MESSAGE-----') + 25);
    const plain = execFileSync('gpg', ['--homedir', gnupgHome, '--batch', '--quiet', '--decrypt'], { input: armored, encoding: 'utf8' });
    expect(plain).toContain('Content-Type: text/plain; charset=utf-8');
    expect(plain).toContain('The secret figure is 42.');

    expect(await newest('bob')).toContain('The secret figure is 42.');
  });

  it('leaves mail that is already encrypted as it is', async () => {
    const pre = await openpgp.encrypt({ message: await openpgp.createMessage({ text: 'already sealed' }), encryptionKeys: await openpgp.readKey({ armoredKey: publicKey }) });
    const body = `Subject: sealed\r\n\r\n${pre}`;
    await python(`
import smtplib, json
c = smtplib.LMTP('127.0.0.1', ${gw.ports.lmtp})
print(json.dumps(c.sendmail('carol@example.org', ['alice@example.test'], ${JSON.stringify(body)})))`);
    const stored = await newest('alice');
    expect(stored).toContain('Subject: sealed');
    expect(stored).not.toContain('multipart/encrypted');
    expect(stored.match(/BEGIN PGP MESSAGE/g)).toHaveLength(1);
  });

  it('refuses a key that is not a public key', async () => {
    await expect(gw.app.accounts.setPgpKey({ name: 'bob' }, 'bob', 'not a key', true)).rejects.toMatchObject({ code: 'invalid_input' });
  });
});
