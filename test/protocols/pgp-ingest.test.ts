import { randomBytes } from 'node:crypto';
import { ImapFlow } from 'imapflow';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { gpgUser, type GpgUser } from '../helpers/gnupg.js';
import { RawClient, sendAndHalfClose } from '../helpers/raw-client.js';
import { python } from '../helpers/python.js';

const PW = 'Account-pass-1';
let gw: Gateway;
let alice: GpgUser;
let publicKey: string;

const imapflow = (user: string) =>
  new ImapFlow({ host: '127.0.0.1', port: gw.ports.imaps, secure: true, tls: { rejectUnauthorized: false }, auth: { user, pass: PW }, logger: false });

/** Reads the newest message of a mailbox through postern. */
async function newest(user: string, mailbox = 'INBOX'): Promise<string> {
  const c = imapflow(user);
  await c.connect();
  try {
    await c.mailboxOpen(mailbox);
    const msg = await c.fetchOne('*', { source: true });
    return msg && msg.source ? msg.source.toString() : '';
  } finally {
    await c.logout();
  }
}

const gpgDecrypt = (stored: string) => alice.decrypt(stored);

/** A raw IMAP session logged in as alice (encryption on), for what no client library sends. */
async function aliceRaw(): Promise<RawClient> {
  const c = await RawClient.open(gw.ports.imap);
  await c.until(/^\* OK/);
  c.write(`a LOGIN alice ${PW}\r\n`);
  const answer = await c.until(/^a /);
  expect(answer).toMatch(/^a OK/m);
  // COMPRESS is not offered when the session is read after login.
  expect(answer).not.toMatch(/COMPRESS=/);
  return c;
}

beforeAll(async () => {
  gw = await startGateway({ env: { POSTERN_IMAP__MAX_APPEND_SIZE: '3000000', POSTERN_IMAP__MAX_APPEND_TOTAL: '4000000' } });
  await gw.addUser('alice', PW);
  await gw.addUser('bob', PW);
  alice = await gpgUser('alice@example.test');
  publicKey = alice.publicKey;
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
    const plain = gpgDecrypt(stored);
    expect(plain).toContain('Content-Type: text/plain; charset=utf-8');
    expect(plain).toContain('The secret figure is 42.');

    expect(await newest('bob')).toContain('The secret figure is 42.');
  });

  it('leaves mail that is already encrypted as it is', async () => {
    const pre = await openpgp.encrypt({
      message: await openpgp.createMessage({ text: 'already sealed' }),
      encryptionKeys: await openpgp.readKey({ armoredKey: publicKey }),
    });
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

describe('PGP on ingest (IMAP APPEND)', () => {
  const draft = (subject: string, body: string) =>
    `From: alice@example.test\r\nTo: dave@example.org\r\nSubject: ${subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${body}\r\n`;

  it('seals a message imapflow saves to Drafts, and it reads back through postern as PGP/MIME', async () => {
    const c = imapflow('alice');
    await c.connect();
    try {
      await c.mailboxCreate('Drafts').catch(() => undefined);
      const r = await c.append('Drafts', draft('draft plans', 'Meet at the old mill at nine.'), ['\\Draft']);
      expect(r).toBeTruthy();
    } finally {
      await c.logout();
    }
    const stored = await newest('alice', 'Drafts');
    expect(stored).toContain('Subject: draft plans');
    expect(stored).toContain('multipart/encrypted');
    expect(stored).not.toContain('old mill');
    expect(gpgDecrypt(stored)).toContain('Meet at the old mill at nine.');
  });

  it('seals what python imaplib uploads with a synchronizing literal to Sent', async () => {
    const r = await python<string[]>(`
import imaplib, ssl, json
c = imaplib.IMAP4_SSL('127.0.0.1', ${gw.ports.imaps}, ssl_context=ssl._create_unverified_context())
c.login('alice', '${PW}')
c.create('Sent')
typ, data = c.append('Sent', '(\\\\Seen)', None, ${JSON.stringify(draft('sent report', 'The vault code is 7731.'))}.encode())
c.logout()
print(json.dumps([typ, data[0].decode()]))`);
    expect(r[0]).toBe('OK');
    const stored = await newest('alice', 'Sent');
    expect(stored).toContain('Subject: sent report');
    expect(stored).not.toContain('7731');
    expect(gpgDecrypt(stored)).toContain('The vault code is 7731.');
  });

  it('seals every message of a MULTIAPPEND with a literal mailbox name, and keeps already encrypted mail as it is', async () => {
    const pre = await openpgp.encrypt({
      message: await openpgp.createMessage({ text: 'sealed by the client' }),
      encryptionKeys: await openpgp.readKey({ armoredKey: publicKey }),
    });
    const sealed = `Subject: client sealed\r\n\r\n${pre}`;
    const plain = draft('multi two', 'Second secret: tangerine.');
    const c = await aliceRaw();
    try {
      c.write('b CREATE Archive\r\n');
      await c.until(/^b /);
      c.write('c APPEND {7}\r\n');
      await c.until(/^\+/);
      c.write(`Archive (\\Seen) {${sealed.length}}\r\n`);
      await c.until(/^\+/);
      c.write(`${sealed} {${plain.length}+}\r\n${plain}\r\n`);
      expect(await c.until(/^c /)).toMatch(/^c OK/m);
      c.write('d SELECT Archive\r\n');
      expect(await c.until(/^d /)).toMatch(/\* 2 EXISTS/);
      c.write('e FETCH 1:2 BODY.PEEK[]\r\n');
      const fetched = await c.until(/^e /);
      expect(fetched).toMatch(/^e OK/m);
      expect(fetched.match(/BEGIN PGP MESSAGE/g)).toHaveLength(2);
      expect(fetched).toContain('Subject: client sealed');
      expect(fetched).not.toContain('tangerine');
      const second = fetched.slice(fetched.indexOf('Subject: multi two'));
      expect(gpgDecrypt(second)).toContain('Second secret: tangerine.');
      // The client-sealed one is stored exactly as sent: one armor, no PGP/MIME wrapper.
      expect(fetched.slice(0, fetched.indexOf('Subject: multi two'))).not.toContain('multipart/encrypted');
    } finally {
      c.close();
    }
  });

  it('refuses oversized uploads with [TOOBIG] and COMPRESS with [CANNOT], and the session goes on', async () => {
    const big = draft('big', 'x'.repeat(3_100_000));
    const c = await aliceRaw();
    try {
      c.write(`b APPEND INBOX {${big.length}}\r\n`);
      expect(await c.until(/^b /)).toMatch(/^b NO \[TOOBIG\]/m);
      c.write(`c APPEND INBOX {${big.length}+}\r\n${big}\r\n`);
      expect(await c.until(/^c /)).toMatch(/^c NO \[TOOBIG\]/m);
      // A mailbox name is a name: a literal of gigabytes for it is refused before any byte is held.
      c.write('m APPEND {4000000000}\r\n');
      expect(await c.until(/^m /)).toMatch(/^m NO \[TOOBIG\]/m);
      c.write('d COMPRESS DEFLATE\r\n');
      expect(await c.until(/^d /)).toMatch(/^d NO \[CANNOT\]/m);
      // Only commands known not to store a message pass: another upload command (REPLACE,
      // RFC 8508) or an unknown one is refused, and its literal is dropped, not obeyed.
      c.write('g REPLACE 1 INBOX {16+}\r\nh DELETE INBOX\r\n\r\n');
      expect(await c.until(/^g /)).toMatch(/^g NO \[CANNOT\] REPLACE is not available/m);
      c.write('i XSTOREPLAIN INBOX\r\n');
      expect(await c.until(/^i /)).toMatch(/^i NO \[CANNOT\]/m);
      c.write('j0 SELECT INBOX\r\nj UID FETCH 1:* (FLAGS)\r\n');
      expect(await c.until(/^j /)).toMatch(/^j OK/m);
      c.write('k CAPABILITY\r\n');
      const caps = await c.until(/^k /);
      expect(caps).toMatch(/^\* CAPABILITY .*IMAP4rev1/m);
      expect(caps).not.toMatch(/CATENATE|URL-PARTIAL|COMPRESS|REPLACE/);
      c.write('e APPEND Nowhere {5}\r\n');
      await c.until(/^\+/);
      // postern takes the message first; the upstream's refusal (no such mailbox) then reaches the client.
      c.write('hello\r\n');
      expect(await c.until(/^e /)).toMatch(/^e NO \[TRYCREATE\]/m);
      c.write('f NOOP\r\n');
      expect(await c.until(/^f /)).toMatch(/^f OK/m);
    } finally {
      c.close();
    }
  });

  it('puts its go-ahead for an upload between the upstream answers, never inside a FETCH literal', async () => {
    const c = await aliceRaw();
    try {
      c.write('b0 CREATE Bulk\r\n');
      await c.until(/^b0 /);
      for (const tag of ['b', 'c', 'd', 'e']) {
        const big = draft(`bulk ${tag}`, `${tag}`.repeat(2_500_000));
        c.write(`${tag} APPEND Bulk {${big.length}+}\r\n${big}\r\n`);
        await c.until(new RegExp(`^${tag} `));
      }
      c.write('f SELECT Bulk\r\n');
      await c.until(/^f OK/);
      const small = draft('small', 'racing the fetch');
      // The client stops reading during a large FETCH, so postern holds upstream data it has
      // not passed on yet when the APPEND arrives: its go-ahead must wait for a response end.
      c.write('g FETCH 1:* BODY.PEEK[]\r\n');
      await c.until(/^\* 1 FETCH/, 15_000);
      c.socket.pause();
      await new Promise((r) => setTimeout(r, 300));
      c.write(`h APPEND Bulk {${small.length}}\r\n`);
      await new Promise((r) => setTimeout(r, 300));
      c.socket.resume();
      const before = await c.until(/^\+ /, 15_000);
      const plus = before.lastIndexOf('\r\n') + 2;
      for (let i = 0, m: RegExpExecArray | null; (m = /\{(\d+)\}\r\n/.exec(before.slice(i)));) {
        const start = i + m.index + m[0].length;
        expect(plus < start || plus >= start + Number(m[1])).toBe(true);
        i = start + Number(m[1]);
        if (i >= before.length) break;
      }
      c.write(`${small}\r\n`);
      const rest = await c.until(/^h /, 15_000);
      expect(`${before}${rest}`).toMatch(/^g OK/m);
      expect(rest).toMatch(/^h OK/m);
    } finally {
      c.close();
    }
  });

  it("passes other commands' literals on after the upstream's go-ahead, and stays in step when it refuses one", async () => {
    const c = await aliceRaw();
    try {
      c.write('b SELECT {5}\r\n');
      await c.until(/^\+/);
      c.write('INBOX\r\n');
      expect(await c.until(/^b /)).toMatch(/^b OK/m);
      // A command the upstream refuses before its literal: it answers instead of asking for it.
      c.write('c XYZZY {5}\r\n');
      expect(await c.until(/^(c |\+)/)).toMatch(/^c (BAD|NO)/m);
      const msg = draft('after refusal', 'Still sealed: plum.');
      c.write(`d APPEND INBOX {${msg.length}+}\r\n${msg}\r\n`);
      expect(await c.until(/^d /)).toMatch(/^d OK/m);
    } finally {
      c.close();
    }
    const stored = await newest('alice');
    expect(stored).toContain('Subject: after refusal');
    expect(stored).not.toContain('plum');
  });

  it('holds a bounded total of uploads across sessions: past it, a temporary refusal the client can retry', async () => {
    const msg = draft('budget', 'b'.repeat(2_500_000));
    const first = await aliceRaw();
    const second = await aliceRaw();
    try {
      first.write(`b APPEND INBOX {${msg.length}}\r\n`);
      await first.until(/^\+/);
      // The first upload holds 2.5 MB of the 4 MB for all sessions.
      second.write(`c APPEND INBOX {${msg.length}}\r\n`);
      expect(await second.until(/^c /)).toMatch(/^c NO \[UNAVAILABLE\]/m);
      first.write(`${msg}\r\n`);
      expect(await first.until(/^b /, 15_000)).toMatch(/^b OK/m);
      second.write(`d APPEND INBOX {${msg.length}}\r\n`);
      await second.until(/^\+/);
      second.write(`${msg}\r\n`);
      expect(await second.until(/^d /, 15_000)).toMatch(/^d OK/m);
    } finally {
      first.close();
      second.close();
    }
  });

  it('reads an upload that arrives one byte at a time, markers and line ends split', async () => {
    const c = await aliceRaw();
    c.socket.setNoDelay(true);
    try {
      const msg = draft('trickle', 'Sent slowly: quince.');
      const bytes = `b APPEND INBOX (\\Seen) {${msg.length}+}\r\n${msg}\r\nc NOOP\r\n`;
      for (const ch of bytes) {
        c.write(ch);
        await new Promise((r) => setImmediate(r));
      }
      const out = await c.until(/^c /);
      expect(out).toMatch(/^b OK/m);
      expect(out).toMatch(/^c OK/m);
    } finally {
      c.close();
    }
    const stored = await newest('alice');
    expect(stored).toContain('Subject: trickle');
    expect(stored).not.toContain('quince');
    expect(gpgDecrypt(stored)).toContain('Sent slowly: quince.');
  });

  it('survives garbage after login in a session it reads, stays in step, and keeps serving', async () => {
    const random = await aliceRaw();
    random.write(randomBytes(8192).toString('binary'));
    random.close();
    // A literal after a tag the upstream cannot read: it answers "* BAD" instead of a go-ahead.
    for (const junk of ['x APPEND INBOX {9999999999}\r\n', 'y APPEND\r\n{12}\r\n)))(((\r\n', '\0\0\0\r\n~{5+}\r\nabc\r\n']) {
      const c = await aliceRaw();
      c.write(`${junk}\r\nz NOOP\r\n`);
      expect(await c.until(/^z /)).toMatch(/^z OK/m);
      c.close();
    }
    const c = await aliceRaw();
    c.write('n NOOP\r\n');
    expect(await c.until(/^n /)).toMatch(/^n OK/m);
    c.close();
  });

  it('counts its encryptions for Prometheus', async () => {
    const metric = await gw.app.metrics.registry.getSingleMetricAsString('postern_pgp_encryptions_total');
    const ok = Number(/postern_pgp_encryptions_total\{result="ok"\} (\d+)/.exec(metric)?.[1] ?? 0);
    // The LMTP delivery, the drafts, the MULTIAPPEND, the bulk uploads and the trickled one, at least.
    expect(ok).toBeGreaterThanOrEqual(8);
  });

  it('leaves uploads of a user without encryption in clear', async () => {
    const c = imapflow('bob');
    await c.connect();
    try {
      await c.mailboxCreate('Drafts').catch(() => undefined);
      await c.append('Drafts', draft('bob draft', 'Nothing to hide.'));
    } finally {
      await c.logout();
    }
    const stored = await newest('bob', 'Drafts');
    expect(stored).toContain('Nothing to hide.');
    expect(stored).not.toContain('multipart/encrypted');
  });
});

describe('a read session that the client half-closes', () => {
  it('answers every command sent before the half-close, a sealed APPEND included', async () => {
    const msg = 'Subject: last words\r\n\r\nsent just before the client hung up its side\r\n';
    const out = await sendAndHalfClose(
      gw.ports.imap,
      `a LOGIN alice ${PW}\r\nb SELECT INBOX\r\nc APPEND INBOX {${msg.length}+}\r\n${msg}\r\nd NOOP\r\ne LOGOUT\r\n`,
    );
    for (const tag of ['a', 'b', 'c', 'd', 'e']) expect(out).toMatch(new RegExp(`^${tag} OK`, 'm'));
    expect(out).toMatch(/^\* BYE/m);
  });
});
