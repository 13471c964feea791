import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config/load.js';
import { waitFor } from './helpers/ports.js';

const base = () => ({ POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-plugins-')), POSTERN_AUTH__BCRYPT_ROUNDS: '10', POSTERN_LOG__LEVEL: 'silent' });

describe('plugins', () => {
  it('the shipped audit-jsonl plugin writes every audit event as a JSON line, without secrets', async () => {
    const env = { ...base(), POSTERN_PLUGINS__LOAD: JSON.stringify([resolve(__dirname, '../plugins/audit-jsonl.mjs')]) };
    const app = await createApp(loadConfig({ env }));
    try {
      await app.accounts.createUser({ name: 'admin' }, { username: 'alice', password: 'Account-pass-1' });
      await app.auth.authenticate({ username: 'alice', secret: 'Wrong-pass-1!', scope: 'imap', ip: '192.0.2.4', protocol: 'imap' });
      const file = join(env.POSTERN_SERVER__DATA_DIR, 'audit.jsonl');
      const lines = await waitFor('audit lines', async () => {
        const l = readFileSync(file, 'utf8').trim().split('\n').map((x) => JSON.parse(x) as Record<string, unknown>);
        if (l.length < 2) throw new Error('not yet');
        return l;
      });
      expect(lines.map((e) => e.action)).toEqual(['user.create', 'auth']);
      expect(lines[1]).toMatchObject({ result: 'failure', reason: 'invalid_credentials', ip: '192.0.2.4', protocol: 'imap' });
      expect(readFileSync(file, 'utf8')).not.toContain('Wrong-pass-1!');
    } finally {
      await app.close();
    }
  });

  it('stops the start with the key named when a plugin cannot be loaded or exports no function', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postern-bad-plugin-'));
    writeFileSync(join(dir, 'empty.mjs'), 'export const nothing = 1;\n');
    await expect(createApp(loadConfig({ env: { ...base(), POSTERN_PLUGINS__LOAD: JSON.stringify([join(dir, 'missing.mjs')]) } }))).rejects.toThrow(/plugins\.load: cannot load/);
    await expect(createApp(loadConfig({ env: { ...base(), POSTERN_PLUGINS__LOAD: JSON.stringify([join(dir, 'empty.mjs')]) } }))).rejects.toThrow(/has no default export function/);
  });
});
