// Live sessions through postern end when their credential changes: the stolen phone stops
// reading mail the moment its app password is revoked.
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { RawClient } from '../helpers/raw-client.js';

const PW = 'Account-pass-1';
const BIN = resolve(__dirname, '../../bin/postern');
let gw: Gateway;
const opened: RawClient[] = [];
const admin = { name: 'admin' };

beforeAll(async () => {
  // No periodic re-check during these tests: what ends a session here is the announcement.
  gw = await startGateway({ postfix: true, env: { POSTERN_FRONTEND__SESSION_RECHECK: '"1h"' } });
  for (const name of ['alice', 'bob']) await gw.addUser(name, PW);
}, 60_000);
afterAll(async () => gw?.stop());
afterEach(() => {
  for (const c of opened.splice(0)) c.close();
});

async function imap(user: string, pass: string): Promise<RawClient> {
  const c = await RawClient.open(gw.ports.imap);
  opened.push(c);
  await c.until(/^\* OK/);
  c.write(`a LOGIN ${user} "${pass}"\r\n`);
  expect(await c.until(/^a /)).toMatch(/^a OK/m);
  return c;
}

async function pop3(user: string, pass: string): Promise<RawClient> {
  const c = await RawClient.open(gw.ports.pop3);
  opened.push(c);
  await c.until(/^\+OK/);
  c.write(`USER ${user}\r\nPASS ${pass}\r\n`);
  await c.until(/^\+OK.*(logged in|Logged in)/i);
  return c;
}

async function submission(user: string, pass: string): Promise<RawClient> {
  const c = await RawClient.open(gw.ports.submission);
  opened.push(c);
  await c.until(/^220 /);
  c.write('EHLO client.example\r\n');
  await c.until(/^250 /);
  c.write(`AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`).toString('base64')}\r\n`);
  expect(await c.until(/^\d{3} /)).toMatch(/^235 /m);
  return c;
}

async function stillServes(c: RawClient, tag: string): Promise<void> {
  c.write(`${tag} NOOP\r\n`);
  expect(await c.until(new RegExp(`^${tag} `))).toMatch(new RegExp(`^${tag} OK`, 'm'));
}

describe('live sessions end when their credential changes', () => {
  it('ends the IMAP, POP3 and submission sessions of a revoked ASP at once, and only those', async () => {
    const phone = await gw.app.accounts.createAsp(admin, 'alice', { description: 'phone', scopes: ['imap', 'pop3', 'smtp'] });
    const laptop = await gw.app.accounts.createAsp(admin, 'alice', { description: 'laptop', scopes: ['imap'] });
    const onPhone = await imap('alice', phone.password);
    const phonePop = await pop3('alice', phone.password.replaceAll(' ', ''));
    const phoneSmtp = await submission('alice', phone.password);
    const onLaptop = await imap('alice', laptop.password);
    await stillServes(onPhone, 'b');
    expect(gw.listeners.live.size).toBe(4);

    await gw.app.accounts.revokeAsp(admin, 'alice', phone.asp.id);
    expect(await onPhone.closedWithin(800)).toContain('* BYE Your credentials changed: log in again.');
    expect(await phonePop.closedWithin(800)).toContain('-ERR [AUTH] Your credentials changed: log in again.');
    expect(await phoneSmtp.closedWithin(800)).toMatch(/^421 .*Your credentials changed/m);
    await stillServes(onLaptop, 'c');
    expect(gw.listeners.live.size).toBe(1);
  });

  it('ends the sessions opened with the account password when the password changes', async () => {
    const byPassword = await imap('bob', PW);
    const popByPassword = await pop3('bob', PW);
    const asp = await gw.app.accounts.createAsp(admin, 'bob', { description: 'tablet', scopes: ['imap'] });
    const byAsp = await imap('bob', asp.password);
    await gw.app.accounts.setPassword(admin, 'bob', 'Brand-new-pass-2');
    expect(await byPassword.closedWithin(800)).toContain('* BYE Your credentials changed');
    expect(await popByPassword.closedWithin(800)).toContain('-ERR [AUTH] Your credentials changed');
    await stillServes(byAsp, 'd');
  });

  it('ends them when the command line disables the account, from another process', async () => {
    const other = await startGateway({ env: { POSTERN_FRONTEND__SESSION_RECHECK: '"1s"' } });
    try {
      await other.addUser('carol', PW);
      const c = await RawClient.open(other.ports.imap);
      opened.push(c);
      await c.until(/^\* OK/);
      c.write(`a LOGIN carol ${PW}\r\n`);
      await c.until(/^a OK/);
      const r = spawnSync(BIN, ['user', 'disable', 'carol'], {
        env: { ...process.env, POSTERN_SERVER__DATA_DIR: other.app.config.server.data_dir, POSTERN_LOG__LEVEL: 'silent' },
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(r.status, r.stderr).toBe(0);
      // No announcement reaches this process without Redis: the periodic re-check (1 s here) does.
      expect(await c.closedWithin(3000)).toContain('* BYE Your credentials changed');
    } finally {
      await other.stop();
    }
  });
});
