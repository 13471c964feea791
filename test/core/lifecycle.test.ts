// Account and session lifecycle: credentials that change take effect everywhere at once.
import { beforeEach, describe, expect, it } from 'vitest';
import type { SignInRequest } from '../../src/core/web-sessions.js';
import { totpCode } from '../../src/core/totp.js';
import { PASSWORD, actor, testCore, type TestCore } from '../helpers/core.js';

let c: TestCore;
const signIn = (extra: Partial<SignInRequest> = {}) => c.sessions.signIn({ username: 'alice', password: PASSWORD, ip: '192.0.2.10', userAgent: 'test', ...extra });
const ok = async (extra: Partial<SignInRequest> = {}) => {
  const r = await signIn(extra);
  if (!r.ok) throw new Error(`sign-in refused: ${r.reason}`);
  return r;
};

async function enableTotp(): Promise<string> {
  const { secret } = await c.accounts.setupTotp(actor, 'alice');
  await c.accounts.confirmTotp(actor, 'alice', await totpCode(secret, c.clock.now()));
  return secret;
}

beforeEach(async () => {
  c = await testCore();
  await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
});

describe('trusted devices', () => {
  it('are never issued for a second factor that was not checked', async () => {
    // No 2FA: a made-up code is ignored, and so is the wish to trust the device.
    for (const secondFactor of [{ kind: 'totp', code: '000000' }, { kind: 'recovery', code: 'abcd-efgh-ijkl' }] as const) {
      expect((await ok({ trustDevice: true, secondFactor })).deviceToken).toBeNull();
    }
    expect(await c.sessions.listDevices((await c.accounts.get('alice')).id)).toHaveLength(0);
  });

  it('are issued after a real second factor, skip it afterwards, and cannot mint more trust', async () => {
    c.clock.advance(60_000);
    const secret = await enableTotp();
    c.clock.advance(60_000);
    const first = await ok({ trustDevice: true, secondFactor: { kind: 'totp', code: await totpCode(secret, c.clock.now()) } });
    expect(first.deviceToken).toMatch(/^ptd_/);
    const onDevice = await ok({ deviceToken: first.deviceToken!, trustDevice: true, secondFactor: { kind: 'totp', code: '000000' } });
    expect(onDevice.deviceToken).toBeNull();
    expect(await c.sessions.listDevices((await c.accounts.get('alice')).id)).toHaveLength(1);
  });
});
