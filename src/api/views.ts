import type { User } from '../core/types.js';

/** What the API shows of an account: never hashes or sealed seeds. */
export const userView = (u: User) => ({
  id: u.id,
  username: u.username,
  role: u.role,
  status: u.status,
  email: u.email,
  twoFactor: u.twoFactor,
  totp: u.totp !== null,
  mustChangePassword: u.mustChangePassword,
  pgp: u.pgp ? { fingerprint: u.pgp.fingerprint, encrypt: u.pgp.encrypt } : null,
  createdAt: u.createdAt.toISOString(),
});
