import { randomInt } from 'node:crypto';
import { keyedHash } from './keyed-hash.js';

// No 0/o/1/l/i: codes are read off paper.
const ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789';

/** A code like `k7pq-m2xa-9dfh` (12 symbols, ≈59 bits). */
export function generateRecoveryCode(): string {
  let s = '';
  for (let i = 0; i < 12; i++) s += ALPHABET[randomInt(ALPHABET.length)];
  return s.match(/.{4}/g)!.join('-');
}

export function normalizeRecoveryCode(input: string): string {
  return input.replace(/[\s-]+/g, '').toLowerCase();
}

/**
 * Codes are random and long, so a keyed fast hash is enough: bcrypt would add ~0.3 s per
 * stored code at every use with no gain, and the server key keeps a stolen database from
 * being checked offline.
 */
export function hashRecoveryCode(key: Buffer, userId: string, code: string): string {
  return keyedHash(key, 'recovery', userId, normalizeRecoveryCode(code));
}
