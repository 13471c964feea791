import { invalid } from './errors.js';

export interface PasswordPolicy {
  minLength: number;
  requireLower: boolean;
  requireUpper: boolean;
  requireDigit: boolean;
  requireSpecial: boolean;
}

/** Throws with every unmet rule named, so the user can fix the password in one go. */
export function checkPasswordPolicy(password: string, p: PasswordPolicy): void {
  const missing: string[] = [];
  if ([...password].length < p.minLength) missing.push(`at least ${p.minLength} characters`);
  if (p.requireLower && !/\p{Ll}/u.test(password)) missing.push('a lower-case letter');
  if (p.requireUpper && !/\p{Lu}/u.test(password)) missing.push('an upper-case letter');
  if (p.requireDigit && !/\p{Nd}/u.test(password)) missing.push('a digit');
  if (p.requireSpecial && !/[^\p{L}\p{Nd}]/u.test(password)) missing.push('a special character');
  if ([...password].length > 1024) missing.push('at most 1024 characters');
  if (missing.length) throw invalid(`password needs ${missing.join(', ')}`);
}
