import type { NginxSettings } from '../api/routes/nginx.js';
import { buildApi } from '../api/server.js';
import { networkMatcher } from '../protocols/limits.js';
import { createApp, type App } from '../app.js';
import type { Config } from '../config/load.js';
import { startListeners } from '../protocols/servers.js';

const HOUR = 3_600_000;

function nginxSettings(cfg: Config): NginxSettings | undefined {
  if (!cfg.nginx.enabled) return undefined;
  const up = cfg.upstream;
  return {
    allowed: networkMatcher(cfg.nginx.allow),
    upstreamHost: up.host,
    ports: { imap: up.imap_port, pop3: up.pop3_port, smtp: up.smtp_port },
    upstreamLogin: (username) => ({ user: `${username}${up.master_separator}${up.master_user}`, pass: up.master_password }),
  };
}

/** The web API on its configured address. */
export async function startApi(app: App): Promise<{ port: number; close(): Promise<void> }> {
  const api = await buildApi({
    store: app.store,
    auth: app.auth,
    accounts: app.accounts,
    sessions: app.sessions,
    policy: app.policy,
    emailCodes: app.emailCodes,
    securityKeys: app.securityKeys,
    clock: app.clock,
    metrics: app.config.api.metrics ? app.metrics.registry : undefined,
    nginx: nginxSettings(app.config),
  });
  await api.listen({ host: app.config.api.host, port: app.config.api.port });
  const a = api.server.address();
  return { port: typeof a === 'object' && a ? a.port : app.config.api.port, close: () => api.close() };
}

/** Runs postern until SIGINT/SIGTERM; SIGHUP reloads the TLS certificate. */
export async function serve(config: Config): Promise<void> {
  const app = await createApp(config);
  const { log } = app;
  const maintain = async () => {
    try {
      const moved = await app.audit.flushFallback();
      if (moved) log.info({ moved }, 'spooled audit events written to the store');
      const purged = await app.store.audit.purgeExpired(app.clock.now());
      if (purged) log.info({ purged }, 'expired audit events removed');
      const sessions = await app.sessions.purgeExpired();
      if (sessions) log.info({ sessions }, 'expired sessions and trusted devices removed');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'audit maintenance failed; will retry');
    }
  };
  await maintain();
  const timer = setInterval(maintain, HOUR);
  // Events spooled while the audit store was down go back as soon as it answers again.
  const spoolTimer = setInterval(() => {
    app.audit.flushFallback().then(
      (moved) => moved && log.info({ moved }, 'spooled audit events written to the store'),
      () => {},
    );
  }, 30_000);
  // One stray rejection must not drop every client's session: log it and keep serving.
  process.on('unhandledRejection', (err) => log.error({ err: err instanceof Error ? err.message : String(err) }, 'unhandled rejection'));
  if (!config.upstream.master_password) {
    log.warn('upstream.master_password is empty: logins that pass will get "try again later" until it is set');
  }
  const listeners = await startListeners(app);
  const api = config.api.enabled ? await startApi(app) : null;
  const up = config.upstream;
  const h = (host: string, ports: number[]) => ports.map((p) => `${host}:${p}`).join(', ') || 'off';
  log.info(
    {
      imap: h(config.imap.host, listeners.ports.imap),
      pop3: h(config.pop3.host, listeners.ports.pop3),
      submission: h(config.submission.host, listeners.ports.submission),
      lmtp: h(config.lmtp.host, listeners.ports.lmtp),
      api: api ? `http://${config.api.host}:${api.port}/ (docs at /docs)` : 'off',
      upstream: `imap ${up.host}:${up.imap_port}, pop3 ${up.host}:${up.pop3_port}, smtp ${up.host}:${up.smtp_port}, lmtp ${up.host}:${up.lmtp_port}`,
      store: config.store.kind,
      redis: config.redis.url ? 'configured' : 'in-memory',
      certificate: listeners.tls.certFile,
    },
    'postern listening',
  );
  const onHup = () => {
    try {
      listeners.tls.reload();
      log.info('TLS certificate reloaded');
    } catch (err) {
      log.error({ err: (err as Error).message }, 'TLS reload failed; keeping the old certificate');
    }
  };
  process.on('SIGHUP', onHup);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  process.off('SIGHUP', onHup);
  clearInterval(timer);
  clearInterval(spoolTimer);
  log.info('postern stopping');
  await listeners.close();
  await api?.close();
  await app.close();
}
