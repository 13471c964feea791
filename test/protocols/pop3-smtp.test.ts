import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { gpgUser } from '../helpers/gnupg.js';
import { python } from '../helpers/python.js';
import { RawClient } from '../helpers/raw-client.js';

const PW = 'Account-pass-1';
let gw: Gateway;
let imapOnly: string;
let pop3Asp: string;
let smtpAsp: string;

const actor = { name: 'test' };

beforeAll(async () => {
  gw = await startGateway({ postfix: true, env: { POSTERN_SUBMISSION__SAVE_SENT: 'Sent' } });
  await gw.addUser('alice', PW);
  await gw.addUser('bob', PW);
  imapOnly = (await gw.app.accounts.createAsp(actor, 'alice', { description: 'imap', scopes: ['imap'] })).password;
  pop3Asp = (await gw.app.accounts.createAsp(actor, 'alice', { description: 'pop', scopes: ['pop3'] })).password;
  smtpAsp = (await gw.app.accounts.createAsp(actor, 'alice', { description: 'smtp', scopes: ['smtp'] })).password;
  const r = await python(`
import smtplib, json
c = smtplib.LMTP('127.0.0.1', ${gw.ports.lmtp})
print(json.dumps(c.sendmail('x@example.org', ['alice@example.test'], 'Subject: for pop\\r\\n\\r\\nbody one\\r\\n')))`);
  expect(r).toEqual({});
}, 60_000);
afterAll(async () => gw?.stop());

const pop3Script = (port: number, tls: 'stls' | 'ssl', user: string, pass: string) => `
import poplib, json, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
try:
    ${tls === 'ssl' ? `c = poplib.POP3_SSL('127.0.0.1', ${port}, context=ctx)` : `c = poplib.POP3('127.0.0.1', ${port}); c.stls(context=ctx)`}
    c.user('${user}'); c.pass_('${pass}')
    count, size = c.stat()
    resp, lines, octets = c.retr(1)
    c.quit()
    print(json.dumps({'count': count, 'body': b'\\n'.join(lines).decode()}))
except poplib.error_proto as e:
    print(json.dumps({'error': str(e)}))`;

describe('POP3 through postern to Dovecot', () => {
  it('a pop3-scoped ASP reads the mailbox (poplib, STLS and implicit TLS)', async () => {
    for (const [port, mode] of [
      [gw.ports.pop3, 'stls'],
      [gw.ports.pop3s, 'ssl'],
    ] as const) {
      const r = await python<{ count: number; body: string }>(pop3Script(port, mode, 'alice', pop3Asp));
      expect(r.count).toBe(1);
      expect(r.body).toContain('body one');
    }
  });

  it('refuses an imap-only ASP on POP3 with [AUTH]', async () => {
    const r = await python<{ error: string }>(pop3Script(gw.ports.pop3s, 'ssl', 'alice', imapOnly));
    expect(r.error).toContain('-ERR [AUTH]');
  });

  it('supports AUTH PLAIN with an initial response, and drops bytes pipelined after STLS', async () => {
    const c = await RawClient.open(gw.ports.pop3);
    await c.until(/^\+OK/);
    c.write('STLS\r\nUSER alice\r\n');
    await c.until(/^\+OK Begin TLS/);
    await c.upgrade();
    c.write('PASS whatever\r\n');
    expect(await c.until(/^-ERR|^\+OK/)).toBe('-ERR USER first');
    c.write(`AUTH PLAIN ${Buffer.from(`\0alice\0${pop3Asp}`).toString('base64')}\r\n`);
    expect(await c.until(/^-ERR|^\+OK/)).toBe('+OK Logged in.');
    c.write('STAT\r\n');
    expect(await c.until(/^\+OK \d/)).toMatch(/^\+OK 1 \d+/);
    c.close();
  });

  it('answers -ERR [SYS/TEMP] when the upstream is down', async () => {
    await gw.dovecot.stop();
    try {
      const r = await python<{ error: string }>(pop3Script(gw.ports.pop3s, 'ssl', 'alice', pop3Asp));
      expect(r.error).toContain('-ERR [SYS/TEMP]');
    } finally {
      await gw.dovecot.start();
    }
  });
});

describe('SMTP submission through postern to Postfix', () => {
  const transport = (user: string, pass: string, secure = false) =>
    nodemailer.createTransport({
      host: '127.0.0.1',
      port: secure ? gw.ports.submissions : gw.ports.submission,
      secure,
      requireTLS: !secure,
      tls: { rejectUnauthorized: false },
      auth: { user, pass },
    });

  it('relays mail from an smtp-scoped ASP (nodemailer, STARTTLS) to the recipient mailbox, naming the user by XCLIENT', async () => {
    const info = await transport('alice', smtpAsp).sendMail({
      from: 'alice@example.test',
      to: 'bob@example.test',
      subject: 'Through postern',
      text: 'hello bob\n.leading dot stays\n',
    });
    expect(info.accepted).toEqual(['bob@example.test']);
    const c = new ImapFlow({
      host: '127.0.0.1',
      port: gw.ports.imaps,
      secure: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'bob', pass: PW },
      logger: false,
    });
    await c.connect();
    let found = '';
    for (let i = 0; i < 50 && !found; i++) {
      const box = await c.mailboxOpen('INBOX');
      const msg = box.exists > 0 ? await c.fetchOne('*', { source: true }) : false;
      if (msg && msg.source) found = msg.source.toString();
      else await new Promise((r) => setTimeout(r, 100));
    }
    await c.logout();
    expect(found).toContain('Subject: Through postern');
    expect(found).toContain('\n.leading dot stays');
    expect(gw.postfix!.maillog()).toMatch(/sasl_username=alice/);
  });

  it("keeps a copy of submitted mail in the sender's Sent mailbox, sealed with PGP once the sender turns encryption on", async () => {
    const sent = async () => {
      const c = new ImapFlow({
        host: '127.0.0.1',
        port: gw.ports.imaps,
        secure: true,
        tls: { rejectUnauthorized: false },
        auth: { user: 'alice', pass: imapOnly },
        logger: false,
      });
      await c.connect();
      try {
        await c.mailboxOpen('Sent');
        const msg = await c.fetchOne('*', { source: true, flags: true });
        return msg ? { source: msg.source!.toString(), flags: [...(msg.flags ?? [])] } : null;
      } finally {
        await c.logout();
      }
    };
    await transport('alice', smtpAsp).sendMail({ from: 'alice@example.test', to: 'bob@example.test', subject: 'copy in clear', text: 'kept as sent' });
    const clear = await sent();
    expect(clear?.source).toContain('Subject: copy in clear');
    expect(clear?.source).toContain('kept as sent');
    expect(clear?.flags).toContain('\\Seen');

    const key = await gpgUser('alice@example.test');
    await gw.app.accounts.setPgpKey(actor, 'alice', key.publicKey, true);
    try {
      await transport('alice', smtpAsp).sendMail({ from: 'alice@example.test', to: 'bob@example.test', subject: 'copy sealed', text: 'the gate code is 4412' });
      const sealed = await sent();
      expect(sealed?.source).toContain('Subject: copy sealed');
      expect(sealed?.source).toContain('multipart/encrypted');
      expect(sealed?.source).not.toContain('4412');
      expect(key.decrypt(sealed!.source)).toContain('the gate code is 4412');
    } finally {
      await gw.app.accounts.setPgpKey(actor, 'alice', null, false);
    }
  });

  it('refuses an imap-only ASP on SMTP with 535 (python smtplib over implicit TLS)', async () => {
    const r = await python<{ code: number; msg: string }>(`
import smtplib, json, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = smtplib.SMTP_SSL('127.0.0.1', ${gw.ports.submissions}, context=ctx)
try:
    c.login('alice', '${imapOnly}'); print(json.dumps({'code': 235, 'msg': ''}))
except smtplib.SMTPAuthenticationError as e:
    print(json.dumps({'code': e.smtp_code, 'msg': e.smtp_error.decode()}))`);
    expect(r.code).toBe(535);
    expect(r.msg).toContain('5.7.8');
  });

  it('drops an AUTH pipelined in clear behind STARTTLS (the STARTTLS injection class)', async () => {
    const c = await RawClient.open(gw.ports.submission);
    try {
      await c.until(/^220 /);
      c.write('EHLO client.example\r\n');
      await c.until(/^250 /);
      const plain = Buffer.from(`\0alice\0${smtpAsp}`).toString('base64');
      c.write(`STARTTLS\r\nAUTH PLAIN ${plain}\r\n`);
      await c.until(/^220 /);
      await c.upgrade();
      c.write('EHLO client.example\r\n');
      await c.until(/^250 /);
      // Had the injected AUTH been obeyed, this session could send now.
      c.write('MAIL FROM:<alice@example.test>\r\n');
      expect(await c.until(/^\d{3} /)).toMatch(/^530 /m);
    } finally {
      c.close();
    }
  });

  it('refuses to send without AUTH', async () => {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: gw.ports.submission, requireTLS: true, tls: { rejectUnauthorized: false } });
    await expect(t.sendMail({ from: 'x@example.test', to: 'bob@example.test', text: 'x' })).rejects.toMatchObject({ responseCode: 530 });
  });

  it('answers 451 when the relay is down, so the client queues and retries', async () => {
    gw.postfix!.stop();
    await expect(transport('alice', smtpAsp, true).sendMail({ from: 'alice@example.test', to: 'bob@example.test', text: 'x' })).rejects.toMatchObject({
      responseCode: 451,
    });
  });

  it('answers a locked account with 454 and the wait', async () => {
    await gw.addUser('mallory-target', PW);
    for (let i = 0; i < 5; i++) {
      await expect(transport('mallory-target', `Wrong-${i}`).verify()).rejects.toMatchObject({ responseCode: 535 });
    }
    const err = await transport('mallory-target', PW)
      .verify()
      .catch((e: { responseCode: number; response: string }) => e);
    expect(err).toMatchObject({ responseCode: 454 });
    expect((err as { response: string }).response).toMatch(/try again in \d+ seconds/);
  });
});

describe('LMTP inbound', () => {
  it('refuses unknown recipients with 550 and accepts known ones, one answer each', async () => {
    const r = await python<{ refused: Record<string, [number, string]> }>(`
import smtplib, json
c = smtplib.LMTP('127.0.0.1', ${gw.ports.lmtp})
try:
    refused = c.sendmail('x@example.org', ['bob@example.test', 'nobody@example.test'], 'Subject: two\\r\\n\\r\\nhi\\r\\n')
except smtplib.SMTPRecipientsRefused as e:
    refused = e.recipients
print(json.dumps({'refused': {k: [v[0], v[1].decode()] for k, v in refused.items()}}))`);
    expect(Object.keys(r.refused)).toEqual(['nobody@example.test']);
    expect(r.refused['nobody@example.test']?.[0]).toBe(550);
  });
});
