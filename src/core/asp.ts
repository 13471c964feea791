import { createHash, randomInt } from 'node:crypto';
import { invalid } from './errors.js';
import { PROTOCOL_SCOPES, type ProtocolScope } from './types.js';

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';
export const ASP_LENGTH = 16;

/** 16 random lowercase latin letters (≈75 bits). */
export function generateAspSecret(): string {
  let s = '';
  for (let i = 0; i < ASP_LENGTH; i++) s += LETTERS[randomInt(LETTERS.length)];
  return s;
}

/** Grouped in fours for reading: `abcd efgh ijkl mnop`. */
export function formatAsp(secret: string): string {
  return secret.match(/.{1,4}/g)!.join(' ');
}

/** What a user typed, with spaces dropped; null if it cannot be an ASP. */
export function normalizeAspInput(input: string): string | null {
  const s = input.replace(/\s+/g, '').toLowerCase();
  return /^[a-z]{16}$/.test(s) ? s : null;
}

/** md5 of the first 4 letters: only picks candidates, never proves anything. */
export function aspPrefixHash(secret: string): string {
  return createHash('md5').update(secret.slice(0, 4)).digest('hex');
}

/** Parses `imap,smtp` or `*`; master is never allowed for an ASP. */
export function parseAspScopes(input: string | string[]): ProtocolScope[] {
  const parts = (Array.isArray(input) ? input : input.split(',')).map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (parts.length === 0) throw invalid('an ASP needs at least one scope: imap, pop3, smtp or *');
  if (parts.includes('*')) return [...PROTOCOL_SCOPES];
  const out = new Set<ProtocolScope>();
  for (const p of parts) {
    if (p === 'master') throw invalid('an ASP can never have the master scope');
    if (!(PROTOCOL_SCOPES as readonly string[]).includes(p)) {
      throw invalid(`unknown scope "${p}": use imap, pop3, smtp or *`);
    }
    out.add(p as ProtocolScope);
  }
  return [...out];
}
