// What MTAs and mail clients rely on around DATA: one LMTP reply per accepted recipient, and
// no message over the size limit ever relayed or stored, whole or cut.
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { RawClient } from '../helpers/raw-client.js';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';

const PW = 'Account-pass-1';
const LIMIT = 4000;
let gw: Gateway;
let relay: SmtpSink;

beforeAll(async () => {
  // The relay on an address of its own: submission must go to smtp_host, not to Dovecot's host.
  relay = await startSmtpSink({ refuse: (a) => a.startsWith('refused@'), host: '127.0.0.5' });
  gw = await startGateway({
    env: {
      POSTERN_LMTP__MAX_MESSAGE_SIZE: String(LIMIT),
      POSTERN_SUBMISSION__MAX_MESSAGE_SIZE: String(LIMIT),
      POSTERN_UPSTREAM__SMTP_HOST: '"127.0.0.5"',
      POSTERN_UPSTREAM__SMTP_PORT: String(relay.port),
      POSTERN_UPSTREAM__SMTP_IDENTITY: 'none',
    },
  });
  await gw.addUser('alice@example.test', PW);
}, 60_000);
afterAll(async () => {
  await gw?.stop();
  await relay?.close();
});

/** A submission client of alice's through postern (STARTTLS), with the given ASP. */
const submitting = (pass: string) =>
  nodemailer.createTransport({
    host: '127.0.0.1',
    port: gw.ports.submission,
    secure: false,
    tls: { rejectUnauthorized: false },
    auth: { user: 'alice@example.test', pass },
  });

/** An IMAP client of alice's through postern. */
const aliceImap = () =>
  new ImapFlow({
    host: '127.0.0.1',
    port: gw.ports.imap,
    secure: false,
    tls: { rejectUnauthorized: false },
    auth: { user: 'alice@example.test', pass: PW },
    logger: false,
  });

async function inboxCount(): Promise<number> {
  const c = aliceImap();
  await c.connect();
  try {
    const status = await c.status('INBOX', { messages: true });
    return status ? (status.messages ?? 0) : 0;
  } finally {
    await c.logout();
  }
}

/** One LMTP transaction over a raw socket: every reply after DATA, until the server is quiet. */
async function lmtp(rcpts: string[], body: string, from?: string): Promise<{ rcpt: string[]; data: string[] }> {
  const c = await RawClient.open(gw.ports.lmtp, false, from);
  try {
    await c.until(/^220 /);
    c.write('LHLO mta.example\r\n');
    await c.until(/^250 /);
    c.write('MAIL FROM:<sender@example.org>\r\n');
    await c.until(/^250 /);
    const rcpt: string[] = [];
    for (const r of rcpts) {
      c.write(`RCPT TO:<${r}>\r\n`);
      rcpt.push((await c.until(/^\d{3} /)).split('\r\n').at(-1)!);
    }
    c.write('DATA\r\n');
    await c.until(/^354 /);
    c.write(`Subject: test\r\n\r\n${body}\r\n.\r\n`);
    const data: string[] = [];
    for (let i = 0; i < rcpt.filter((r) => r.startsWith('250')).length; i++) data.push((await c.until(/^\d{3} /)).split('\r\n').at(-1)!);
    // Nothing more may follow: the next command's answer is the next line.
    c.write('NOOP\r\n');
    expect((await c.until(/^\d{3} /)).split('\r\n').at(-1)).toMatch(/^250 /);
    return { rcpt, data };
  } finally {
    c.close();
  }
}

describe('LMTP delivery', () => {
  it('answers once per accepted RCPT, duplicates included, and stores the message once', async () => {
    const before = await inboxCount();
    const r = await lmtp(['alice@example.test', 'Alice@Example.test', 'alice@example.test', 'nobody@example.test'], 'hello once');
    expect(r.rcpt.map((x) => x.slice(0, 3))).toEqual(['250', '250', '250', '550']);
    expect(r.data).toHaveLength(3);
    for (const d of r.data) expect(d).toMatch(/^250 /);
    expect(await inboxCount()).toBe(before + 1);
  });

  it('refuses a message over the size limit once per accepted RCPT, and stores nothing of it', async () => {
    const before = await inboxCount();
    const r = await lmtp(['alice@example.test', 'ALICE@example.test'], 'x'.repeat(LIMIT * 2));
    expect(r.data).toHaveLength(2);
    for (const d of r.data) expect(d).toMatch(/^552 5\.3\.4 Message too big/);
    expect(await inboxCount()).toBe(before);
  });
});

describe('LMTP, who delivered', () => {
  it("names the MTA that delivered in the mailbox server's Received header, not postern", async () => {
    await lmtp(['alice@example.test'], 'from afar', '127.0.0.3');
    const c = aliceImap();
    await c.connect();
    try {
      await c.mailboxOpen('INBOX');
      const msg = await c.fetchOne('*', { source: true });
      const source = msg && msg.source ? msg.source.toString() : '';
      expect(source).toContain('from afar');
      expect(source).toMatch(/^Received: from mta\.example \(\[127\.0\.0\.3\]\)/m);
    } finally {
      await c.logout();
    }
  });
});

describe('submission', () => {
  it('never relays a message over the size limit, and relays one within it', async () => {
    const { password } = await gw.app.accounts.createAsp({ name: 'test' }, 'alice@example.test', { description: '', scopes: ['smtp'] });
    const t = submitting(password);
    await expect(t.sendMail({ from: 'alice@example.test', to: 'bob@example.org', text: 'y'.repeat(LIMIT * 3) })).rejects.toMatchObject({ responseCode: 552 });
    expect(relay.inbox).toHaveLength(0);
    await t.sendMail({ from: 'alice@example.test', to: 'bob@example.org', subject: 'small', text: 'fits' });
    expect(relay.inbox).toHaveLength(1);
    expect(relay.inbox[0]!.text).toContain('fits');
  });
});

describe('submission recipients', () => {
  it("settles each recipient with the relay at RCPT time: one refused, the others get the mail and DATA's 250 is true", async () => {
    const { password } = await gw.app.accounts.createAsp({ name: 'test' }, 'alice@example.test', { description: '', scopes: ['smtp'] });
    const t = submitting(password);
    const before = relay.inbox.length;
    const info = await t.sendMail({
      from: 'alice@example.test',
      to: ['carol@example.org', 'refused@example.org', 'dan@example.org'],
      subject: 'partly',
      text: 'three minus one',
    });
    expect(info.rejected).toEqual(['refused@example.org']);
    expect(info.accepted).toEqual(['carol@example.org', 'dan@example.org']);
    expect(info.rejectedErrors?.[0]).toMatchObject({ responseCode: 550 });
    expect(relay.inbox).toHaveLength(before + 1);
    expect(relay.inbox.at(-1)!.to).toEqual(['carol@example.org', 'dan@example.org']);
    // Several messages on one connection, each its own transaction on the relay.
    const pooled = nodemailer.createTransport({
      pool: true,
      maxMessages: 5,
      host: '127.0.0.1',
      port: gw.ports.submission,
      secure: false,
      tls: { rejectUnauthorized: false },
      auth: { user: 'alice@example.test', pass: password },
    });
    await Promise.all([1, 2, 3].map((n) => pooled.sendMail({ from: 'alice@example.test', to: `n${n}@example.org`, subject: `n${n}`, text: 'pooled' })));
    pooled.close();
    expect(
      relay.inbox
        .slice(-3)
        .map((m) => m.to[0])
        .sort(),
    ).toEqual(['n1@example.org', 'n2@example.org', 'n3@example.org']);
  });
});

describe('submission extensions', () => {
  it('offers SMTPUTF8 and DSN only when the relay does', async () => {
    // The relay here (smtp-server's defaults) offers 8BITMIME and SMTPUTF8 but not DSN.
    const c = await RawClient.open(gw.ports.submission);
    try {
      await c.until(/^220 /);
      c.write('EHLO client.example\r\n');
      const ehlo = await c.until(/^250 /);
      expect(ehlo).toMatch(/^250-8BITMIME/m);
      expect(ehlo).toMatch(/SMTPUTF8/);
      expect(ehlo).not.toMatch(/DSN/);
    } finally {
      c.close();
    }
  });
});

describe('enhanced status codes', () => {
  // One RFC 2034 code per reply: postern's own, the relay's passed on, or smtp-server's.
  const once = /^\d{3}[ -][245]\.\d{1,3}\.\d{1,3} (?![245]\.\d{1,3}\.\d{1,3}\b)/;
  const reply = async (c: RawClient, line: string) => {
    c.write(`${line}\r\n`);
    return (await c.until(/^\d{3} /)).split('\r\n').at(-1)!;
  };

  it('are offered by submission, and every reply after EHLO carries exactly one', async () => {
    const c = await RawClient.open(gw.ports.submission);
    try {
      await c.until(/^220 /);
      c.write('EHLO client.example\r\n');
      expect(await c.until(/^250 /)).toMatch(/^250[ -]ENHANCEDSTATUSCODES$/m);
      const answers = [
        await reply(c, `AUTH PLAIN ${Buffer.from(`\0alice@example.test\0Wrong-pass-1`).toString('base64')}`),
        await reply(c, `AUTH PLAIN ${Buffer.from(`\0alice@example.test\0${PW}`).toString('base64')}`),
        await reply(c, 'MAIL FROM:<alice@example.test>'),
        await reply(c, 'RCPT TO:<refused@example.org>'),
        await reply(c, 'RCPT TO:<erin@example.org>'),
        await reply(c, 'RSET'),
        await reply(c, 'VRFY erin'),
        await reply(c, 'QUIT'),
      ];
      for (const a of answers) expect(a).toMatch(once);
      expect(answers[0]).toMatch(/^535 5\.7\.8 /);
      expect(answers[1]).toMatch(/^235 2\.7\.0 /);
      // The relay's own refusal, its code kept: not replaced by a guess from 550.
      expect(answers[3]).toBe('550 5.1.1 No such mailbox here');
    } finally {
      c.close();
    }
  });

  it('are offered by LMTP, with one per recipient refused', async () => {
    const c = await RawClient.open(gw.ports.lmtp);
    try {
      await c.until(/^220 /);
      c.write('LHLO mta.example\r\n');
      expect(await c.until(/^250 /)).toMatch(/^250[ -]ENHANCEDSTATUSCODES$/m);
      const answers = [await reply(c, 'MAIL FROM:<x@example.org>'), await reply(c, 'RCPT TO:<nobody-here@example.test>'), await reply(c, 'QUIT')];
      for (const a of answers) expect(a).toMatch(once);
      expect(answers[1]).toMatch(/^550 5\.1\.1 /);
    } finally {
      c.close();
    }
  });
});

describe('submission login', () => {
  it('refuses a PLAIN login for another user (authzid not the login), as IMAP and POP3 do', async () => {
    await gw.addUser('bob@example.test', PW);
    const c = await RawClient.open(gw.ports.submission);
    try {
      await c.until(/^220 /);
      c.write('EHLO client.example\r\n');
      await c.until(/^250 /);
      c.write(`AUTH PLAIN ${Buffer.from(`bob@example.test\0alice@example.test\0${PW}`).toString('base64')}\r\n`);
      expect(await c.until(/^\d{3} /)).toMatch(/^535 .*for another user/m);
      c.write(`AUTH PLAIN ${Buffer.from(`alice@example.test\0alice@example.test\0${PW}`).toString('base64')}\r\n`);
      expect(await c.until(/^\d{3} /)).toMatch(/^235 /m);
    } finally {
      c.close();
    }
    const imap = await RawClient.open(gw.ports.imap);
    try {
      await imap.until(/^\* OK/);
      imap.write(`a AUTHENTICATE PLAIN ${Buffer.from(`bob@example.test\0alice@example.test\0${PW}`).toString('base64')}\r\n`);
      expect(await imap.until(/^a /)).toMatch(/^a (NO|BAD)/m);
    } finally {
      imap.close();
    }
  });
});
