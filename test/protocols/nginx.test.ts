import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../src/api/server.js';
import { startApi } from '../../src/cli/serve.js';
import { greeting } from '../helpers/dovecot.js';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { python } from '../helpers/python.js';

const PW = 'Account-pass-1';
let gw: Gateway;
let api: { port: number; close(): Promise<void> };
let nginx: ChildProcess;
let asp: string;
const ports = { imap: 0, pop3: 0 };

beforeAll(async () => {
  gw = await startGateway({ env: { POSTERN_NGINX__ENABLED: 'true', POSTERN_API__PORT: '0', POSTERN_UPSTREAM__LOGIN: 'separator' } });
  await gw.addUser('alice', PW);
  asp = (await gw.app.accounts.createAsp({ name: 'test' }, 'alice', { description: 'via nginx', scopes: ['imap'] })).password;
  api = await startApi(gw.app);
  const dir = mkdtempSync('/tmp/postern-nginx-');
  ports.imap = await freePort();
  ports.pop3 = await freePort();
  const conf = readFileSync(fileURLToPath(new URL('../fixtures/nginx.conf', import.meta.url)), 'utf8')
    .replaceAll('{{dir}}', dir)
    .replaceAll('{{apiPort}}', String(api.port))
    .replaceAll('{{imapPort}}', String(ports.imap))
    .replaceAll('{{pop3Port}}', String(ports.pop3));
  writeFileSync(join(dir, 'nginx.conf'), conf);
  nginx = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: 'ignore' });
  await waitFor('nginx', () => greeting(ports.imap, '* OK'));
}, 60_000);

afterAll(async () => {
  nginx?.kill('SIGTERM');
  await api?.close();
  await gw?.stop();
});

const imapLogin = (user: string, pass: string) =>
  python<{ ok: boolean; detail: string }>(`
import imaplib, json
c = imaplib.IMAP4('127.0.0.1', ${ports.imap})
try:
    c.login('${user}', '${pass}')
    typ, n = c.select('INBOX')
    print(json.dumps({'ok': typ == 'OK', 'detail': n[0].decode()}))
except imaplib.IMAP4.error as e:
    print(json.dumps({'ok': False, 'detail': str(e)}))`);

describe('nginx mail proxy using postern through auth_http', () => {
  it("lets an imap-scoped ASP in through nginx to the user's Dovecot mailbox", async () => {
    const r = await imapLogin('alice', asp);
    expect(r).toEqual({ ok: true, detail: '0' });
    const { events } = await gw.app.store.audit.query({ username: 'alice', action: 'auth', limit: 1 }, new Date());
    expect(events[0]).toMatchObject({ result: 'success', protocol: 'imap', ip: '127.0.0.1', userAgent: 'nginx', reason: 'asp' });
  });

  it('passes postern refusals on to the client: wrong password, wrong scope', async () => {
    expect((await imapLogin('alice', 'Wrong-pass-1')).detail).toContain('[AUTHENTICATIONFAILED]');
    const pop = await python<{ error: string }>(`
import poplib, json
c = poplib.POP3('127.0.0.1', ${ports.pop3})
try:
    c.user('alice'); c.pass_('${asp}'); print(json.dumps({'error': ''}))
except poplib.error_proto as e:
    print(json.dumps({'error': str(e)}))`);
    expect(pop.error).toContain('not valid for this service');
  });

  it('answers only nginx hosts, with the upstream address and master login', async () => {
    const headers = { 'Auth-Method': 'plain', 'Auth-User': 'alice', 'Auth-Pass': encodeURIComponent(PW), 'Auth-Protocol': 'imap', 'Client-IP': '192.0.2.1' };
    const r = await fetch(`http://127.0.0.1:${api.port}/auth/nginx`, { headers });
    expect(r.headers.get('auth-status')).toBe('OK');
    expect(r.headers.get('auth-server')).toBe('127.0.0.1');
    expect(r.headers.get('auth-port')).toBe(String(gw.dovecot.imapPort));
    expect(r.headers.get('auth-user')).toBe(`alice*${gw.dovecot.masterUser}`);
    const elsewhere = await buildApi({
      store: gw.app.store,
      auth: gw.app.auth,
      accounts: gw.app.accounts,
      sessions: gw.app.sessions,
      policy: gw.app.policy,
      emailCodes: gw.app.emailCodes,
      securityKeys: gw.app.securityKeys,
      clock: gw.app.clock,
      nginx: {
        allowed: () => false,
        upstreamHost: '127.0.0.1',
        smtpHost: '127.0.0.1',
        ports: { imap: 1, pop3: 1, smtp: 1 },
        upstreamLogin: () => ({ user: 'x', pass: 'y' }),
      },
    });
    const refused = await elsewhere.inject({ url: '/auth/nginx', headers });
    expect(refused.statusCode).toBe(403);
    expect(refused.headers['auth-status']).toBeUndefined();
    await elsewhere.close();
  });

  // Last: it fills the window of the address every nginx request here comes from.
  it('counts requests without a valid Client-IP against the nginx host, so a spray through them is still cut off', async () => {
    const ask = (user: string, pass: string, clientIp?: string) =>
      fetch(`http://127.0.0.1:${api.port}/auth/nginx`, {
        headers: {
          'Auth-Method': 'plain',
          'Auth-User': user,
          'Auth-Pass': encodeURIComponent(pass),
          'Auth-Protocol': 'imap',
          ...(clientIp === undefined ? {} : { 'Client-IP': clientIp }),
        },
      }).then((r) => r.headers.get('auth-status') ?? '');
    const answers = await Promise.all(Array.from({ length: 60 }, (_, i) => ask(`sprayed${i}`, 'Spring2026!', i % 2 ? undefined : 'not-an-address')));
    const checked = answers.filter((a) => a.startsWith('[AUTHENTICATIONFAILED]')).length;
    expect(checked).toBeGreaterThan(0);
    expect(checked).toBeLessThanOrEqual(50);
    expect(answers.filter((a) => a.startsWith('[LIMIT]')).length).toBe(60 - checked);
    expect(await ask('sprayed-last', 'Summer2026!')).toMatch(/^\[LIMIT\]/);
    const { events } = await gw.app.store.audit.query({ username: 'sprayed1', action: 'auth', limit: 1 }, new Date());
    expect(events[0]).toMatchObject({ ip: '127.0.0.1' });
  });
});
