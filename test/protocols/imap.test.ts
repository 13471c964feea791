import { execFile } from 'node:child_process';
import { ImapFlow } from 'imapflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { totpCode } from '../../src/core/totp.js';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/ports.js';
import { python } from '../helpers/python.js';
import { RawClient } from '../helpers/raw-client.js';

const PW = 'Account-pass-1';
let gw: Gateway;
let imapAsp: string;

async function lmtpDeliver(port: number, to: string, subject: string) {
  return python<Record<string, unknown>>(`
import smtplib, json
c = smtplib.LMTP('127.0.0.1', ${port})
r = c.sendmail('sender@example.org', ['${to}'], 'From: sender@example.org\\r\\nTo: ${to}\\r\\nSubject: ${subject}\\r\\n\\r\\nhello from lmtp\\r\\n')
c.quit()
print(json.dumps(r))`);
}

/** curl as a mail client (it speaks IMAP, POP3 and SMTP); exit code and output. */
function curl(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['--silent', '--max-time', '20', ...args], (err, stdout) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout }),
    );
  });
}

function imapflow(user: string, pass: string, opts: { secure?: boolean; port?: number } = {}) {
  return new ImapFlow({
    host: '127.0.0.1',
    port: opts.port ?? (opts.secure ? gw.ports.imaps : gw.ports.imap),
    secure: opts.secure ?? false,
    doSTARTTLS: opts.secure ? undefined : true,
    tls: { rejectUnauthorized: false },
    auth: { user, pass },
    logger: false,
  });
}

beforeAll(async () => {
  gw = await startGateway();
  await gw.addUser('alice', PW);
  await gw.addUser('bob', PW);
  imapAsp = (await gw.app.accounts.createAsp({ name: 'test' }, 'alice', { description: 'mail app', scopes: ['imap'] })).password;
}, 60_000);
afterAll(async () => gw?.stop());

describe('IMAP through postern to Dovecot', () => {
  it('delivers over LMTP into the Dovecot mailbox, and an imap-scoped ASP reads it (imapflow, STARTTLS)', async () => {
    expect(await lmtpDeliver(gw.ports.lmtp, 'alice@example.test', 'First message')).toEqual({});
    const c = imapflow('alice', imapAsp);
    await c.connect();
    expect(c.secureConnection).toBe(true);
    const box = await c.mailboxOpen('INBOX');
    expect(box.exists).toBe(1);
    const msg = await c.fetchOne('1', { envelope: true, source: true });
    expect(msg && msg.envelope?.subject).toBe('First message');
    expect(msg && msg.source?.toString()).toContain('hello from lmtp');
    await c.logout();
  });

  it('works over implicit TLS with python imaplib, passing the upstream capabilities after login', async () => {
    const r = await python<{ login: string; caps: string[]; count: string }>(`
import imaplib, json, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = imaplib.IMAP4_SSL('127.0.0.1', ${gw.ports.imaps}, ssl_context=ctx)
typ, data = c.login('alice', '${imapAsp}')
typ2, n = c.select('INBOX')
print(json.dumps({'login': typ, 'caps': data[0].decode().split(']')[0].split(' ')[1:], 'count': n[0].decode()}))`);
    expect(r.login).toBe('OK');
    expect(r.count).toBe('1');
    // Dovecot's post-login capabilities, e.g. its extensions postern does not advertise itself.
    expect(r.caps).toEqual(expect.arrayContaining(['IMAP4rev1', 'UIDPLUS', 'MOVE']));
  });

  it('serves curl over IMAPS and IMAP with STARTTLS, and refuses it a wrong password with exit code 67', async () => {
    const fetched = await curl(['--insecure', '--user', `alice:${imapAsp}`, `imaps://127.0.0.1:${gw.ports.imaps}/INBOX;MAILINDEX=1`]);
    expect(fetched.code).toBe(0);
    expect(fetched.out).toContain('Subject: First message');
    const starttls = await curl(['--insecure', '--ssl-reqd', '--user', `alice:${imapAsp}`, `imap://127.0.0.1:${gw.ports.imap}/INBOX;MAILINDEX=1`]);
    expect(starttls.out).toContain('hello from lmtp');
    // curl's "login denied"
    expect((await curl(['--insecure', '--user', 'alice:wrong-password', `imaps://127.0.0.1:${gw.ports.imaps}/INBOX;MAILINDEX=1`])).code).toBe(67);
  });

  it("refuses a 2FA user's account password on IMAP with a message that says to use an ASP", async () => {
    await gw.addUser('carol', PW);
    const { secret } = await gw.app.accounts.setupTotp({ name: 'test' }, 'carol');
    await gw.app.accounts.confirmTotp({ name: 'test' }, 'carol', await totpCode(secret, new Date()));
    const r = await python<{ error: string }>(`
import imaplib, json
c = imaplib.IMAP4('127.0.0.1', ${gw.ports.imap})
try:
    c.login('carol', '${PW}'); print(json.dumps({'error': ''}))
except imaplib.IMAP4.error as e:
    print(json.dumps({'error': str(e)}))`);
    expect(r.error).toContain('[AUTHENTICATIONFAILED]');
    expect(r.error).toContain('application-specific password');
  });

  it('answers a lockout with [LIMIT] and the seconds to wait', async () => {
    await gw.addUser('dave', PW);
    for (let i = 0; i < 5; i++) {
      const c = await RawClient.open(gw.ports.imap);
      await c.until(/^\* OK/);
      c.write(`a LOGIN dave Wrong-${i}\r\n`);
      expect(await c.until(/^a /)).toMatch(/a NO \[AUTHENTICATIONFAILED\]/);
      c.close();
    }
    const c = await RawClient.open(gw.ports.imap);
    await c.until(/^\* OK/);
    c.write(`a LOGIN dave ${PW}\r\n`);
    expect(await c.until(/^a /)).toMatch(/^a NO \[LIMIT\] Too many failed attempts, try again in \d+ seconds/m);
    c.close();
  });

  it('closes the connection after 3 failed logins', async () => {
    const c = await RawClient.open(gw.ports.imap);
    await c.until(/^\* OK/);
    for (let i = 0; i < 3; i++) {
      c.write(`t${i} LOGIN nobody${i} wrong\r\n`);
      await c.until(new RegExp(`^t${i} NO`));
    }
    expect(await c.closedWithin()).toContain('* BYE Too many invalid authentication attempts');
  });

  it('accepts LOGIN with literals (synchronizing and LITERAL+) and AUTHENTICATE PLAIN with SASL-IR', async () => {
    const c = await RawClient.open(gw.ports.imap);
    await c.until(/^\* OK/);
    c.write('a LOGIN {5}\r\n');
    await c.until(/^\+ /);
    c.write(`alice {${imapAsp.length}+}\r\n${imapAsp}\r\n`);
    expect(await c.until(/^a /)).toMatch(/^a OK \[CAPABILITY IMAP4rev1/m);
    c.write('b SELECT INBOX\r\n');
    expect(await c.until(/^b /)).toContain('* 1 EXISTS');
    c.close();

    const d = await RawClient.open(gw.ports.imap);
    await d.until(/^\* OK/);
    d.write(`a AUTHENTICATE PLAIN ${Buffer.from(`\0alice\0${imapAsp}`).toString('base64')}\r\n`);
    expect(await d.until(/^a /)).toMatch(/^a OK/m);
    d.close();
  });

  it('runs AUTHENTICATE LOGIN step by step, and lets the client cancel', async () => {
    const c = await RawClient.open(gw.ports.imap);
    await c.until(/^\* OK/);
    c.write('a AUTHENTICATE LOGIN\r\n');
    expect(await c.until(/^\+ /)).toBe(`+ ${Buffer.from('Username:').toString('base64')}`);
    c.write('*\r\n');
    expect(await c.until(/^a /)).toBe('a BAD Authentication canceled.');
    c.write('b AUTHENTICATE LOGIN\r\n');
    await c.until(/^\+ /);
    c.write(`${Buffer.from('alice').toString('base64')}\r\n`);
    expect(await c.until(/^\+ /)).toBe(`+ ${Buffer.from('Password:').toString('base64')}`);
    c.write(`${Buffer.from(imapAsp).toString('base64')}\r\n`);
    expect(await c.until(/^b /)).toMatch(/^b OK \[CAPABILITY/);
    c.close();
  });

  it('refuses an oversized literal and an overlong line before login without buffering them', async () => {
    const c = await RawClient.open(gw.ports.imap);
    await c.until(/^\* OK/);
    c.write('a LOGIN {999999}\r\n');
    expect(await c.until(/^a /)).toMatch(/^a BAD literal too large/m);
    c.write(`${'x'.repeat(70_000)}\r\n`);
    expect(await c.closedWithin()).toContain('* BYE Line too long.');
  });

  it('advertises LOGINDISABLED before TLS off the plaintext networks, and refuses LOGIN there', async () => {
    const strict = await startGateway({ env: { POSTERN_FRONTEND__PLAINTEXT_AUTH_NETWORKS: '[]' } });
    try {
      await strict.addUser('erin', PW);
      const c = await RawClient.open(strict.ports.imap);
      const greet = await c.until(/^\* OK/);
      expect(greet).toContain('LOGINDISABLED');
      expect(greet).toContain('STARTTLS');
      expect(greet).not.toContain('AUTH=PLAIN');
      c.write(`a LOGIN erin ${PW}\r\n`);
      expect(await c.until(/^a /)).toMatch(/^a NO \[PRIVACYREQUIRED\]/m);
      // After STARTTLS the same login works; a command pipelined with STARTTLS is discarded.
      c.write(`b STARTTLS\r\nc LOGIN erin ${PW}\r\n`);
      await c.until(/^b OK/);
      await c.upgrade();
      c.write('d CAPABILITY\r\n');
      const caps = await c.until(/^d /);
      expect(caps).not.toMatch(/^c /m);
      expect(caps).toContain('AUTH=PLAIN');
      expect(caps).not.toContain('LOGINDISABLED');
      c.write(`e LOGIN erin ${PW}\r\n`);
      expect(await c.until(/^e /)).toMatch(/^e OK/m);
      c.close();
      // POP3 and SMTP refuse passwords before TLS there too.
      const p = await RawClient.open(strict.ports.pop3);
      await p.until(/^\+OK/);
      p.write('CAPA\r\n');
      const capa = await p.until(/^\.$/);
      expect(capa).toContain('STLS');
      expect(capa).not.toContain('USER');
      p.write('USER erin\r\n');
      expect(await p.until(/^-ERR|^\+OK/)).toMatch(/^-ERR \[AUTH\] Plaintext authentication is disallowed/);
      p.close();
      const s = await RawClient.open(strict.ports.submission);
      await s.until(/^220 /);
      s.write('EHLO client.example\r\n');
      expect(await s.until(/^250 /)).not.toContain('AUTH');
      s.write(`AUTH PLAIN ${Buffer.from(`\0erin\0${PW}`).toString('base64')}\r\n`);
      expect(await s.until(/^\d{3} /)).toMatch(/^5\d\d /m);
      s.close();
    } finally {
      await strict.stop();
    }
  }, 60_000);

  it('accepts the largest ID RFC 2971 allows before login, and refuses a line past the bound', async () => {
    const c = await RawClient.open(gw.ports.imap);
    await c.until(/^\* OK/);
    // 30 fields, each name 30 octets and each value 1024 octets, every one a quote sent escaped.
    const fields = Array.from({ length: 30 }, (_, i) => `"${`field${i}`.padEnd(30, 'x')}" "${'\\"'.repeat(1024)}"`).join(' ');
    const id = `a ID (${fields})\r\n`;
    expect(id.length).toBeGreaterThan(60_000);
    c.write(id);
    expect(await c.until(/^a /)).toMatch(/^a OK/m);
    c.write(`b NOOP ${'x'.repeat(70_000)}\r\n`);
    expect(await c.closedWithin()).toContain('* BYE Line too long.');
  });

  it("records the client's IMAP ID name and version with the login", async () => {
    const c = await RawClient.open(gw.ports.imap);
    await c.until(/^\* OK/);
    c.write('a ID ("name" "Thunderbird" "version" "128.3" "os" "Linux")\r\n');
    await c.until(/^a OK/);
    c.write(`b LOGIN alice "${imapAsp}"\r\n`);
    await c.until(/^b OK/);
    c.close();
    const { events } = await gw.app.store.audit.query({ username: 'alice', action: 'auth', limit: 1 }, new Date());
    expect(events[0]).toMatchObject({ result: 'success', userAgent: 'Thunderbird/128.3' });
  });

  it('audits each login with protocol, IP, ASP id and session, and the session id reaches Dovecot', async () => {
    const { events } = await gw.app.store.audit.query({ username: 'alice', action: 'auth', result: 'success', limit: 1 }, new Date());
    expect(events[0]).toMatchObject({ protocol: 'imap', scope: 'imap', ip: '127.0.0.1', reason: 'asp' });
    expect(events[0]?.aspId).toMatch(/^[0-9a-f]{24}$/);
    // Dovecot writes its log through a separate process: give it a moment.
    await waitFor(
      'dovecot log line',
      async () => {
        if (!gw.dovecot.log().includes(`session=<${events[0]?.sessionId}>`)) throw new Error('not yet');
      },
      5000,
    );
  });

  it('answers [UNAVAILABLE] when the upstream is down, not a wrong-password answer', async () => {
    await gw.dovecot.stop();
    try {
      const c = await RawClient.open(gw.ports.imap);
      await c.until(/^\* OK/);
      c.write(`a LOGIN alice "${imapAsp}"\r\n`);
      expect(await c.until(/^a /)).toMatch(/^a NO \[UNAVAILABLE\]/m);
      c.close();
    } finally {
      await gw.dovecot.start();
    }
  });
});
