import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config/load.js';
import { startListeners, type RunningListeners } from '../../src/protocols/servers.js';
import { startDovecot, type Dovecot } from './dovecot.js';
import { freePort } from './ports.js';
import { startPostfix, type Postfix } from './postfix.js';

export interface Gateway {
  app: App;
  listeners: RunningListeners;
  dovecot: Dovecot;
  postfix: Postfix | null;
  ports: { imap: number; imaps: number; pop3: number; pop3s: number; submission: number; submissions: number; lmtp: number };
  /** A user known to postern and to the upstream (with its own upstream password). */
  addUser(name: string, password: string): Promise<void>;
  stop(): Promise<void>;
}

/** postern in front of a real Dovecot (and Postfix for submission), all on free ports. */
export async function startGateway(
  opts: {
    postfix?: boolean;
    env?: Record<string, string>;
    upstreamTls?: { cert: string; key: string };
    /** Reach Dovecot's haproxy listeners, a PROXY header of this version first. */
    upstreamProxy?: 'v1' | 'v2';
  } = {},
): Promise<Gateway> {
  const dovecot = await startDovecot({ tls: opts.upstreamTls });
  let postfix: Postfix | null = null;
  try {
    postfix = opts.postfix ? await startPostfix(dovecot.lmtpPort, dovecot.authPort) : null;
  } catch (err) {
    await dovecot.stop();
    throw err;
  }
  const p = {
    imap: await freePort(),
    imaps: await freePort(),
    pop3: await freePort(),
    pop3s: await freePort(),
    submission: await freePort(),
    submissions: await freePort(),
    lmtp: await freePort(),
  };
  const env: Record<string, string> = {
    POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-gw-')),
    POSTERN_SERVER__HOSTNAME: 'localhost',
    POSTERN_AUTH__BCRYPT_ROUNDS: '10',
    POSTERN_LOG__LEVEL: 'silent',
    POSTERN_IMAP__PORT: String(p.imap),
    POSTERN_IMAP__TLS_PORT: String(p.imaps),
    POSTERN_POP3__PORT: String(p.pop3),
    POSTERN_POP3__TLS_PORT: String(p.pop3s),
    POSTERN_SUBMISSION__PORT: String(p.submission),
    POSTERN_SUBMISSION__TLS_PORT: String(p.submissions),
    POSTERN_LMTP__PORT: String(p.lmtp),
    POSTERN_UPSTREAM__IMAP_PORT: String(dovecot.imapPort),
    POSTERN_UPSTREAM__POP3_PORT: String(dovecot.pop3Port),
    POSTERN_UPSTREAM__LMTP_PORT: String(dovecot.lmtpPort),
    POSTERN_UPSTREAM__SMTP_PORT: String(postfix?.smtpPort ?? 9),
    POSTERN_UPSTREAM__MASTER_USER: dovecot.masterUser,
    POSTERN_UPSTREAM__MASTER_PASSWORD: dovecot.masterPassword,
    POSTERN_UPSTREAM__CONNECT_TIMEOUT: '"3s"',
    ...(opts.upstreamProxy
      ? {
          POSTERN_UPSTREAM__PROXY_PROTOCOL: `"${opts.upstreamProxy}"`,
          POSTERN_UPSTREAM__IMAP_PORT: String(dovecot.imapProxyPort),
          POSTERN_UPSTREAM__POP3_PORT: String(dovecot.pop3ProxyPort),
        }
      : {}),
    ...opts.env,
  };
  const app = await createApp(loadConfig({ env }));
  const listeners = await startListeners(app);
  return {
    app,
    listeners,
    dovecot,
    postfix,
    ports: p,
    async addUser(name, password) {
      await app.accounts.createUser({ name: 'test' }, { username: name, password });
      dovecot.addUser(name, `upstream-${password}`);
    },
    async stop() {
      await listeners.close();
      await app.close();
      postfix?.stop();
      await dovecot.stop();
    },
  };
}
