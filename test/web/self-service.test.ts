import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { startApi } from '../../src/cli/serve.js';
import { loadConfig } from '../../src/config/load.js';
import { totpCode } from '../../src/core/totp.js';
import { freePort } from '../helpers/ports.js';

const PW = 'Account-pass-1';
let app: App;
let api: { port: number; close(): Promise<void> };
let browser: Browser;

beforeAll(async () => {
  // A fixed port, so the page's origin (http://localhost:PORT) is the default WebAuthn origin.
  const port = await freePort();
  app = await createApp(
    loadConfig({
      env: {
        POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-web-')),
        POSTERN_AUTH__BCRYPT_ROUNDS: '10',
        POSTERN_LOG__LEVEL: 'silent',
        POSTERN_API__PORT: String(port),
      },
    }),
  );
  api = await startApi(app);
  // Debian's Chromium, headless, with no network beyond this machine.
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await api?.close();
  await app?.close();
});

describe('self-service page in a real browser', () => {
  for (const width of [1280, 375]) {
    it(`signs in, creates an app password that then works for IMAP, enrols TOTP from the QR page, and revokes the password (${width} px)`, async () => {
      const user = `alice${width}`;
      await app.accounts.createUser({ name: 'admin' }, { username: user, password: PW });
      const page = await browser.newPage({ viewport: { width, height: 900 } });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      // Failed requests (the wrong password's 401, the favicon) are expected; script errors are not.
      page.on('console', (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource') && errors.push(m.text()));
      await page.goto(`http://127.0.0.1:${api.port}/`);

      await page.fill('#signin [name=username]', user);
      await page.fill('#signin [name=password]', 'Wrong-pass-1');
      await page.click('#signin button');
      await page.waitForSelector('#signin .feedback:has-text("That user name and password do not match.")');
      await page.fill('#signin [name=password]', PW);
      await page.click('#signin button');
      await page.waitForSelector('#account:not([hidden])');
      expect(await page.textContent('#who')).toBe(user);

      await page.fill('#asp-create [name=description]', 'Thunderbird');
      await page.click('#asp-create button');
      await page.waitForSelector('#asp-new:not([hidden])');
      const password = (await page.textContent('#asp-password'))!;
      expect(password).toMatch(/^[a-z]{4} [a-z]{4} [a-z]{4} [a-z]{4}$/);
      await page.waitForSelector('#asps tr:has-text("Thunderbird")');
      expect(await app.auth.authenticate({ username: user, secret: password, scope: 'imap', ip: '127.0.0.1', protocol: 'imap' })).toMatchObject({ ok: true });
      // What to type into a mail app, next to the new password.
      const settings = (await page.textContent('#asp-settings'))!;
      expect(settings).toContain('Incoming mail (IMAP)localhost, port 993, SSL/TLS');
      expect(settings).toContain('Outgoing mail (SMTP)localhost, port 465, SSL/TLS');
      expect(settings).toContain(`User name${user}`);

      // Apple Mail: a profile to download, and a QR code for a phone.
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#apple-download')]);
      expect(download.suggestedFilename()).toBe('localhost.mobileconfig');
      const profile = readFileSync((await download.path())!, 'utf8');
      expect(profile).toContain('<string>com.apple.mail.managed</string>');
      expect(profile).toMatch(new RegExp(`<key>IncomingMailServerUsername</key>\\s*<string>${user}</string>`));
      await page.waitForSelector('#asps tr:has-text("Apple Mail profile")');
      await page.click('#apple-qr');
      await page.waitForSelector('#apple-link:not([hidden])');
      expect(await page.getAttribute('#apple-qr-img', 'src')).toMatch(/^data:image\/png;base64,/);
      expect(await page.textContent('#apple-url')).toMatch(/\/setup\/[0-9a-f]{24}\./);

      // An app password that works only from the office network.
      await page.fill('#asp-create [name=description]', 'Office');
      await page.fill('#asp-create [name=networks]', '192.0.2.0/24');
      await page.click('#asp-create button');
      await page.waitForSelector('#asps tr:has-text("Office"):has-text("192.0.2.0/24")');
      const office = (await page.textContent('#asp-password'))!;
      expect(await app.auth.authenticate({ username: user, secret: office, scope: 'imap', ip: '127.0.0.1', protocol: 'imap' })).toMatchObject({
        ok: false,
        reason: 'address_denied',
      });

      await page.click('#totp-setup');
      await page.waitForSelector('#totp-enrol:not([hidden])');
      expect(await page.getAttribute('#totp-qr', 'src')).toMatch(/^data:image\/png;base64,/);
      const secret = (await page.textContent('#totp-secret'))!;
      await page.fill('#totp-enable [name=code]', await totpCode(secret, new Date()));
      await page.click('#totp-enable button');
      await page.waitForSelector('#recovery:not([hidden])');
      expect((await page.textContent('#recovery-codes'))!.split('\n')).toHaveLength(10);
      expect(await page.textContent('#twofactor')).toBe('on');

      await page.click('#asps tr:has-text("Thunderbird") button');
      await page.waitForSelector('#asps tr:has-text("Thunderbird")', { state: 'detached' });
      expect(await app.auth.authenticate({ username: user, secret: password, scope: 'imap', ip: '127.0.0.1', protocol: 'imap' })).toMatchObject({ ok: false });
      await page.waitForSelector('#history tr:has-text("Revoked an app password")');
      expect(await page.textContent('#history')).toContain('Signed in to this page');
      expect(errors).toEqual([]);
      await page.close();
    }, 60_000);

    it(`adds a security key, signs in with it, and falls back to a recovery code once the key is gone (${width} px)`, async () => {
      const user = `kim${width}`;
      await app.accounts.createUser({ name: 'admin' }, { username: user, password: PW });
      const context = await browser.newContext({ viewport: { width, height: 900 } });
      const page = await context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      // Chromium's own virtual FIDO2 authenticator: the real WebAuthn stack of the browser answers.
      const cdp = await context.newCDPSession(page);
      await cdp.send('WebAuthn.enable');
      const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
        options: {
          protocol: 'ctap2',
          transport: 'usb',
          hasResidentKey: false,
          hasUserVerification: true,
          isUserVerified: true,
          automaticPresenceSimulation: true,
        },
      });
      const signIn = async (extra: Record<string, string> = {}) => {
        await page.fill('#signin [name=username]', user);
        await page.fill('#signin [name=password]', PW);
        for (const [name, value] of Object.entries(extra)) await page.fill(`#signin [name=${name}]`, value);
        await page.click('#signin button');
      };
      await page.goto(`http://localhost:${api.port}/`);
      await signIn();
      await page.waitForSelector('#account:not([hidden])');

      await page.fill('#key-add [name=label]', 'Desk key');
      await page.click('#key-add button');
      await page.waitForSelector('#keys-list tr:has-text("Desk key")');
      await page.waitForSelector('#recovery:not([hidden])');
      const recoveryCodes = (await page.textContent('#recovery-codes'))!.split('\n');
      expect(recoveryCodes).toHaveLength(10);
      expect(await page.textContent('#twofactor')).toBe('on');
      expect((await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials).toHaveLength(1);

      await page.click('#signout');
      await page.waitForSelector('#signin:not([hidden])');
      await signIn();
      await page.waitForSelector('#account:not([hidden])');
      await page.waitForSelector('#history tr:has-text("Added a security key")');
      const keyRow = (await page.textContent('#keys-list tr:has-text("Desk key")'))!;
      expect(keyRow).not.toMatch(/-Remove$/);

      // The key is lost: a typed recovery code signs in without asking for it.
      await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId });
      await page.click('#signout');
      await page.waitForSelector('#signin:not([hidden])');
      await signIn({ recoveryCode: recoveryCodes[0]! });
      await page.waitForSelector('#account:not([hidden])');
      expect(errors).toEqual([]);
      await context.close();
    }, 60_000);

    it(`trusts a device so the second factor is not asked on it until removed, and takes a PGP key (${width} px)`, async () => {
      const user = `lena${width}`;
      await app.accounts.createUser({ name: 'admin' }, { username: user, password: PW });
      const { secret } = await app.accounts.setupTotp({ name: user }, user);
      await app.accounts.confirmTotp({ name: user }, user, await totpCode(secret, new Date()));
      const context = await browser.newContext({ viewport: { width, height: 900 } });
      const page = await context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      const signIn = async (extra: Record<string, string> = {}, trust = false) => {
        await page.fill('#signin [name=username]', user);
        await page.fill('#signin [name=password]', PW);
        await page.fill('#signin [name=totp]', '');
        for (const [name, value] of Object.entries(extra)) await page.fill(`#signin [name=${name}]`, value);
        await page.setChecked('#signin [name=trust]', trust);
        await page.click('#signin button');
      };
      const signOut = async () => {
        await page.click('#signout');
        await page.waitForSelector('#signin:not([hidden])');
      };
      await page.goto(`http://localhost:${api.port}/`);

      await signIn();
      await page.waitForSelector('#signin .feedback:has-text("A second factor is required")');
      // Each sign-in needs a newer code than the last one accepted.
      await signIn({ totp: await totpCode(secret, new Date(Date.now() + 30_000)) }, true);
      await page.waitForSelector('#account:not([hidden])');
      await page.waitForSelector('#devices tr');
      await signOut();

      await signIn();
      await page.waitForSelector('#account:not([hidden])');
      await page.click('#devices tr button');
      await page.waitForSelector('#devices tr', { state: 'detached' });
      await signOut();
      await signIn();
      await page.waitForSelector('#signin .feedback:has-text("A second factor is required")');

      await signIn({ totp: await totpCode(secret, new Date(Date.now() + 60_000)) });
      await page.waitForSelector('#account:not([hidden])');
      const { publicKey } = await openpgp.generateKey({
        type: 'ecc',
        curve: 'curve25519Legacy',
        userIDs: [{ email: `${user}@example.test` }],
        format: 'armored',
      });
      await page.fill('#pgp-set [name=publicKey]', 'not a key');
      await page.click('#pgp-set button[type=submit]');
      await page.waitForSelector('#pgp-set >> xpath=ancestor::section >> .feedback:has-text("armored OpenPGP public key")');
      await page.fill('#pgp-set [name=publicKey]', publicKey);
      await page.click('#pgp-set button[type=submit]');
      await page.waitForSelector('#pgp-status:has-text("new mail stored encrypted")');
      expect((await app.accounts.get(user)).pgp?.encrypt).toBe(true);
      expect(errors).toEqual([]);
      await context.close();
    }, 60_000);
  }

  it('fits a 375 px phone screen, and answers mistakes in words next to the form they are about', async () => {
    await app.accounts.createUser({ name: 'admin' }, { username: 'lee', password: PW });
    const page = await browser.newPage({ viewport: { width: 375, height: 800 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${api.port}/`);
    // By keyboard alone: the user name first, Tab to the password, Enter signs in.
    await page.focus('#signin [name=username]');
    await page.keyboard.type('lee');
    await page.keyboard.press('Tab');
    await page.keyboard.type(PW);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#account:not([hidden])');
    // Nothing wider than the screen: no sideways scrolling of the page itself.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);
    // An app password with no protocol: the sentence appears in that section, not developer text.
    await page.uncheck('#asp-create [value=imap]');
    await page.uncheck('#asp-create [value=smtp]');
    await page.click('#asp-create button');
    const asp = page.locator('#asp-create >> xpath=ancestor::section').locator('.feedback');
    await asp.filter({ hasText: 'Choose at least one of IMAP, POP3 or SMTP.' }).waitFor();
    expect(await page.textContent('#message')).toBe('');
    // Once it succeeds, the error is replaced by a confirmation.
    await page.check('#asp-create [value=imap]');
    await page.click('#asp-create button');
    await asp.filter({ hasText: 'App password created.' }).waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);
});

describe('every account function of the page', () => {
  let app2: App;
  let api2: { port: number; close(): Promise<void> };
  beforeAll(async () => {
    // A short step-up window, so that the page has to ask to confirm it is you.
    app2 = await createApp(
      loadConfig({
        env: {
          POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-web2-')),
          POSTERN_AUTH__BCRYPT_ROUNDS: '10',
          POSTERN_LOG__LEVEL: 'silent',
          POSTERN_API__PORT: '0',
          POSTERN_API__STEP_UP_WINDOW: '"1s"',
        },
      }),
    );
    api2 = await startApi(app2);
  });
  afterAll(async () => {
    await api2?.close();
    await app2?.close();
  });

  for (const width of [1280, 375]) {
    it(`changes the password, asks to confirm before a sensitive change, sets the email, turns 2FA on and off, and makes an expiring ASP (${width} px)`, async () => {
      const user = `max${width}`;
      await app2.accounts.createUser({ name: 'admin' }, { username: user, password: PW });
      const page = await browser.newPage({ viewport: { width, height: 900 } });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      const section = (id: string) => page.locator(`#${id} .feedback`);
      await page.goto(`http://127.0.0.1:${api2.port}/`);
      await page.fill('#signin [name=username]', user);
      await page.fill('#signin [name=password]', PW);
      await page.click('#signin button');
      await page.waitForSelector('#account:not([hidden])');

      // Password: a typo in the repeat is caught on the page; then it changes.
      await page.fill('#password-change [name=currentPassword]', PW);
      await page.fill('#password-change [name=newPassword]', 'Brand-new-pass-7');
      await page.fill('#password-change [name=again]', 'Brand-new-pass-8');
      await page.click('#password-change button');
      await section('password').filter({ hasText: 'The two new passwords are not the same.' }).waitFor();
      await page.fill('#password-change [name=again]', 'Brand-new-pass-7');
      await page.click('#password-change button');
      await section('password').filter({ hasText: 'Password changed.' }).waitFor();
      expect(await app2.auth.authenticate({ username: user, secret: 'Brand-new-pass-7', scope: 'master', ip: '127.0.0.1', protocol: 'http' })).toMatchObject({
        ok: true,
      });

      // The step-up window (1 s) has passed: saving the email first asks for the password again.
      await page.waitForTimeout(1200);
      await page.fill('#email-set [name=email]', `${user}@example.org`);
      await page.click('#email-set button');
      await page.waitForSelector('#stepup:not([hidden])');
      await page.fill('#stepup-form [name=password]', 'Wrong-pass-9');
      await page.click('#stepup-form button[type=submit]');
      await section('stepup').filter({ hasText: 'That user name and password do not match.' }).waitFor();
      await page.fill('#stepup-form [name=password]', 'Brand-new-pass-7');
      await page.click('#stepup-form button[type=submit]');
      await section('email')
        .filter({ hasText: `Security notices will go to ${user}@example.org.` })
        .waitFor();
      expect((await app2.store.users.findByName(user))?.email).toBe(`${user}@example.org`);

      // Two-factor on, new recovery codes, then off again with a recovery code.
      await page.click('#totp-setup');
      await page.waitForSelector('#totp-enrol:not([hidden])');
      const secret = (await page.textContent('#totp-secret'))!;
      await page.fill('#totp-enable [name=code]', await totpCode(secret, new Date()));
      await page.click('#totp-enable button');
      await page.waitForSelector('#twofactor-on:not([hidden])');
      await page.click('#recovery-new');
      await section('totp').filter({ hasText: 'New recovery codes made' }).waitFor();
      const codes = (await page.textContent('#recovery-codes'))!.split('\n');
      expect(codes).toHaveLength(10);
      await page.fill('#totp-disable [name=password]', 'Brand-new-pass-7');
      await page.fill('#totp-disable [name=code]', codes[0]!);
      await page.click('#totp-disable button');
      await section('totp').filter({ hasText: 'Two-factor authentication is off.' }).waitFor();
      expect(await page.textContent('#twofactor')).toBe('off');

      // An app password that expires in 30 days.
      await page.fill('#asp-create [name=description]', 'Laptop');
      await page.selectOption('#asp-create [name=expiresIn]', '30d');
      await page.click('#asp-create button');
      await section('apps').filter({ hasText: 'App password created.' }).waitFor();
      const [asp] = await app2.store.asps.listByUser((await app2.store.users.findByName(user))!.id);
      expect(Math.round((asp!.expiresAt!.getTime() - Date.now()) / 86_400_000)).toBe(30);

      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(width);
      // Another sign-in elsewhere, signed out from here; this page stays signed in.
      const elsewhere = await fetch(`http://127.0.0.1:${api2.port}/api/v1/session`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: user, password: 'Brand-new-pass-7' }),
      });
      const other = ((await elsewhere.json()) as { token: string }).token;
      await page.click('#signout-others');
      await page.waitForSelector('#message:has-text("One other session signed out.")');
      expect((await fetch(`http://127.0.0.1:${api2.port}/api/v1/me`, { headers: { authorization: `Bearer ${other}` } })).status).toBe(401);
      expect(await page.isVisible('#account')).toBe(true);
      // Sign out everywhere: this page is back at the sign-in form.
      await page.click('#signout-all');
      await page.waitForSelector('#signin:not([hidden])');
      expect(errors).toEqual([]);
      await page.close();
    }, 60_000);
  }

  for (const width of [1280, 375]) {
    it(`deletes the account from the page, after refusing a wrong password (${width} px)`, async () => {
      const user = `gone${width}`;
      await app2.accounts.createUser({ name: 'admin' }, { username: user, password: PW });
      const page = await browser.newPage({ viewport: { width, height: 900 } });
      await page.goto(`http://127.0.0.1:${api2.port}/`);
      await page.fill('#signin [name=username]', user);
      await page.fill('#signin [name=password]', PW);
      await page.click('#signin button');
      await page.waitForSelector('#account:not([hidden])');
      await page.fill('#delete-account [name=password]', 'Wrong-pass-9');
      await page.check('#delete-account [name=sure]');
      await page.click('#delete-account button');
      await page.locator('#delete .feedback').filter({ hasText: 'That user name and password do not match.' }).waitFor();
      expect(await app2.store.users.findByName(user)).not.toBeNull();
      await page.fill('#delete-account [name=password]', PW);
      await page.click('#delete-account button');
      await page.waitForSelector('#signin .feedback:has-text("Your account was deleted.")');
      expect(await app2.store.users.findByName(user)).toBeNull();
      await page.close();
    }, 60_000);
  }
});
