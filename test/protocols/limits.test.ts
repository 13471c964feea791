import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { generate } from 'selfsigned';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { RawClient } from '../helpers/raw-client.js';

const PW = 'Account-pass-1';
let gw: Gateway;
let certFile: string;
let keyFile: string;

async function writeCert(cn: string) {
  const pems = await generate([{ name: 'commonName', value: cn }], { keyType: 'ec', algorithm: 'sha256' });
  writeFileSync(certFile, pems.cert);
  writeFileSync(keyFile, pems.private);
}

function servedCommonName(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => {
      const cn = s.getPeerCertificate().subject?.CN;
      s.destroy();
      resolve(String(cn));
    });
    s.once('error', reject);
  });
}

beforeAll(async () => {
  const dir = `/tmp/postern-cert-${randomBytes(4).toString('hex')}`;
  mkdirSync(dir);
  certFile = `${dir}/cert.pem`;
  keyFile = `${dir}/key.pem`;
  await writeCert('first.example');
  gw = await startGateway({
    env: {
      POSTERN_TLS__CERT: certFile,
      POSTERN_TLS__KEY: keyFile,
      POSTERN_FRONTEND__PREAUTH_TIMEOUT: '"1s"',
      POSTERN_FRONTEND__MAX_PREAUTH_PER_IP: '3',
      POSTERN_IMAP__MAX_SESSIONS_PER_USER: '1',
      POSTERN_SUBMISSION__MAX_MESSAGE_SIZE: '10000',
    },
  });
  await gw.addUser('alice', PW);
}, 60_000);
afterAll(async () => gw?.stop());

describe('front-end limits and operations', () => {
  it('reloads the certificate without a restart', async () => {
    expect(await servedCommonName(gw.ports.imaps)).toBe('first.example');
    await writeCert('second.example');
    gw.listeners.tls.reload();
    expect(await servedCommonName(gw.ports.imaps)).toBe('second.example');
    expect(await servedCommonName(gw.ports.pop3s)).toBe('second.example');
    expect(await servedCommonName(gw.ports.submissions)).toBe('second.example');
  });

  it('disconnects an idle client before login', async () => {
    const c = await RawClient.open(gw.ports.imap);
    await c.until(/^\* OK/);
    expect(await c.closedWithin(5000)).toContain('* BYE Disconnected for inactivity.');
  });

  it('caps connections not yet logged in per IP', async () => {
    const held = await Promise.all([0, 1, 2].map(() => RawClient.open(gw.ports.pop3)));
    for (const c of held) await c.until(/^\+OK/);
    const extra = await RawClient.open(gw.ports.imap);
    expect(await extra.closedWithin()).toContain('* BYE Too many connections from your address');
    held.forEach((c) => c.close());
    await new Promise((r) => setTimeout(r, 100));
    const again = await RawClient.open(gw.ports.imap);
    await again.until(/^\* OK/);
    again.close();
  });

  it('caps simultaneous sessions per user with [IN-USE]', async () => {
    const first = await RawClient.open(gw.ports.imap);
    await first.until(/^\* OK/);
    first.write(`a LOGIN alice ${PW}\r\n`);
    await first.until(/^a OK/);
    const second = await RawClient.open(gw.ports.imap);
    await second.until(/^\* OK/);
    second.write(`a LOGIN alice ${PW}\r\n`);
    expect(await second.until(/^a /)).toMatch(/^a NO \[IN-USE\]/m);
    const gauge = await gw.app.metrics.registry.getSingleMetricAsString('postern_proxied_sessions');
    expect(gauge).toContain('postern_proxied_sessions{protocol="imap"} 1');
    first.close();
    await new Promise((r) => setTimeout(r, 200));
    second.write(`b LOGIN alice ${PW}\r\n`);
    expect(await second.until(/^b /)).toMatch(/^b OK/m);
    second.close();
  });

  it('survives garbage on every listener and keeps serving', async () => {
    for (const port of [gw.ports.imap, gw.ports.pop3, gw.ports.submission, gw.ports.lmtp]) {
      const c = await RawClient.open(port);
      c.write(randomBytes(4096).toString('binary'));
      c.write('\r\n\0\0{99999999999}\r\n"unterminated\r\n)))((\r\n');
      c.close();
    }
    const c = await RawClient.open(gw.ports.imap);
    await c.until(/^\* OK/);
    c.write('a1 LOGIN {3}\r\n');
    await c.until(/^\+ /);
    c.write('abc\r\n');
    expect(await c.until(/^a1 /)).toMatch(/^a1 BAD/m);
    c.write(`a2 NOOP\r\n`);
    expect(await c.until(/^a2 /)).toBe('a2 OK NOOP completed.');
    c.close();
  });
});
