import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as openpgp from 'openpgp';

export interface GpgUser {
  publicKey: string;
  /** Decrypts the armored PGP message inside a stored (PGP/MIME) message with GnuPG. */
  decrypt(stored: string): string;
}

/** A key pair as a user makes it, its secret half imported into a private GnuPG home. */
export async function gpgUser(email: string): Promise<GpgUser> {
  // The curve25519 "legacy" form: the one GnuPG 2.2 reads.
  const keys = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ email }], format: 'armored' });
  const home = mkdtempSync('/tmp/postern-gnupg-');
  writeFileSync(join(home, 'secret.asc'), keys.privateKey);
  execFileSync('gpg', ['--homedir', home, '--batch', '--import', join(home, 'secret.asc')], { stdio: 'ignore' });
  return {
    publicKey: keys.publicKey,
    decrypt(stored) {
      const armored = stored.slice(stored.indexOf('-----BEGIN PGP MESSAGE-----'), stored.indexOf('-----END PGP MESSAGE-----') + 25);
      return execFileSync('gpg', ['--homedir', home, '--batch', '--quiet', '--decrypt'], { input: armored, encoding: 'utf8' });
    },
  };
}
