import { connect } from 'node:net';
import { PosternError } from '../core/errors.js';
import { buildApi } from '../api/server.js';
import { createApp, type App } from '../app.js';
import { clientSetup, nginxSettings, profileSigner, redisSettings } from '../config/settings.js';
import { configuredRedis } from '../stores/redis-client.js';
import type { Config } from '../config/load.js';
import { startListeners } from '../protocols/servers.js';

const HOUR = 3_600_000;

/** Connects to host:port and hangs up: whether something listens there. */
function reachable(host: string, port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, timeout: timeoutMs });
    s.once('connect', () => {
      s.destroy();
      resolve();
    });
    s.once('timeout', () => {
      s.destroy();
      reject(new Error(`${host}:${port} does not answer`));
    });
    s.once('error', (err) => reject(new Error(`${host}:${port}: ${err.message}`)));
  });
}

/** What /readyz checks: the store, Redis when configured, the upstream, and postern's own state. */
function readinessChecks(app: App, state: { serving: () => boolean }): Record<string, () => Promise<void>> {
  const up = app.config.upstream;
  const checks: Record<string, () => Promise<void>> = {
    store: async () => void (await app.store.users.findByName('\0readiness')),
    upstream: () => reachable(up.host, up.imap_port, Math.min(up.connect_timeout, 2000)),
    listeners: async () => {
      if (!state.serving()) throw new Error('not serving (starting or shutting down)');
    },
  };
  if (configuredRedis(redisSettings(app.config))) checks.redis = async () => void (await app.cache.get('readiness'));
  return checks;
}

/** The web API on its configured address. */
export async function startApi(app: App, state: { serving: () => boolean } = { serving: () => true }): Promise<{ port: number; close(): Promise<void> }> {
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
    metricsToken: app.config.api.metrics_token,
    nginx: nginxSettings(app.config),
    readiness: readinessChecks(app, state),
    trustedProxies: app.config.api.trusted_proxies,
    clientSetup: clientSetup(app.config) ?? undefined,
    profileSigner: app.config.client_setup.sign_profiles ? () => profileSigner(app.config) : undefined,
  });
  await api.listen({ host: app.config.api.host, port: app.config.api.port });
  const a = api.server.address();
  return { port: typeof a === 'object' && a ? a.port : app.config.api.port, close: () => api.close() };
}

/**
 * Runs postern until SIGINT/SIGTERM, then drains: stops accepting, tells every session to go
 * (`* BYE`, `-ERR`, `421`) and closes what is left after `[server] shutdown_grace`. A listener
 * that cannot bind stops the start (exit 1). SIGHUP reloads the TLS certificate, and reads the
 * configuration again (`reload`) to apply what can change live.
 */
export async function serve(config: Config, reload: () => Config = () => config): Promise<void> {
  const app = await createApp(config);
  const { log } = app;
  let serving = false;
  let listeners: Awaited<ReturnType<typeof startListeners>> | null = null;
  let api: Awaited<ReturnType<typeof startApi>> | null;
  try {
    listeners = await startListeners(app);
    api = config.api.enabled ? await startApi(app, { serving: () => serving }) : null;
  } catch (err) {
    await listeners?.close(0);
    await app.close();
    // Half a gateway (IMAP up, submission not) must not look alive to systemd or Docker.
    throw new PosternError('listen_failed', `cannot start: ${(err as Error).message}`);
  }
  serving = true;
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
  const up = config.upstream;
  const h = (host: string, ports: number[]) => ports.map((p) => `${host}:${p}`).join(', ') || 'off';
  log.info(
    {
      imap: h(config.imap.host, listeners.ports.imap),
      pop3: h(config.pop3.host, listeners.ports.pop3),
      submission: h(config.submission.host, listeners.ports.submission),
      lmtp: h(config.lmtp.host, listeners.ports.lmtp),
      api: api ? `http://${config.api.host}:${api.port}/ (docs at /docs)` : 'off',
      upstream: `imap ${up.host}:${up.imap_port}, pop3 ${up.host}:${up.pop3_port}, smtp ${up.smtp_host || up.host}:${up.smtp_port}, lmtp ${up.host}:${up.lmtp_port}`,
      store: config.store.kind,
      redis: !configuredRedis(redisSettings(config))
        ? 'in-memory'
        : config.redis.cluster_nodes.length
          ? 'cluster'
          : config.redis.sentinels.length
            ? 'sentinel'
            : 'server',
      certificate: listeners.tls.certFile,
    },
    'postern listening',
  );
  const running = listeners;
  const onHup = () => {
    try {
      running.tls.reload();
      log.info('TLS certificate reloaded');
    } catch (err) {
      log.error({ err: (err as Error).message }, 'TLS reload failed; keeping the old certificate');
    }
    try {
      app.applyLive(reload());
    } catch (err) {
      log.error({ err: (err as Error).message }, 'configuration not reloaded: keeping the running one');
    }
  };
  process.on('SIGHUP', onHup);
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  process.off('SIGHUP', onHup);
  clearInterval(timer);
  clearInterval(spoolTimer);
  serving = false;
  log.info({ signal, sessions: running.live.size, graceMs: config.server.shutdown_grace }, 'postern stopping: sessions told to go');
  await running.close(config.server.shutdown_grace);
  await api?.close();
  await app.close();
  log.info('postern stopped');
}
