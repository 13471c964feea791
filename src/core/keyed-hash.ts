import { createHmac, timingSafeEqual } from 'node:crypto';

/** HMAC-SHA256 as hex: fingerprints of secrets that never reveal the secret itself. */
export function keyedHash(key: Buffer, ...parts: string[]): string {
  const h = createHmac('sha256', key);
  // Length-prefix each part so ('ab','c') and ('a','bc') differ.
  for (const p of parts) h.update(`${Buffer.byteLength(p)}:${p}|`);
  return h.digest('hex');
}

export function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
