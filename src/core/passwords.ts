import bcrypt from 'bcryptjs';
import type { Hasher } from './ports.js';

/**
 * bcrypt via bcryptjs. Its async API works in small slices between event-loop turns, so a
 * 0.3 s check does not freeze other sessions; a worker pool can replace this Hasher.
 */
export function bcryptHasher(rounds = 12): Hasher {
  return {
    hash: (secret) => bcrypt.hash(secret, rounds),
    verify: async (secret, hash) => {
      if (!/^\$2[aby]\$\d\d\$/.test(hash)) return false;
      return bcrypt.compare(secret, hash);
    },
  };
}

/**
 * A real bcrypt hash of a random secret, compared against when the username is unknown so
 * that unknown users cost the same time as known ones.
 */
export async function makeDummyHash(hasher: Hasher): Promise<string> {
  const { randomBytes } = await import('node:crypto');
  return hasher.hash(randomBytes(18).toString('base64'));
}
