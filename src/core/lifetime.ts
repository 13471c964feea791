import { invalid } from './errors.js';

/** Longest lifetime an ASP or an API token may be given: ten years. Longer means "never". */
export const MAX_LIFETIME_MS = 3650 * 86_400_000;

/**
 * The expiry of something created `now` to live `ttlMs`, or null for no expiry. A lifetime
 * past the bound is refused, never stored as a date that cannot be read back.
 */
export function expiryAfter(now: Date, ttlMs: number | null | undefined, what: string): Date | null {
  if (ttlMs === null || ttlMs === undefined) return null;
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) throw invalid(`${what} must be a positive duration such as 90d`);
  if (ttlMs > MAX_LIFETIME_MS) throw invalid(`${what} must be at most 3650d; leave it out for no expiry`);
  return new Date(now.getTime() + ttlMs);
}
