import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config/load.js';
import { waitFor } from './helpers/ports.js';

const base = () => ({
  POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-plugins-')),
  POSTERN_AUTH__BCRYPT_ROUNDS: '10',
  POSTERN_LOG__LEVEL: 'silent',
});

describe('plugins', () => {
  it('the shipped audit-jsonl plugin writes every audit event as a JSON line, without secrets', async () => {
    const env = { ...base(), POSTERN_PLUGINS__LOAD: JSON.stringify([resolve(__dirname, '../plugins/audit-jsonl.mjs')]) };
    const app = await createApp(loadConfig({ env }));
    try {
      await app.accounts.createUser({ name: 'admin' }, { username: 'alice', password: 'Account-pass-1' });
      await app.auth.authenticate({ username: 'alice', secret: 'Wrong-pass-1!', scope: 'imap', ip: '192.0.2.4', protocol: 'imap' });
      const file = join(env.POSTERN_SERVER__DATA_DIR, 'audit.jsonl');
      const lines = await waitFor('audit lines', async () => {
        const l = readFileSync(file, 'utf8')
          .trim()
          .split('\n')
          .map((x) => JSON.parse(x) as Record<string, unknown>);
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
    await expect(createApp(loadConfig({ env: { ...base(), POSTERN_PLUGINS__LOAD: JSON.stringify([join(dir, 'missing.mjs')]) } }))).rejects.toThrow(
      /plugins\.load: cannot load/,
    );
    await expect(createApp(loadConfig({ env: { ...base(), POSTERN_PLUGINS__LOAD: JSON.stringify([join(dir, 'empty.mjs')]) } }))).rejects.toThrow(
      /has no default export function/,
    );
  });

  it('hands plugins the configuration without its secrets, and frozen', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postern-spy-plugin-'));
    const out = join(dir, 'seen.json');
    writeFileSync(
      join(dir, 'spy.mjs'),
      `import { writeFileSync } from 'node:fs';
export default (api) => {
  let frozen = false;
  try { api.config.upstream.master_password = 'x'; } catch { frozen = true; }
  writeFileSync(${JSON.stringify(out)}, JSON.stringify({ config: api.config, frozen }));
};
`,
    );
    const env = {
      ...base(),
      POSTERN_PLUGINS__LOAD: JSON.stringify([join(dir, 'spy.mjs')]),
      POSTERN_UPSTREAM__MASTER_PASSWORD: 'Master-secret-42',
      POSTERN_REDIS__URL: 'redis://:Redis-secret-7@127.0.0.1:1',
      POSTERN_STORE__MONGODB_URL: 'mongodb://postern:Mongo-secret-9@db1,db2/postern',
    };
    const app = await createApp(loadConfig({ env }));
    await app.close();
    const seen = readFileSync(out, 'utf8');
    for (const secret of ['Master-secret-42', 'Redis-secret-7', 'Mongo-secret-9']) expect(seen).not.toContain(secret);
    const { config, frozen } = JSON.parse(seen) as { config: { store: { mongodb_url: string }; upstream: { host: string } }; frozen: boolean };
    expect(frozen).toBe(true);
    expect(config.store.mongodb_url).toBe('mongodb://postern:[redacted]@db1,db2/postern');
    expect(config.upstream.host).toBe('127.0.0.1');
  });
});
