import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/ports.js';
import { python } from '../helpers/python.js';
import { RawClient } from '../helpers/raw-client.js';

const PW = 'Account-pass-1';
let dir: string;
let gw: Gateway | null = null;

async function certificate(name: string) {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }] }],
  });
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  writeFileSync(cert, pems.cert);
  writeFileSync(key, pems.private);
  return { cert, key };
}

beforeAll(async () => {
  dir = mkdtempSync('/tmp/postern-upstream-tls-');
  chmodSync(dir, 0o755);
});
afterAll(async () => gw?.stop());

describe('TLS to the upstream', () => {
  it('logs in to Dovecot over STARTTLS (IMAP, POP3) and delivers over LMTP with STARTTLS, checking its certificate', async () => {
    const upstream = await certificate('dovecot');
    gw = await startGateway({
      upstreamTls: upstream,
      env: { POSTERN_UPSTREAM__HOST: 'localhost', POSTERN_UPSTREAM__TLS: 'starttls', POSTERN_UPSTREAM__TLS_CA: upstream.cert },
    });
    await gw.addUser('alice', PW);
    const delivered = await python(`
import smtplib, json
c = smtplib.LMTP('127.0.0.1', ${gw.ports.lmtp})
print(json.dumps(c.sendmail('x@example.org', ['alice@example.test'], 'Subject: over tls\\r\\n\\r\\nhi\\r\\n')))`);
    expect(delivered).toEqual({});

    const c = await RawClient.open(gw.ports.imap);
    await c.until(/^\* OK/);
    c.write(`a LOGIN alice ${PW}\r\nb SELECT INBOX\r\n`);
    expect(await c.until(/^b /)).toContain('* 1 EXISTS');
    c.close();
    const p = await RawClient.open(gw.ports.pop3);
    await p.until(/^\+OK/);
    p.write(`USER alice\r\nPASS ${PW}\r\nSTAT\r\n`);
    expect(await p.until(/^\+OK \d/)).toMatch(/\+OK 1 /);
    p.close();
    // Dovecot marks logins that came over TLS.
    await waitFor('dovecot TLS logins', async () => {
      const tlsLogins = gw!.dovecot
        .log()
        .split('\n')
        .filter((l) => /Login: user=<alice>/.test(l) && /, TLS/.test(l));
      if (tlsLogins.length < 2) throw new Error(`${tlsLogins.length} TLS logins so far`);
    });
  }, 60_000);

  it('refuses to talk to an upstream whose certificate it cannot trust: temporary failure, not wrong password', async () => {
    await gw!.stop();
    const upstream = await certificate('dovecot2');
    const other = await certificate('unrelated');
    gw = await startGateway({
      upstreamTls: upstream,
      env: { POSTERN_UPSTREAM__HOST: 'localhost', POSTERN_UPSTREAM__TLS: 'starttls', POSTERN_UPSTREAM__TLS_CA: other.cert },
    });
    await gw.addUser('alice', PW);
    const c = await RawClient.open(gw.ports.imap);
    await c.until(/^\* OK/);
    c.write(`a LOGIN alice ${PW}\r\n`);
    expect(await c.until(/^a /)).toMatch(/^a NO \[UNAVAILABLE\]/m);
    c.close();
  }, 60_000);
});
