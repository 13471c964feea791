import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { coreSettings } from '../src/config/settings.js';

const dir = mkdtempSync(join(tmpdir(), 'postern-config-'));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

describe('configuration', () => {
  it('loads the commented defaults', () => {
    const c = loadConfig({ env: {} });
    expect(c.limits.password_failures).toBe(5);
    expect(c.limits.password_window).toBe(60_000);
    expect(c.limits.totp_window).toBe(180_000);
    expect(c.audit.retention).toBe(30 * 86_400_000);
    expect(c.auth.bcrypt_rounds).toBe(12);
    expect(c.store.kind).toBe('embedded');
  });

  it('lets a second file, then POSTERN_* variables, override keys', () => {
    const f = file('a.toml', '[limits]\npassword_failures = 7\nip_window = "10m"\n');
    const c = loadConfig({ file: f, env: { POSTERN_LIMITS__PASSWORD_FAILURES: '9', POSTERN_REDIS__URL: 'redis://127.0.0.1:6390' } });
    expect(c.limits.password_failures).toBe(9);
    expect(c.limits.ip_window).toBe(600_000);
    expect(c.redis.url).toBe('redis://127.0.0.1:6390');
    expect(loadConfig({ env: { POSTERN_LIMITS__ALLOW_LIST: '["10.0.0.0/8"]' } }).limits.allow_list).toEqual(['10.0.0.0/8']);
  });

  it('stops with the key named and what it expects', () => {
    expect(() => loadConfig({ env: { POSTERN_LIMITS__PASSWORD_WINDOW: '"soon"' } })).toThrow(
      /limits\.password_window: expected a duration such as 500ms, 60s, 5m, 24h or 30d/,
    );
    expect(() => loadConfig({ env: { POSTERN_STORE__KIND: 'postgres' } })).toThrow(/store\.kind/);
    expect(() => loadConfig({ file: file('b.toml', '[auth]\nbcrypt_round = 12\n'), env: {} })).toThrow(/auth: unknown key\(s\) bcrypt_round/);
    expect(() => loadConfig({ file: file('c.toml', '[auth\n'), env: {} })).toThrow(/c\.toml/);
    expect(() => loadConfig({ file: join(dir, 'missing.toml'), env: {} })).toThrow(/does not exist/);
    expect(() => loadConfig({ env: { POSTERN_API__SESSION_TTL: '"2d"', POSTERN_API__TRUSTED_DEVICE_TTL: '"1d"' } })).toThrow(
      /api\.trusted_device_ttl: must be longer than api\.session_ttl/,
    );
    expect(() => loadConfig({ env: { POSTERN_IMAP__MAX_APPEND_SIZE: '1000', POSTERN_IMAP__MAX_APPEND_TOTAL: '999' } })).toThrow(
      /imap\.max_append_total: must be at least imap\.max_append_size/,
    );
    expect(loadConfig({ env: { POSTERN_API__TRUSTED_DEVICE_TTL: '"0d"' } }).api.trusted_device_ttl).toBe(0);
  });

  it('maps the keys that bound one-time challenges onto the core, instead of fixed numbers', () => {
    const d = coreSettings(loadConfig({ env: {} }));
    expect(d.emailCodes.tries).toBe(3);
    expect(d.securityKeys.challengeTtlMs).toBe(300_000);
    const c = coreSettings(loadConfig({ env: { POSTERN_AUTH__EMAIL_CODE_TRIES: '1', POSTERN_WEBAUTHN__CHALLENGE_TTL: '"90s"' } }));
    expect(c.emailCodes.tries).toBe(1);
    expect(c.securityKeys.challengeTtlMs).toBe(90_000);
  });
});
