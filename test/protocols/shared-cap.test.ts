import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config/load.js';
import { startListeners, type RunningListeners } from '../../src/protocols/servers.js';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';
import { RawClient } from '../helpers/raw-client.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

const PW = 'Account-pass-1';
let redis: RedisServer;
let gw: Gateway;
let second: { app: App; listeners: RunningListeners; imap: number };

/** A second postern process's worth: same store, same Redis, same Dovecot, its own listeners. */
async function secondPostern(): Promise<typeof second> {
  const imap = await freePort();
  const cfg = gw.app.config;
  const app = await createApp(
    loadConfig({
      env: {
        POSTERN_SERVER__DATA_DIR: cfg.server.data_dir,
        POSTERN_LOG__LEVEL: 'silent',
        POSTERN_REDIS__URL: redis.url,
        POSTERN_IMAP__PORT: String(imap),
        POSTERN_IMAP__TLS_PORT: '0',
        POSTERN_IMAP__MAX_SESSIONS_PER_USER: '2',
        POSTERN_POP3__ENABLED: 'false',
        POSTERN_SUBMISSION__ENABLED: 'false',
        POSTERN_LMTP__ENABLED: 'false',
        POSTERN_UPSTREAM__IMAP_PORT: String(cfg.upstream.imap_port),
        POSTERN_UPSTREAM__MASTER_USER: cfg.upstream.master_user,
        POSTERN_UPSTREAM__MASTER_PASSWORD: cfg.upstream.master_password,
      },
    }),
  );
  return { app, listeners: await startListeners(app), imap };
}

async function login(port: number, tag = 'a'): Promise<{ c: RawClient; answer: string }> {
  const c = await RawClient.open(port);
  await c.until(/^\* OK/);
  c.write(`${tag} LOGIN alice ${PW}\r\n`);
  return { c, answer: await c.until(new RegExp(`^${tag} `)) };
}

beforeAll(async () => {
  redis = await startRedis();
  gw = await startGateway({ env: { POSTERN_REDIS__URL: redis.url, POSTERN_IMAP__MAX_SESSIONS_PER_USER: '2' } });
  await gw.addUser('alice', PW);
  second = await secondPostern();
}, 60_000);
afterAll(async () => {
  await second?.listeners.close();
  await second?.app.close();
  await gw?.stop();
  await redis?.stop();
});

describe('per-user session cap across postern processes', () => {
  it('counts sessions on every process sharing Redis, and frees a slot when a session ends', async () => {
    const one = await login(gw.ports.imap);
    const two = await login(second.imap);
    expect(one.answer).toMatch(/^a OK/m);
    expect(two.answer).toMatch(/^a OK/m);
    const three = await login(second.imap);
    expect(three.answer).toMatch(/^a NO \[IN-USE\]/m);
    one.c.close();
    await new Promise((r) => setTimeout(r, 300));
    three.c.write(`b LOGIN alice ${PW}\r\n`);
    expect(await three.c.until(/^b /)).toMatch(/^b OK/m);
    two.c.close();
    three.c.close();
  });
});
