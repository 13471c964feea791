// Runs in a piscina worker thread: password hashing and PGP never touch the main event loop.
// Plain JavaScript so the same file serves the sources and the build. The scheme comes from
// core/password-schemes.ts, which recognised the stored hash.
import { createHash, pbkdf2Sync, scryptSync, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcrypt';
import { argon2Verify } from 'hash-wasm';
import * as openpgp from 'openpgp';
import { verify as cryptVerify } from 'unixcrypt';
import md5Crypt from 'apache-md5';
import desCrypt from 'unix-crypt-td-js';

const same = (a, b) => a.length === b.length && timingSafeEqual(a, b);
const b64 = (s) => Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/').replace(/\./g, '+'), 'base64');

/** Dovecot {SSHA256}/{SSHA512}: base64(digest(password + salt) + salt). */
function ssha(secret, hash, algorithm, size) {
  const raw = Buffer.from(hash, 'base64');
  if (raw.length <= size) return false;
  const salt = raw.subarray(size);
  return same(createHash(algorithm).update(secret).update(salt).digest(), raw.subarray(0, size));
}

/** A crypt(3)-style function (hash computed from the stored one as salt) compared in constant time. */
const cryptSame = (fn, secret, hash) => same(Buffer.from(fn(secret, hash)), Buffer.from(hash));

/** Dovecot {PBKDF2}: $1$salt$rounds$hex of PBKDF2-HMAC-SHA1 (20 bytes), the salt used as it is written. */
function dovecotPbkdf2(secret, hash) {
  const [, , salt, rounds, hex] = hash.split('$');
  return same(pbkdf2Sync(secret, salt, Number(rounds), 20, 'sha1'), Buffer.from(hex, 'hex'));
}

/** Wire's form: log2N|r|p|base64(salt)|base64(hash). */
function scrypt(secret, hash) {
  const [log2n, r, p, salt, digest] = hash.split('|');
  const want = Buffer.from(digest, 'base64');
  const N = 2 ** Number(log2n);
  const got = scryptSync(secret, Buffer.from(salt, 'base64'), want.length, { N, r: Number(r), p: Number(p), maxmem: 256 * N * Number(r) + 1024 * 1024 });
  return same(got, want);
}

/** PHC form as WildDuck stores it: $pbkdf2-sha512$i=25000[,l=64]$salt$hash. */
function pbkdf2(secret, hash) {
  const [, id, params, salt, digest] = hash.split('$');
  const algorithm = id.includes('-') ? id.split('-')[1] : 'sha1';
  const iterations = Number(/i=(\d+)/.exec(params)[1]);
  const want = b64(digest);
  return same(pbkdf2Sync(secret, b64(salt), iterations, want.length, algorithm), want);
}

/** Encrypts bytes to one armored public key; returns the armored PGP message. */
async function encrypt(armoredKey, data) {
  const encryptionKeys = await openpgp.readKey({ armoredKey });
  const message = await openpgp.createMessage({ binary: data });
  return openpgp.encrypt({ message, encryptionKeys, format: 'armored' });
}

export default async function cryptoTask({ op, secret, hash, scheme, cost, armoredKey, data }) {
  if (op === 'encrypt') return encrypt(armoredKey, data);
  if (op === 'hash') return bcrypt.hashSync(secret, cost);
  try {
    return await verify(secret, hash, scheme);
  } catch {
    // A damaged imported hash is a wrong password for that account, not an outage.
    return false;
  }
}

async function verify(secret, hash, scheme) {
  switch (scheme) {
    case 'bcrypt':
      // $2y$ (PHP, Dovecot) is the same algorithm as $2b$, which the bcrypt package reads.
      return bcrypt.compareSync(secret, hash.replace(/^\$2y\$/, '$2b$'));
    case 'sha512-crypt':
    case 'sha256-crypt':
      return cryptVerify(secret, hash);
    case 'md5-crypt':
      return cryptSame(md5Crypt, secret, hash);
    case 'des-crypt':
      return cryptSame(desCrypt, secret, hash);
    case 'ssha1':
      return ssha(secret, hash, 'sha1', 20);
    case 'dovecot-pbkdf2':
      return dovecotPbkdf2(secret, hash);
    case 'ssha256':
      return ssha(secret, hash, 'sha256', 32);
    case 'ssha512':
      return ssha(secret, hash, 'sha512', 64);
    case 'argon2':
      return argon2Verify({ password: secret, hash });
    case 'scrypt':
      return scrypt(secret, hash);
    case 'pbkdf2':
      return pbkdf2(secret, hash);
    default:
      return false;
  }
}
