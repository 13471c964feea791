import { createApp } from '../app.js';
import type { Config } from '../config/load.js';
import { startListeners } from '../protocols/servers.js';

const HOUR = 3_600_000;

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
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'audit maintenance failed; will retry');
    }
  };
  await maintain();
  const timer = setInterval(maintain, HOUR);
  const listeners = await startListeners(app);
  const up = config.upstream;
  const h = (host: string, ports: number[]) => ports.map((p) => `${host}:${p}`).join(', ') || 'off';
  log.info(
    {
      imap: h(config.imap.host, listeners.ports.imap),
      pop3: h(config.pop3.host, listeners.ports.pop3),
      submission: h(config.submission.host, listeners.ports.submission),
      lmtp: h(config.lmtp.host, listeners.ports.lmtp),
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
  log.info('postern stopping');
  await listeners.close();
  await app.close();
}
