import { invalid } from './errors.js';

// Hand-written because it must be strict: `ms` (the usual package) accepts many loose forms
// ("1.5 hours", bare numbers) and returns undefined rather than saying what is wrong.
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "60s" → 60000; null when it is not <integer><ms|s|m|h|d>. */
export function parseDuration(text: string): number | null {
  const m = /^(\d+)\s*(ms|s|m|h|d)$/.exec(text.trim());
  return m ? Number(m[1]) * UNITS[m[2]!]! : null;
}

/** An optional lifetime from user input (CLI flag, API field): null when absent, else > 0. */
export function optionalLifetime(text: string | undefined, what: string): number | null {
  if (text === undefined) return null;
  const ms = parseDuration(text);
  if (!ms) throw invalid(`${what} expects a positive duration such as 90d, not "${text}"`);
  return ms;
}
