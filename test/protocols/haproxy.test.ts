// postern behind a real HAProxy (Debian's) speaking the PROXY protocol: the client's own
// address, not the balancer's, is what the rate windows count, the audit trail records and
// Dovecot is told.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { RawClient } from '../helpers/raw-client.js';

const PW = 'Account-pass-1';
let gw: Gateway;
let haproxy: ChildProcess;
const front = { imap: 0, imaps: 0, pop3: 0, submission: 0 };

beforeAll(async () => {
  // Only HAProxy's address (127.0.0.1) may send PROXY headers; the test clients come from others.
  gw = await startGateway({ postfix: true, env: { POSTERN_FRONTEND__PROXY_PROTOCOL_FROM: '["127.0.0.1/32"]' } });
  await gw.addUser('alice', PW);
  for (const k of Object.keys(front) as Array<keyof typeof front>) front[k] = await freePort();
  const dir = mkdtempSync('/tmp/postern-haproxy-');
  const backend = (name: string, bind: number, to: number, send: string) =>
    `frontend ${name}\n  bind 127.0.0.1:${bind}\n  default_backend ${name}_b\nbackend ${name}_b\n  server p 127.0.0.1:${to} ${send} source 127.0.0.1\n`;
  writeFileSync(
    join(dir, 'haproxy.cfg'),
    [
      'global\n  maxconn 200\n',
      'defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n',
      backend('imap', front.imap, gw.ports.imap, 'send-proxy-v2'),
      backend('imaps', front.imaps, gw.ports.imaps, 'send-proxy-v2'),
      backend('pop3', front.pop3, gw.ports.pop3, 'send-proxy'),
      backend('submission', front.submission, gw.ports.submission, 'send-proxy'),
    ].join('\n'),
  );
  haproxy = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: 'ignore' });
  await waitFor('haproxy', async () => {
    const c = await RawClient.open(front.imap, false, '127.0.0.2').catch(() => null);
    if (!c) throw new Error('not yet');
    await c.until(/^\* OK/);
    c.close();
  });
}, 60_000);
afterAll(async () => {
  haproxy?.kill('SIGKILL');
  await gw?.stop();
});

/** A client at address `from` (127.0.0.2 … 127.0.0.8) through HAProxy, which is at 127.0.0.1. */
const via = (port: number, from: string, tls = false) => RawClient.open(port, tls, from);
const lastAuth = async () => (await gw.app.store.audit.query({ username: 'alice', action: 'auth', limit: 1 }, new Date())).events[0];
const rawTo = (port: number, from: string) => RawClient.open(port, false, from);

describe('behind HAProxy with the PROXY protocol', () => {
  it('sees the client address through IMAP (v2, plain and TLS), POP3 and submission (v1)', async () => {
    const imap = await via(front.imap, '127.0.0.2');
    await imap.until(/^\* OK/);
    imap.write(`a LOGIN alice ${PW}\r\n`);
    expect(await imap.until(/^a /)).toMatch(/^a OK/m);
    imap.close();
    expect(await lastAuth()).toMatchObject({ result: 'success', protocol: 'imap', ip: '127.0.0.2' });

    const imaps = await via(front.imaps, '127.0.0.3', true);
    await imaps.until(/^\* OK/);
    imaps.write(`a LOGIN alice Wrong-pass-1\r\n`);
    await imaps.until(/^a /);
    imaps.close();
    expect(await lastAuth()).toMatchObject({ result: 'failure', protocol: 'imap', ip: '127.0.0.3' });

    const pop3 = await via(front.pop3, '127.0.0.4');
    await pop3.until(/^\+OK/);
    pop3.write(`USER alice\r\nPASS ${PW}\r\n`);
    await pop3.until(/^\+OK.*ogged in/);
    pop3.close();
    expect(await lastAuth()).toMatchObject({ result: 'success', protocol: 'pop3', ip: '127.0.0.4' });

    const smtp = await via(front.submission, '127.0.0.5');
    await smtp.until(/^220 /);
    smtp.write('EHLO client.example\r\n');
    await smtp.until(/^250 /);
    smtp.write(`AUTH PLAIN ${Buffer.from(`\0alice\0${PW}`).toString('base64')}\r\n`);
    expect(await smtp.until(/^\d{3} /)).toMatch(/^235 /m);
    smtp.close();
    expect(await lastAuth()).toMatchObject({ result: 'success', protocol: 'smtp', ip: '127.0.0.5' });
  });

  it('counts a spray behind the balancer against the client, not the balancer', async () => {
    // The address window (50) fills for 127.0.0.6 only; 127.0.0.7 behind the same HAProxy is untouched.
    for (let i = 0; i < 4; i++) {
      const c = await via(front.imap, '127.0.0.6');
      await c.until(/^\* OK/);
      c.write(`a LOGIN nobody${i} Guess-1\r\nb LOGIN nobody${i}x Guess-2\r\nc LOGIN nobody${i}y Guess-3\r\n`);
      await c.closedWithin();
    }
    const { events } = await gw.app.store.audit.query({ ip: '127.0.0.6', action: 'auth', limit: 50 }, new Date());
    expect(events.length).toBe(12);
    expect((await gw.app.store.audit.query({ ip: '127.0.0.1', action: 'auth', limit: 50 }, new Date())).events).toHaveLength(0);
  });

  it("drops a connection from the balancer's address without a header, and ignores a header from anyone else", async () => {
    const bare = await rawTo(gw.ports.imap, '127.0.0.1');
    bare.write('a CAPABILITY\r\n');
    await bare.closedWithin(12_000);
    expect(bare.closed).toBe(true);
    // From a client, a PROXY line is only a bad command: it does not change who the client is.
    const forged = await rawTo(gw.ports.imap, '127.0.0.8');
    await forged.until(/^\* OK/);
    forged.write(`PROXY TCP4 203.0.113.99 127.0.0.1 5555 143\r\na LOGIN alice ${PW}\r\n`);
    expect(await forged.until(/^a /)).toMatch(/^a OK/m);
    forged.close();
    expect(await lastAuth()).toMatchObject({ ip: '127.0.0.8' });
  }, 20_000);
});
