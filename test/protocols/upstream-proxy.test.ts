// postern towards Dovecot listeners that expect the PROXY protocol (haproxy = yes): every
// IMAP and POP3 connection begins with a header naming the client, so Dovecot logs and
// limits by the client's address, as it would behind HAProxy.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonical, proxyHeader, ProxyHeaderReader } from '../../src/protocols/proxy-protocol.js';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/ports.js';
import { RawClient } from '../helpers/raw-client.js';

const PW = 'Account-pass-1';

describe('PROXY header towards the upstream', () => {
  const conn = { ip: '192.0.2.7', port: 54321, localIp: '198.51.100.1', localPort: 143 };
  const read = (b: Buffer) => new ProxyHeaderReader().push(Buffer.concat([b, Buffer.from('rest')]));

  it('writes version 2 as the specification lays it out', () => {
    expect(proxyHeader(2, conn).toString('hex')).toBe(`0d0a0d0a000d0a515549540a2111000cc0000207c6336401d431008f`);
    expect(proxyHeader(1, conn).toString()).toBe('PROXY TCP4 192.0.2.7 198.51.100.1 54321 143\r\n');
  });

  it('is read back by the reader postern uses for its own listeners, every family', () => {
    const cases: Array<[typeof conn, string]> = [
      [conn, '192.0.2.7'],
      [{ ...conn, ip: '2001:db8::42', localIp: '2001:db8::1' }, '2001:db8::42'],
      [{ ...conn, ip: '::ffff:192.0.2.9' }, '192.0.2.9'],
      // An IPv4 client that reached an IPv6 address: both ends written IPv6.
      [{ ...conn, localIp: '2001:db8::1' }, '192.0.2.7'],
      [{ ...conn, ip: '2001:db8::1:0:5', localIp: '::1' }, '2001:db8::1:0:5'],
    ];
    for (const version of [1, 2] as const) {
      for (const [c, ip] of cases) {
        const r = read(proxyHeader(version, c));
        expect(r && canonical(r.peer), `v${version} ${c.ip} → ${c.localIp}`).toEqual({ ip, port: 54321 });
        expect(r?.rest.toString()).toBe('rest');
      }
    }
  });

  it('says so when postern speaks for itself (no client)', () => {
    expect(proxyHeader(1, null).toString()).toBe('PROXY UNKNOWN\r\n');
    expect(read(proxyHeader(2, null))?.peer.ip).toBeNull();
  });
});

describe('Dovecot behind postern with haproxy = yes', () => {
  let gw: Gateway;
  beforeAll(async () => {
    gw = await startGateway({ upstreamProxy: 'v2' });
    await gw.addUser('alice', PW);
  }, 60_000);
  afterAll(async () => gw?.stop());

  it('logs in over IMAP and POP3, and Dovecot sees the client address', async () => {
    const imap = await RawClient.open(gw.ports.imap, false, '127.0.0.6');
    await imap.until(/^\* OK/);
    imap.write(`a LOGIN alice ${PW}\r\nb SELECT INBOX\r\nc LOGOUT\r\n`);
    expect(await imap.until(/^c /)).toMatch(/^a OK[\s\S]*^b OK/m);
    imap.close();
    const pop3 = await RawClient.open(gw.ports.pop3, false, '127.0.0.7');
    await pop3.until(/^\+OK/);
    pop3.write(`USER alice\r\nPASS ${PW}\r\n`);
    expect(await pop3.until(/^(\+OK.*ogged in|-ERR)/)).toMatch(/\+OK.*ogged in/);
    pop3.close();
    await waitFor('dovecot login lines', async () => {
      const log = gw.dovecot.log();
      if (!/imap-login: (Info: )?Login: user=<alice>.*rip=127\.0\.0\.6/.test(log) || !/pop3-login: (Info: )?Login: user=<alice>.*rip=127\.0\.0\.7/.test(log)) {
        throw new Error(
          log
            .split('\n')
            .filter((l) => l.includes('Login'))
            .join('\n'),
        );
      }
    });
  });
});
