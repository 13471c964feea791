// Attacks on the mail listeners before login, over real sockets, with the rate windows in a
// real Redis: parallel guessing through IMAP, POP3 and submission, the per-address cap shared
// by all three, AUTH in clear, failures per connection, and clients that never finish logging in.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { RawClient } from '../helpers/raw-client.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

const PW = 'Account-pass-1';
const CAP = 25;
let redis: RedisServer;
let gw: Gateway;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const opened: RawClient[] = [];
/** A raw connection closed after the test whatever happens, so no test holds another's slots. */
async function open(port: number, tls = false): Promise<RawClient> {
  const c = await RawClient.open(port, tls);
  opened.push(c);
  return c;
}
afterEach(async () => {
  for (const c of opened.splice(0)) c.close();
  await sleep(100);
});
const b64 = (s: string) => Buffer.from(s).toString('base64');

beforeAll(async () => {
  redis = await startRedis();
  gw = await startGateway({
    env: {
      POSTERN_REDIS__URL: redis.url,
      // 127.0.0.1 is off the plaintext networks here: every test client is "on the Internet".
      POSTERN_FRONTEND__PLAINTEXT_AUTH_NETWORKS: '[]',
      POSTERN_FRONTEND__MAX_PREAUTH_PER_IP: String(CAP),
      POSTERN_FRONTEND__PREAUTH_TIMEOUT: '"1500ms"',
      POSTERN_FRONTEND__PREAUTH_DEADLINE: '"4s"',
      // Each account attack below runs from its own account; the address window is wide.
      POSTERN_LIMITS__IP_FAILURES: '1000',
    },
  });
  for (const name of ['alice', 'bob', 'carol', 'dave']) await gw.addUser(name, PW);
}, 60_000);
afterAll(async () => {
  await gw?.stop();
  await redis?.stop();
});

async function imapLogin(user: string, pass: string): Promise<string> {
  const c = await open(gw.ports.imaps, true);
  try {
    await c.until(/^\* OK/);
    c.write(`a LOGIN ${user} "${pass}"\r\n`);
    return (await c.until(/^a /)).split('\r\n').at(-1)!;
  } finally {
    c.close();
  }
}

async function submissionAuth(user: string, pass: string): Promise<string> {
  const c = await open(gw.ports.submissions, true);
  try {
    await c.until(/^220 /);
    c.write('EHLO client.example\r\n');
    await c.until(/^250 /);
    c.write(`AUTH PLAIN ${b64(`\0${user}\0${pass}`)}\r\n`);
    return (await c.until(/^\d{3} /)).split('\r\n').at(-1)!;
  } finally {
    c.close();
  }
}

describe('parallel guessing over the mail listeners', () => {
  it('checks only 5 of 20 parallel IMAP logins at one account; the right password behind them is refused too', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => imapLogin('alice', `Wrong-${i}-pw`)));
    expect(answers.filter((a) => a.startsWith('a NO [AUTHENTICATIONFAILED]'))).toHaveLength(5);
    expect(answers.filter((a) => a.startsWith('a NO [LIMIT]'))).toHaveLength(15);
    expect(await imapLogin('alice', PW)).toMatch(/^a NO \[LIMIT\] Too many failed attempts, try again in \d+ seconds/);
  });

  it('checks only 5 of 20 parallel submission logins at one account, and answers the rest 454', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => submissionAuth('bob', `Wrong-${i}-pw`)));
    expect(answers.filter((a) => a.startsWith('535 '))).toHaveLength(5);
    expect(answers.filter((a) => a.startsWith('454 '))).toHaveLength(15);
  });
});

describe('submission before login', () => {
  it('offers no AUTH in clear off the plaintext networks, accepts no mail without it, and offers AUTH after STARTTLS', async () => {
    const c = await open(gw.ports.submission);
    await c.until(/^220 /);
    c.write('EHLO client.example\r\n');
    const ehlo = await c.until(/^250 /);
    expect(ehlo).toContain('STARTTLS');
    expect(ehlo).not.toMatch(/AUTH/);
    c.write(`AUTH PLAIN ${b64(`\0carol\0${PW}`)}\r\n`);
    expect(await c.until(/^\d{3} /)).toMatch(/^5\d\d /m);
    c.write('MAIL FROM:<carol@example.test>\r\n');
    expect(await c.until(/^\d{3} /)).toMatch(/^530 /m);
    c.write('RCPT TO:<bob@example.test>\r\n');
    expect(await c.until(/^\d{3} /)).toMatch(/^5\d\d /m);
    c.write('STARTTLS\r\n');
    await c.until(/^220 /);
    await c.upgrade();
    c.write('EHLO client.example\r\n');
    expect(await c.until(/^250 /)).toMatch(/^250-AUTH PLAIN LOGIN/m);
    c.write(`AUTH PLAIN ${b64(`\0carol\0${PW}`)}\r\n`);
    expect(await c.until(/^\d{3} /)).toMatch(/^235 /m);
    c.close();
    // Nothing of it was counted as a guess.
    const { events } = await gw.app.store.audit.query({ username: 'carol', action: 'auth', limit: 10 }, new Date());
    expect(events.map((e) => e.result)).toEqual(['success']);
  });

  it('closes the connection after 3 failed logins', async () => {
    const c = await open(gw.ports.submissions, true);
    await c.until(/^220 /);
    c.write('EHLO client.example\r\n');
    await c.until(/^250 /);
    for (let i = 0; i < 3; i++) {
      c.write(`AUTH PLAIN ${b64(`\0dave\0Wrong-${i}`)}\r\n`);
      expect(await c.until(/^\d{3} /)).toMatch(/^535 /m);
    }
    // At once, not at the idle timeout (1.5 s here).
    expect(await c.closedWithin(500)).toMatch(/^421 .*Too many invalid authentication attempts/m);
  });

  it('shares one cap of connections not yet logged in per address between IMAP, POP3 and submission', async () => {
    const imap = await Promise.all(Array.from({ length: 10 }, () => open(gw.ports.imap)));
    const pop3 = await Promise.all(Array.from({ length: 5 }, () => open(gw.ports.pop3)));
    const smtp = await Promise.all(Array.from({ length: CAP - 15 }, () => open(gw.ports.submission)));
    for (const c of imap) await c.until(/^\* OK/);
    for (const c of pop3) await c.until(/^\+OK/);
    for (const c of smtp) await c.until(/^220 /);
    const extraSmtp = await open(gw.ports.submission);
    expect(await extraSmtp.closedWithin()).toMatch(/^421 .*Too many connections from your address/m);
    const extraImap = await open(gw.ports.imap);
    expect(await extraImap.closedWithin()).toContain('* BYE Too many connections from your address');
    // The implicit-TLS listener counts against the same cap.
    const tls = await open(gw.ports.submissions, true);
    expect(await tls.closedWithin()).toMatch(/^421 /m);
    for (const c of [...imap, ...pop3, ...smtp]) c.close();
    await sleep(200);
    expect(await submissionAuth('carol', PW)).toMatch(/^235 /);
  });

  it('ends a login that takes too long, however busy the client keeps it', async () => {
    const imap = await open(gw.ports.imap);
    const pop3 = await open(gw.ports.pop3);
    const smtp = await open(gw.ports.submission);
    await imap.until(/^\* OK/);
    await pop3.until(/^\+OK/);
    await smtp.until(/^220 /);
    const started = Date.now();
    // A byte of a never-finished line every half second: always under the idle timeout.
    const trickle = setInterval(() => {
      for (const c of [imap, pop3, smtp]) if (!c.closed) c.write('N');
    }, 500);
    try {
      expect(await imap.closedWithin(10_000)).toContain('* BYE Took too long to log in.');
      expect(await pop3.closedWithin(10_000)).toContain('-ERR Took too long to log in.');
      expect(await smtp.closedWithin(10_000)).toMatch(/^421 .*Took too long to log in/m);
    } finally {
      clearInterval(trickle);
    }
    expect(Date.now() - started).toBeGreaterThan(3000);
  });
});
