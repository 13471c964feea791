import { createHmac } from 'node:crypto';

/**
 * HMAC-SHA256 as hex: fingerprints of secrets that never reveal the secret itself. Tokens and
 * codes are looked up by this hash, never compared as strings, so no timing reveals them.
 */
export function keyedHash(key: Buffer, ...parts: string[]): string {
  const h = createHmac('sha256', key);
  // Length-prefix each part so ('ab','c') and ('a','bc') differ.
  for (const p of parts) h.update(`${Buffer.byteLength(p)}:${p}|`);
  return h.digest('hex');
}
