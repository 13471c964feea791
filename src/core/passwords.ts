import { randomBytes } from 'node:crypto';
import type { Hasher } from './ports.js';

/**
 * A real bcrypt hash of a random secret, compared against when the username is unknown so
 * that unknown users cost the same time as known ones.
 */
export function makeDummyHash(hasher: Hasher): Promise<string> {
  return hasher.hash(randomBytes(18).toString('base64'));
}
