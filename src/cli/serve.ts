import { createApp } from '../app.js';
import type { Config } from '../config/load.js';

const HOUR = 3_600_000;

/** Runs postern until SIGINT/SIGTERM. */
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
  log.info({ store: config.store.kind, dataDir: config.server.data_dir, redis: config.redis.url ? 'configured' : 'in-memory' }, 'postern started');
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  clearInterval(timer);
  log.info('postern stopping');
  await app.close();
}
