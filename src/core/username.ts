import { invalid } from './errors.js';

/**
 * One normal form for usernames (trimmed, NFC, lower case) so that `Alice`, `ALICE` and a
 * decomposed `Ålice` are the same account and share one lockout.
 */
export function normalizeUsername(raw: string): string {
  return raw.trim().normalize('NFC').toLowerCase();
}

const USERNAME_RE = /^[\p{L}\p{N}._+-]+(@[\p{L}\p{N}.-]+)?$/u;

/** Normal form of a username being created; refuses names a mail client could not type. */
export function validUsername(raw: string): string {
  const name = normalizeUsername(raw);
  if (name.length < 1 || name.length > 254 || !USERNAME_RE.test(name)) {
    throw invalid('username must be letters, digits, . _ + - with an optional @domain (at most 254 characters)');
  }
  return name;
}

export function domainOf(username: string): string {
  const at = username.lastIndexOf('@');
  return at < 0 ? '' : username.slice(at + 1);
}
