// Through postern an IMAP client must see what it would see talking to Dovecot itself: the
// same script of commands, run by three fresh accounts (one straight to Dovecot, one through
// postern's plain port, one over its implicit TLS port), gets the same answers line for line,
// once what differs between any two accounts or runs is masked (UIDVALIDITY, timings).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { RawClient } from '../helpers/raw-client.js';

const PW = 'Account-pass-1';
let gw: Gateway;

beforeAll(async () => {
  gw = await startGateway();
  for (const u of ['direct', 'plain', 'tls']) await gw.addUser(`parity-${u}`, PW);
}, 60_000);
afterAll(async () => gw?.stop());

const MESSAGE = 'From: a@example.org\r\nTo: b@example.org\r\nSubject: parity\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\nthe body\r\n';
// The largest ID RFC 2971 allows: 30 fields, names of 30 octets, values of 1024.
const MAX_ID = `ID (${Array.from({ length: 30 }, (_, i) => `"${`field${i}`.padEnd(30, 'x')}" "${'v'.repeat(1024)}"`).join(' ')})`;

/** The commands after login, each with its tag; literals sent with LITERAL+. */
const SCRIPT: string[] = [
  'CAPABILITY',
  'NAMESPACE',
  'ENABLE CONDSTORE',
  'LIST "" "*"',
  'CREATE "Parity.Sub"',
  'LIST "" "Parity*"',
  'LSUB "" "*"',
  'SUBSCRIBE "Parity.Sub"',
  `APPEND INBOX (\\Seen) "01-Dec-2026 10:00:00 +0000" {${MESSAGE.length}+}\r\n${MESSAGE}`,
  `APPEND INBOX () "01-Dec-2026 10:00:01 +0000" {${MESSAGE.length}+}\r\n${MESSAGE}`,
  'STATUS INBOX (MESSAGES UNSEEN UIDNEXT)',
  'SELECT INBOX',
  'FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)',
  'FETCH 2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])',
  'STORE 2 +FLAGS (\\Flagged)',
  'SEARCH FLAGGED',
  'UID SEARCH ALL',
  'SEARCH SUBJECT parity BODY "the body"',
  'SORT (DATE) UTF-8 ALL',
  'COPY 1 "Parity.Sub"',
  'MOVE 2 "Parity.Sub"',
  'STORE 1 +FLAGS (\\Deleted)',
  'EXPUNGE',
  'GETQUOTAROOT INBOX',
  'NOOP',
  'CHECK',
  'UNSELECT',
  'EXAMINE "Parity.Sub"',
  'CLOSE',
  'RENAME "Parity.Sub" "Parity.Renamed"',
  'DELETE "Parity.Renamed"',
  'ID NIL',
  'FROB', // not a command: BAD from Dovecot, BAD through postern
  'LOGOUT',
];

async function run(port: number, tls: boolean, user: string, pass: string): Promise<string[]> {
  const c = await RawClient.open(port, tls);
  const out: string[] = [];
  try {
    await c.until(/^\* OK/);
    // Before login, the maximal ID: answered (by postern or by Dovecot) and not refused.
    c.write(`p ${MAX_ID}\r\n`);
    out.push(
      (await c.until(/^p /))
        .split('\r\n')
        .at(-1)!
        .replace(/ID completed\.?.*$/, 'ID completed'),
    );
    c.write(`l LOGIN ${user} "${pass}"\r\n`);
    out.push(
      (await c.until(/^l /))
        .split('\r\n')
        .at(-1)!
        .replace(/\[CAPABILITY [^\]]*\] /, ''),
    );
    for (const [i, cmd] of SCRIPT.entries()) {
      const tag = `t${i}`;
      c.write(`${tag} ${cmd}\r\n`);
      out.push(`>> ${cmd.split('\r\n')[0]}`, ...(await c.until(new RegExp(`^${tag} `))).split('\r\n'));
      if (cmd === 'SELECT INBOX') {
        // IDLE: the continuation, and the end after DONE.
        c.write('i IDLE\r\n');
        out.push('>> IDLE', await c.until(/^\+ /));
        c.write('DONE\r\n');
        out.push(...(await c.until(/^i /)).split('\r\n'));
      }
    }
    // After LOGOUT's OK the server closes; nothing may be lost on the way.
    await c.closedWithin(5000);
  } finally {
    c.close();
  }
  return out.map((l) =>
    l
      .replace(/UIDVALIDITY \d+/g, 'UIDVALIDITY n')
      .replace(/(APPENDUID|COPYUID) \d+/g, '$1 n')
      .replace(/ \(\d+\.\d+ \+ \d+\.\d+( \+ \d+\.\d+)? secs\)\./g, '.')
      .replace(/parity-(direct|plain|tls)/g, 'parity-user'),
  );
}

describe('IMAP through postern answers as Dovecot does', () => {
  it('on the plain port and over implicit TLS, command for command, from a maximal ID to LOGOUT', async () => {
    const direct = await run(gw.dovecot.imapPort, false, 'parity-direct', `upstream-${PW}`);
    const plain = await run(gw.ports.imap, false, 'parity-plain', PW);
    const tls = await run(gw.ports.imaps, true, 'parity-tls', PW);
    // Sanity: the script did run (mail stored, searched, moved) and ended with the LOGOUT answer.
    expect(direct.join('\n')).toMatch(/\* 2 EXISTS/);
    expect(direct.join('\n')).toMatch(/^\* SEARCH 2$/m);
    expect(direct.join('\n')).toMatch(/^t\d+ OK \[COPYUID n 1 1\]/m);
    expect(direct.at(-2)).toMatch(/^\* BYE/);
    expect(direct.at(-1)).toMatch(/^t\d+ OK/);
    expect(plain).toEqual(direct);
    expect(tls).toEqual(direct);
  });
});
