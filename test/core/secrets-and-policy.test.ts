import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { aspPrefixHash, formatAsp, generateAspSecret, normalizeAspInput, parseAspScopes } from '../../src/core/asp.js';
import { checkPasswordPolicy } from '../../src/core/password-policy.js';
import { SecretBox } from '../../src/core/secret-box.js';

const policy = { minLength: 8, requireLower: true, requireUpper: true, requireDigit: true, requireSpecial: true };

describe('secret box (TOTP seeds at rest)', () => {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);

  it('opens seeds sealed under an old key after rotating to a new one', () => {
    const old = new SecretBox(new Map([['k1', k1]]), 'k1');
    const sealed = old.seal('JBSWY3DPEHPK3PXP', 'user-1');
    const rotated = new SecretBox(
      new Map([
        ['k1', k1],
        ['k2', k2],
      ]),
      'k2',
    );
    expect(rotated.open(sealed, 'user-1')).toBe('JBSWY3DPEHPK3PXP');
    expect(rotated.keyIdOf(rotated.seal('x', 'user-1'))).toBe('k2');
  });

  it('refuses a tampered seal, a seal moved to another user, and an unknown key', () => {
    const box = new SecretBox(new Map([['k1', k1]]), 'k1');
    const sealed = box.seal('JBSWY3DPEHPK3PXP', 'user-1');
    const parts = sealed.split('.');
    parts[4] = Buffer.from('AAAAAAAAAAAAAAAA').toString('base64url');
    expect(() => box.open(parts.join('.'), 'user-1')).toThrow(/failed authentication/);
    expect(() => box.open(sealed, 'user-2')).toThrow(/failed authentication/);
    const other = new SecretBox(new Map([['k9', k2]]), 'k9');
    expect(() => other.open(sealed, 'user-1')).toThrow(/unknown key "k1"/);
  });

  it('refuses a configuration whose current key is missing or short', () => {
    expect(() => new SecretBox(new Map([['k1', k1]]), 'k2')).toThrow(/current secret key "k2"/);
    expect(() => new SecretBox(new Map([['k1', randomBytes(16)]]), 'k1')).toThrow(/32 bytes/);
  });
});

describe('ASP format', () => {
  it('is 16 lowercase latin letters, grouped in fours for reading', () => {
    const s = generateAspSecret();
    expect(s).toMatch(/^[a-z]{16}$/);
    expect(formatAsp(s).replace(/ /g, '')).toBe(s);
    expect(normalizeAspInput(` ${formatAsp(s).toUpperCase()} `)).toBe(s);
    expect(normalizeAspInput('abcd efgh ijkl mno')).toBeNull();
    expect(normalizeAspInput('abcd efgh ijkl mno1')).toBeNull();
  });

  it('keys candidates by the md5 of the first four letters only', () => {
    expect(aspPrefixHash('abcdxxxxxxxxxxxx')).toBe(aspPrefixHash('abcdyyyyyyyyyyyy'));
    expect(aspPrefixHash('abcdxxxxxxxxxxxx')).toBe('e2fc714c4727ee9395f324cd2e7f331f');
  });

  it('parses scopes, expands * and never allows master', () => {
    expect(parseAspScopes('imap, SMTP')).toEqual(['imap', 'smtp']);
    expect(parseAspScopes('*')).toEqual(['imap', 'pop3', 'smtp']);
    expect(() => parseAspScopes('imap,master')).toThrow(/master/);
    expect(() => parseAspScopes('ftp')).toThrow(/unknown scope "ftp"/);
    expect(() => parseAspScopes('')).toThrow(/at least one scope/);
  });
});

describe('password policy', () => {
  it('names every unmet rule', () => {
    expect(() => checkPasswordPolicy('abc', policy)).toThrow('password needs at least 8 characters, an upper-case letter, a digit, a special character');
    expect(() => checkPasswordPolicy('Abcdefg1!', policy)).not.toThrow();
    expect(() => checkPasswordPolicy('Ünïcödé-9', policy)).not.toThrow();
  });
});
