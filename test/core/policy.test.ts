import { describe, expect, it } from 'vitest';
import { totpCode } from '../../src/core/totp.js';
import type { AuthResult } from '../../src/core/types.js';
import { PASSWORD, actor, req, testCore } from '../helpers/core.js';

const reason = (r: AuthResult) => (r.ok ? 'ok' : r.reason);

describe('second-factor policy', () => {
  it('mandatory 2FA: mail clients are refused with why, the account page opens only to set it up', async () => {
    const c = await testCore();
    await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
    const { password: asp } = await c.accounts.createAsp(actor, 'alice', { description: '', scopes: ['imap'] });
    await c.policy.setFeature('admin', 'two_factor_required', { status: 'enabled', lock: 'locked' });
    const imap = await c.auth.authenticate(req('alice', PASSWORD, 'imap'));
    expect(imap).toMatchObject({ ok: false, reason: 'two_factor_setup_required' });
    expect((imap as { message: string }).message).toMatch(/required.*set it up/);
    expect(reason(await c.auth.authenticate(req('alice', asp, 'imap')))).toBe('two_factor_setup_required');
    expect(await c.auth.authenticate(req('alice', PASSWORD, 'master'))).toMatchObject({ ok: true, mustSetUpTwoFactor: true });

    const { secret } = await c.accounts.setupTotp(actor, 'alice');
    await c.accounts.confirmTotp(actor, 'alice', await totpCode(secret, c.clock.now()));
    expect(reason(await c.auth.authenticate(req('alice', asp, 'imap')))).toBe('ok');
    expect(reason(await c.auth.authenticate(req('alice', PASSWORD, 'imap')))).toBe('asp_required');
  });

  it('a starter account signs in with its temporary password and a recovery code, then must change the password', async () => {
    const c = await testCore();
    await c.policy.setFeature('admin', 'two_factor_required', { status: 'enabled', lock: 'locked' });
    const { user, recoveryCodes } = await c.accounts.createStarterUser(actor, { username: 'erin', password: PASSWORD });
    expect(user).toMatchObject({ twoFactor: true, totp: null, mustChangePassword: true });
    expect(reason(await c.auth.authenticate(req('erin', PASSWORD, 'imap')))).toBe('asp_required');
    expect(await c.auth.authenticate(req('erin', PASSWORD, 'master'))).toMatchObject({ ok: false, reason: 'second_factor_required', methods: ['recovery'] });
    const r = await c.auth.authenticate({ ...req('erin', PASSWORD, 'master'), secondFactor: { kind: 'recovery', code: recoveryCodes[0]! } });
    expect(r).toMatchObject({ ok: true, mustChangePassword: true, mustSetUpTwoFactor: false });
  });

  it('recommended 2FA: users without it are told at sign-in', async () => {
    const c = await testCore();
    await c.accounts.createUser(actor, { username: 'bob', password: PASSWORD });
    await c.policy.setFeature('admin', 'two_factor_recommended', { status: 'enabled', lock: 'locked' });
    expect(await c.auth.authenticate(req('bob', PASSWORD, 'master'))).toMatchObject({ ok: true, notices: ['two_factor_recommended'] });
    expect(reason(await c.auth.authenticate(req('bob', PASSWORD, 'imap')))).toBe('ok');
  });

  it('lets a domain override an unlocked feature, and refuses the override once it is locked', async () => {
    const c = await testCore();
    await c.accounts.createUser(actor, { username: 'carol@strict.example', password: PASSWORD });
    await c.accounts.createUser(actor, { username: 'dave@relaxed.example', password: PASSWORD });
    await c.policy.setDomainFeature('admin', 'strict.example', 'two_factor_required', 'enabled');
    expect(reason(await c.auth.authenticate(req('carol@strict.example', PASSWORD, 'imap')))).toBe('two_factor_setup_required');
    expect(reason(await c.auth.authenticate(req('dave@relaxed.example', PASSWORD, 'imap')))).toBe('ok');

    await c.policy.setFeature('admin', 'two_factor_required', { status: 'disabled', lock: 'locked' });
    expect(reason(await c.auth.authenticate(req('carol@strict.example', PASSWORD, 'imap')))).toBe('ok');
    await expect(c.policy.setDomainFeature('admin', 'relaxed.example', 'two_factor_required', 'enabled')).rejects.toMatchObject({ code: 'conflict' });
    const { events } = await c.store.audit.query({ action: 'policy.update', limit: 10 }, c.clock.now());
    expect(events.map((e) => e.reason)).toEqual(['two_factor_required=disabled,locked', 'strict.example:two_factor_required=enabled']);
  });
});
