// Stored password hashes postern can check: its own bcrypt, and those of systems users are
// imported from (Dovecot's {SCHEME} prefixes, WildDuck's PBKDF2, Wire's scrypt form).
// Everything but bcrypt at the configured cost is replaced by bcrypt at the next good login.

export type PasswordScheme =
  'bcrypt' | 'sha512-crypt' | 'sha256-crypt' | 'md5-crypt' | 'des-crypt' | 'ssha1' | 'ssha256' | 'ssha512' | 'argon2' | 'scrypt' | 'pbkdf2' | 'dovecot-pbkdf2';

/** The cleartext of a {PLAIN} (or {CLEARTEXT}) entry, which is hashed at import and never stored; else null. */
export function plainPassword(stored: string): string | null {
  const m = /^\{(PLAIN|CLEARTEXT)\}(.+)$/s.exec(stored);
  return m ? m[2]! : null;
}

export interface ParsedHash {
  scheme: PasswordScheme;
  /** The hash without any {SCHEME} prefix, as the scheme's verifier expects it. */
  hash: string;
}

const PREFIXED: Record<string, PasswordScheme> = {
  'BLF-CRYPT': 'bcrypt',
  'SHA512-CRYPT': 'sha512-crypt',
  'SHA256-CRYPT': 'sha256-crypt',
  'MD5-CRYPT': 'md5-crypt',
  SSHA: 'ssha1',
  SSHA256: 'ssha256',
  SSHA512: 'ssha512',
  ARGON2ID: 'argon2',
  ARGON2I: 'argon2',
  PBKDF2: 'pbkdf2',
};

/** Dovecot's own PBKDF2 form: $1$salt$rounds$hex(PBKDF2-HMAC-SHA1, 20 bytes). */
const DOVECOT_PBKDF2 = /^\$1\$[^$]{1,64}\$\d{1,7}\$[0-9a-f]{40}$/;

const SHAPES: Array<[RegExp, PasswordScheme]> = [
  [/^\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}$/, 'bcrypt'],
  [/^\$6\$(rounds=\d+\$)?[^$]{1,16}\$[./A-Za-z0-9]{86}$/, 'sha512-crypt'],
  [/^\$5\$(rounds=\d+\$)?[^$]{1,16}\$[./A-Za-z0-9]{43}$/, 'sha256-crypt'],
  [/^\$1\$[^$]{1,8}\$[./A-Za-z0-9]{22}$/, 'md5-crypt'],
  [/^\$argon2(id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/, 'argon2'],
  [/^\$pbkdf2(-sha(1|256|512))?\$i=\d+(,l=\d+)?\$[A-Za-z0-9+/.=-]+\$[A-Za-z0-9+/.=-]+$/, 'pbkdf2'],
  [/^\d{1,2}\|\d{1,3}\|\d{1,3}\|[A-Za-z0-9+/=]+\|[A-Za-z0-9+/=]+$/, 'scrypt'],
];

/** Recognises a stored hash; null when postern cannot check it. */
export function parseStoredHash(stored: string): ParsedHash | null {
  const m = /^\{([A-Z0-9-]+)\}(.*)$/s.exec(stored);
  if (m) {
    const hash = m[2]!;
    // {CRYPT} is whatever crypt(3) made: the shape of the hash says which.
    if (m[1] === 'CRYPT') return /^[./A-Za-z0-9]{13}$/.test(hash) ? { scheme: 'des-crypt', hash } : parseStoredHash(hash);
    if (m[1] === 'PBKDF2' && DOVECOT_PBKDF2.test(hash)) return { scheme: 'dovecot-pbkdf2', hash };
    const scheme = PREFIXED[m[1]!];
    if (!scheme) return null;
    if (scheme === 'ssha1') return /^[A-Za-z0-9+/]+={0,2}$/.test(hash) ? { scheme, hash } : null;
    if (scheme === 'ssha256' || scheme === 'ssha512') return /^[A-Za-z0-9+/]+={0,2}$/.test(hash) ? { scheme, hash } : null;
    return parseStoredHash(hash)?.scheme === scheme ? { scheme, hash } : null;
  }
  for (const [re, scheme] of SHAPES) if (re.test(stored)) return { scheme, hash: stored };
  return null;
}

/** True when the stored hash should be replaced by bcrypt at `cost` after a good login. */
export function needsRehash(stored: string, cost: number): boolean {
  const p = parseStoredHash(stored);
  return !p || p.scheme !== 'bcrypt' || Number(p.hash.slice(4, 6)) < cost;
}
