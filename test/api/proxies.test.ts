import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { startApi } from '../../src/cli/serve.js';
import { loadConfig } from '../../src/config/load.js';

async function failedSignInSeenFrom(extraEnv: Record<string, string>): Promise<string | null> {
  const env = {
    POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-proxy-')),
    POSTERN_AUTH__BCRYPT_ROUNDS: '10',
    POSTERN_LOG__LEVEL: 'silent',
    POSTERN_API__PORT: '0',
    ...extraEnv,
  };
  const app = await createApp(loadConfig({ env }));
  const api = await startApi(app);
  try {
    await app.accounts.createUser({ name: 'admin' }, { username: 'alice', password: 'Account-pass-1' });
    await fetch(`http://127.0.0.1:${api.port}/api/v1/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': '198.51.100.1, 203.0.113.9' },
      body: JSON.stringify({ username: 'alice', password: 'Wrong-pass-1!' }),
    });
    const { events } = await app.store.audit.query({ username: 'alice', action: 'auth', limit: 1 }, new Date());
    return events[0]?.ip ?? null;
  } finally {
    await api.close();
    await app.close();
  }
}

describe('the web API behind a reverse proxy', () => {
  it('takes the client address from X-Forwarded-For only when the proxy is trusted', async () => {
    expect(await failedSignInSeenFrom({ POSTERN_API__TRUSTED_PROXIES: '["127.0.0.1/32"]' })).toBe('203.0.113.9');
    expect(await failedSignInSeenFrom({})).toBe('127.0.0.1');
  });
});

describe('metrics behind a token', () => {
  it('answers /metrics only with the configured bearer token', async () => {
    const env = {
      POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-metrics-')),
      POSTERN_LOG__LEVEL: 'silent',
      POSTERN_API__PORT: '0',
      POSTERN_API__METRICS_TOKEN: 'scrape-secret-1',
    };
    const app = await createApp(loadConfig({ env }));
    const api = await startApi(app);
    try {
      const get = (auth?: string) => fetch(`http://127.0.0.1:${api.port}/metrics`, { headers: auth ? { authorization: auth } : {} });
      expect((await get()).status).toBe(401);
      expect((await get('Bearer wrong-token')).status).toBe(401);
      const ok = await get('Bearer scrape-secret-1');
      expect(ok.status).toBe(200);
      expect(await ok.text()).toContain('postern_build_info');
    } finally {
      await api.close();
      await app.close();
    }
  });
});
