// The last words before a close reach the client: over TLS (with its close_notify) and when
// the client half-closes right after its last command.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { RawClient, sendAndHalfClose } from '../helpers/raw-client.js';

const PW = 'Account-pass-1';
let gw: Gateway;

beforeAll(async () => {
  gw = await startGateway();
  await gw.addUser('alice', PW);
}, 60_000);
afterAll(async () => gw?.stop());

describe('closing connections', () => {
  it('delivers the LOGOUT answer and the BYE after too many failures over implicit TLS', async () => {
    const a = await RawClient.open(gw.ports.imaps, true);
    await a.until(/^\* OK/);
    a.write('a LOGOUT\r\n');
    expect(await a.closedWithin()).toMatch(/^\* BYE.*\r\na OK/m);

    const b = await RawClient.open(gw.ports.imaps, true);
    await b.until(/^\* OK/);
    b.write('a LOGIN alice x1\r\nb LOGIN alice x2\r\nc LOGIN alice x3\r\n');
    expect(await b.closedWithin()).toContain('* BYE Too many invalid authentication attempts.');

    const p = await RawClient.open(gw.ports.pop3s, true);
    await p.until(/^\+OK/);
    p.write('USER alice\r\nPASS x1\r\nUSER alice\r\nPASS x2\r\nUSER alice\r\nPASS x3\r\n');
    expect(await p.closedWithin()).toContain('-ERR Too many invalid authentication attempts');
  });

  it('answers every command a client sent before it half-closed, before and after login', async () => {
    const before = await sendAndHalfClose(gw.ports.imap, 'a CAPABILITY\r\nb LOGOUT\r\n');
    expect(before).toMatch(/^a OK/m);
    expect(before).toMatch(/^b OK/m);
    const after = await sendAndHalfClose(gw.ports.imap, `a LOGIN alice ${PW}\r\nb SELECT INBOX\r\nc LOGOUT\r\n`);
    expect(after).toMatch(/^a OK/m);
    expect(after).toMatch(/^b OK/m);
    expect(after).toMatch(/^c OK/m);
    const pop = await sendAndHalfClose(gw.ports.pop3, `USER alice\r\nPASS ${PW}\r\nSTAT\r\nQUIT\r\n`);
    expect(pop).toMatch(/^\+OK \d+ \d+/m);
    expect(pop.trim().split('\r\n').at(-1)).toMatch(/^\+OK/);
  });
});

describe('an account the mail server refuses', () => {
  it('is answered as permanent (AUTHORIZATIONFAILED), not as an outage to retry for ever', async () => {
    await gw.app.accounts.createUser({ name: 'test' }, { username: 'ghost', password: PW });
    const c = await RawClient.open(gw.ports.imap);
    try {
      await c.until(/^\* OK/);
      c.write(`a LOGIN ghost ${PW}\r\n`);
      expect(await c.until(/^a /)).toMatch(/^a NO \[AUTHORIZATIONFAILED\] The mail server has no mailbox for this account/m);
    } finally {
      c.close();
    }
  });

  it('is answered as permanent over POP3 too (-ERR [AUTH]), not [SYS/TEMP]', async () => {
    await gw.app.accounts.createUser({ name: 'test' }, { username: 'phantom', password: PW });
    const c = await RawClient.open(gw.ports.pop3);
    try {
      await c.until(/^\+OK/);
      c.write(`USER phantom\r\nPASS ${PW}\r\n`);
      expect(await c.until(/^-ERR/)).toMatch(/^-ERR \[AUTH\] The mail server has no mailbox for this account/m);
    } finally {
      c.close();
    }
  });
});
