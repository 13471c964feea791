import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { PosternError } from '../core/errors.js';

export interface AppSecrets {
  currentKeyId: string;
  keys: Map<string, Buffer>;
  /** Key for HMACs: cache keys, failure fingerprints, recovery code hashes. */
  hmacKey: Buffer;
}

interface SecretsFile {
  current: string;
  keys: Record<string, string>;
  hmac: string;
}

/** Reads the keys file, creating it with fresh random keys (mode 0600) on first start. */
export function loadSecrets(path: string): AppSecrets {
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true });
    const fresh: SecretsFile = {
      current: 'k1',
      keys: { k1: randomBytes(32).toString('base64') },
      hmac: randomBytes(32).toString('base64'),
    };
    writeFileSync(path, `${JSON.stringify(fresh, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  }
  let raw: SecretsFile;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8')) as SecretsFile;
  } catch (err) {
    throw new PosternError('config_invalid', `secrets file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  const keys = new Map(Object.entries(raw.keys ?? {}).map(([id, b64]) => [id, Buffer.from(b64, 'base64')]));
  const hmacKey = Buffer.from(raw.hmac ?? '', 'base64');
  if (typeof raw.current !== 'string' || hmacKey.length < 32) {
    throw new PosternError('config_invalid', `secrets file ${path} needs "current", "keys" and a 32-byte base64 "hmac"`);
  }
  return { currentKeyId: raw.current, keys, hmacKey };
}
