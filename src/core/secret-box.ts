import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { PosternError } from './errors.js';

/**
 * Seals small secrets (TOTP seeds) with AES-256-GCM. The sealed form names its key id, so
 * after a rotation old seeds still open with the old key while new ones use the current key.
 * Format: `v1.<keyId>.<iv>.<tag>.<ciphertext>` (base64url parts).
 */
export class SecretBox {
  constructor(
    private readonly keys: ReadonlyMap<string, Buffer>,
    private readonly currentKeyId: string,
  ) {
    for (const [id, key] of keys) {
      if (key.length !== 32) throw new PosternError('config_invalid', `secret key "${id}" must be 32 bytes`);
      if (!/^[A-Za-z0-9_-]+$/.test(id)) throw new PosternError('config_invalid', `secret key id "${id}" must be [A-Za-z0-9_-]`);
    }
    if (!keys.has(currentKeyId)) {
      throw new PosternError('config_invalid', `current secret key "${currentKeyId}" is not among the configured keys`);
    }
  }

  seal(plaintext: string, context: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.keys.get(this.currentKeyId)!, iv);
    // The context (e.g. user id) is bound as AAD so a sealed seed cannot be moved to another account.
    cipher.setAAD(Buffer.from(context));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const parts = [iv, cipher.getAuthTag(), ct].map((b) => b.toString('base64url'));
    return ['v1', this.currentKeyId, ...parts].join('.');
  }

  open(sealed: string, context: string): string {
    const [version, keyId, iv, tag, ct] = sealed.split('.');
    const key = keyId ? this.keys.get(keyId) : undefined;
    if (version !== 'v1' || !key || iv === undefined || tag === undefined || ct === undefined) {
      throw new PosternError('secret_unreadable', `sealed secret uses unknown key "${keyId ?? ''}"`);
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
      decipher.setAAD(Buffer.from(context));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8');
    } catch {
      throw new PosternError('secret_unreadable', 'sealed secret failed authentication (wrong key or tampered)');
    }
  }

  keyIdOf(sealed: string): string | undefined {
    return sealed.split('.')[1];
  }
}
