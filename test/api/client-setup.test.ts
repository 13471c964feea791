// Setting a mail client up in one step: Thunderbird's autoconfig, Outlook's Autodiscover, and
// an Apple Mail profile whose app password then logs in over IMAP. Each document is read back
// by an independent parser (python's ElementTree and plistlib, openssl for the signature).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi } from '../../src/cli/serve.js';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { python } from '../helpers/python.js';
import { RawClient } from '../helpers/raw-client.js';

const PW = 'Account-pass-1';
let gw: Gateway;
let api: { port: number; close(): Promise<void> };
let base: string;

beforeAll(async () => {
  gw = await startGateway({
    env: {
      POSTERN_API__PORT: '0',
      POSTERN_CLIENT_SETUP__HOST: '"mail.example.org"',
      POSTERN_CLIENT_SETUP__DISPLAY_NAME: '"Example Mail"',
      POSTERN_CLIENT_SETUP__DOMAINS: '["example.org"]',
      POSTERN_CLIENT_SETUP__SMTP_PORT: '587',
      POSTERN_CLIENT_SETUP__SMTP_TLS: '"starttls"',
    },
  });
  api = await startApi(gw.app);
  base = `http://127.0.0.1:${api.port}`;
  await gw.addUser('alice@example.org', PW);
}, 60_000);
afterAll(async () => {
  await api?.close();
  await gw?.stop();
});

/** Parses XML with python's ElementTree (namespaces spelled out) and returns the elements asked for. */
const pyXml = <T>(text: string, script: string) =>
  python<T>(`
import json, xml.etree.ElementTree as ET
root = ET.fromstring(${JSON.stringify(text)})
${script}`);

describe('Thunderbird autoconfig', () => {
  it('describes IMAP, POP3 and SMTP with their TLS modes, at the well-known path and at /mail/', async () => {
    for (const path of ['/.well-known/autoconfig/mail/config-v1.1.xml', '/mail/config-v1.1.xml?emailaddress=alice%40example.org']) {
      const r = await fetch(base + path);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/^application\/xml/);
      const doc = await pyXml<{ version: string; id: string; domains: string[]; servers: string[][] }>(
        await r.text(),
        `p = root.find('emailProvider')
servers = [[s.tag, s.get('type')] + [s.findtext(k) for k in ('hostname', 'port', 'socketType', 'authentication', 'username')] for s in p.findall('incomingServer') + p.findall('outgoingServer')]
print(json.dumps({'version': root.get('version'), 'id': p.get('id'), 'domains': [d.text for d in p.findall('domain')], 'servers': servers}))`,
      );
      const user = path.includes('emailaddress') ? 'alice@example.org' : '%EMAILADDRESS%';
      expect(doc).toEqual({
        version: '1.1',
        id: 'example.org',
        domains: ['example.org'],
        servers: [
          ['incomingServer', 'imap', 'mail.example.org', '993', 'SSL', 'password-cleartext', user],
          ['incomingServer', 'pop3', 'mail.example.org', '995', 'SSL', 'password-cleartext', user],
          ['outgoingServer', 'smtp', 'mail.example.org', '587', 'STARTTLS', 'password-cleartext', user],
        ],
      });
    }
  });

  it('answers 404 for a domain it does not serve and 400 for what is not an address', async () => {
    expect((await fetch(`${base}/mail/config-v1.1.xml?emailaddress=bob%40elsewhere.test`)).status).toBe(404);
    expect((await fetch(`${base}/mail/config-v1.1.xml?emailaddress=%3Cscript%3E`)).status).toBe(400);
  });
});

describe('Microsoft Autodiscover', () => {
  const request = (email: string) =>
    `<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>${email}</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>`;
  const post = (path: string, body: string) => fetch(base + path, { method: 'POST', headers: { 'content-type': 'text/xml' }, body });

  it('answers the POX request with the 2006a response schema, on either spelling of its path', async () => {
    for (const path of ['/autodiscover/autodiscover.xml', '/Autodiscover/Autodiscover.xml']) {
      const r = await post(path, request('alice@example.org'));
      expect(r.status).toBe(200);
      const protocols = await pyXml<string[][]>(
        await r.text(),
        `ns = {'r': 'http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006', 'a': 'http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a'}
assert root.tag == '{%s}Autodiscover' % ns['r']
acct = root.find('a:Response/a:Account', ns)
assert acct.findtext('a:AccountType', namespaces=ns) == 'email' and acct.findtext('a:Action', namespaces=ns) == 'settings'
print(json.dumps([[p.findtext('a:' + k, namespaces=ns) for k in ('Type', 'Server', 'Port', 'LoginName', 'SSL', 'Encryption', 'AuthRequired')] for p in acct.findall('a:Protocol', ns)]))`,
      );
      expect(protocols).toEqual([
        ['IMAP', 'mail.example.org', '993', 'alice@example.org', 'on', 'SSL', 'on'],
        ['POP3', 'mail.example.org', '995', 'alice@example.org', 'on', 'SSL', 'on'],
        ['SMTP', 'mail.example.org', '587', 'alice@example.org', 'on', 'TLS', 'on'],
      ]);
    }
  });

  it('answers an error for other domains, and expands no entity a request declares', async () => {
    expect(await (await post('/autodiscover/autodiscover.xml', request('bob@elsewhere.test'))).text()).toMatch(/<ErrorCode>600<\/ErrorCode>/);
    const xxe = `<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><Autodiscover><Request><EMailAddress>&e;</EMailAddress></Request></Autodiscover>`;
    const r = await post('/autodiscover/autodiscover.xml', xxe);
    expect(r.status).toBe(400);
    expect(await r.text()).not.toContain('root:');
  });

  it('points the JSON lookup of newer Outlooks at the POX endpoint', async () => {
    const r = await fetch(`${base}/autodiscover/autodiscover.json/v1.0/alice@example.org?Protocol=AutodiscoverV1`);
    expect(await r.json()).toEqual({ Protocol: 'AutodiscoverV1', Url: 'https://mail.example.org/autodiscover/autodiscover.xml' });
    expect((await fetch(`${base}/autodiscover/autodiscover.json/v1.0/alice@example.org?Protocol=ActiveSync`)).status).toBe(400);
    expect((await fetch(`${base}/autodiscover/autodiscover.json/v1.0/bob@elsewhere.test?Protocol=AutodiscoverV1`)).status).toBe(404);
  });
});

describe('Apple Mail profile', () => {
  it('is a signed .mobileconfig whose new app password logs in over IMAP, and it is made only for a signed-in user', async () => {
    expect((await fetch(`${base}/api/v1/me/mobileconfig`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status).toBe(401);
    const session = await fetch(`${base}/api/v1/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'alice@example.org', password: PW }),
    });
    const { token } = (await session.json()) as { token: string };
    const r = await fetch(`${base}/api/v1/me/mobileconfig`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/x-apple-aspen-config');
    expect(r.headers.get('content-disposition')).toBe('attachment; filename="mail.example.org.mobileconfig"');
    const dir = mkdtempSync(join(tmpdir(), 'postern-profile-'));
    writeFileSync(join(dir, 'signed.der'), Buffer.from(await r.arrayBuffer()));
    // The signature verifies against the server's own certificate, and carries the plist inside.
    const plistXml = execFileSync(
      'openssl',
      ['cms', '-verify', '-inform', 'DER', '-in', join(dir, 'signed.der'), '-CAfile', gw.listeners.tls.certFile, '-purpose', 'any'],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    writeFileSync(join(dir, 'profile.mobileconfig'), plistXml);
    const profile = await python<Record<string, any>>(`
import json, plistlib
p = plistlib.load(open(${JSON.stringify(join(dir, 'profile.mobileconfig'))}, 'rb'))
print(json.dumps(p))`);
    expect(profile).toMatchObject({ PayloadType: 'Configuration', PayloadVersion: 1 });
    const mail = profile.PayloadContent[0];
    expect(mail).toMatchObject({
      PayloadType: 'com.apple.mail.managed',
      EmailAccountType: 'EmailTypeIMAP',
      EmailAddress: 'alice@example.org',
      IncomingMailServerHostName: 'mail.example.org',
      IncomingMailServerPortNumber: 993,
      IncomingMailServerUseSSL: true,
      IncomingMailServerUsername: 'alice@example.org',
      OutgoingMailServerHostName: 'mail.example.org',
      OutgoingMailServerPortNumber: 587,
      OutgoingMailServerUsername: 'alice@example.org',
    });
    expect(mail.OutgoingPassword).toBe(mail.IncomingPassword);
    // The password in it is a fresh ASP for IMAP and SMTP, and it opens the mailbox.
    const asps = await gw.app.store.asps.listByUser((await gw.app.store.users.findByName('alice@example.org'))!.id);
    expect(asps.map((a) => [a.description, a.scopes])).toEqual([['Apple Mail profile', ['imap', 'smtp']]]);
    const c = await RawClient.open(gw.ports.imaps, true);
    await c.until(/^\* OK/);
    c.write(`a LOGIN alice@example.org "${mail.IncomingPassword as string}"\r\n`);
    expect(await c.until(/^a /)).toMatch(/^a OK/m);
    c.close();
  });

  it('goes to a phone by a one-time link: opened once, racing opens get one profile, and a credential change ends it', async () => {
    const signIn = await fetch(`${base}/api/v1/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'alice@example.org', password: PW }),
    });
    const { token } = (await signIn.json()) as { token: string };
    const link = async () => {
      const r = await fetch(`${base}/api/v1/me/mobileconfig/link`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: '{}',
      });
      expect(r.status).toBe(201);
      return (await r.json()) as { url: string; expiresAt: string; qr: string };
    };
    const first = await link();
    expect(first.url).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${api.port}/setup/[0-9a-f]{24}\\.[A-Za-z0-9_-]{32}$`));
    expect(first.qr).toMatch(/^data:image\/png;base64,/);
    expect(new Date(first.expiresAt).getTime() - Date.now()).toBeLessThanOrEqual(600_000);
    const asps = async () => (await gw.app.store.asps.listByUser((await gw.app.store.users.findByName('alice@example.org'))!.id)).length;
    const before = await asps();
    // Ten phones open the same link at once: one profile, one new ASP.
    const opened = await Promise.all(Array.from({ length: 10 }, () => fetch(first.url)));
    expect(opened.map((r) => r.status).sort()).toEqual([200, 404, 404, 404, 404, 404, 404, 404, 404, 404]);
    expect(opened.find((r) => r.status === 200)!.headers.get('content-type')).toBe('application/x-apple-aspen-config');
    expect(await asps()).toBe(before + 1);
    expect((await fetch(first.url)).status).toBe(404);
    // A link asked for before the password changed opens nothing after.
    const second = await link();
    await gw.app.accounts.setPassword({ name: 'test' }, 'alice@example.org', 'Changed-pass-2');
    expect((await fetch(second.url)).status).toBe(404);
    expect(await asps()).toBe(before + 1);
    expect((await fetch(`${base}/setup/not-a-token`)).status).toBe(404);
  });
});
