import type { Accounts } from './core/accounts.js';
import type { AuditLog } from './core/audit-log.js';
import type { Authenticator } from './core/authenticate.js';
import { createCore } from './core/core.js';
import type { EmailCodes } from './core/email-codes.js';
import type { Policy } from './core/policy.js';
import type { WebSessions } from './core/web-sessions.js';
import { systemClock, type Clock } from './core/clock.js';
import type { CredentialCache, RateLimiter, SessionSlots, Store } from './core/ports.js';
import { dataPath, type Config } from './config/load.js';
import { coreSettings, notifySettings, redisSettings } from './config/settings.js';
import { loadSecrets } from './config/secrets.js';
import { createLogger, type Logger } from './log.js';
import { Metrics } from './metrics.js';
import { securityNotices, smtpCodeMailer } from './notify/notifier.js';
import { AuditSpool } from './stores/audit-spool.js';
import { MemoryCredentialCache, RedisCredentialCache } from './stores/credential-cache.js';
import { LocalCredentialEvents, RedisCredentialEvents, type CredentialFeed } from './stores/credential-events.js';
import { EmbeddedStore } from './stores/embedded-store.js';
import { MemoryLimiter } from './stores/memory-limiter.js';
import type { SecurityKeys } from './core/security-keys.js';
import { loadPlugins } from './plugins.js';
import { MongoStore } from './stores/mongo-store.js';
import { configuredRedis, connectRedis, persistenceRisks } from './stores/redis-client.js';
import { RedisLimiter } from './stores/redis-limiter.js';
import { MemorySessionSlots, RedisSessionSlots } from './stores/session-slots.js';
import { WorkerPool } from './workers/worker-pool.js';

/** Everything a front end needs, wired from configuration. */
export interface App {
  config: Config;
  log: Logger;
  store: Store;
  audit: AuditLog;
  auth: Authenticator;
  accounts: Accounts;
  sessions: WebSessions;
  policy: Policy;
  emailCodes: EmailCodes;
  securityKeys: SecurityKeys;
  /** Worker threads for bcrypt and PGP. */
  workers: WorkerPool;
  metrics: Metrics;
  limiter: RateLimiter;
  cache: CredentialCache;
  /** Live mail sessions per user, for the per-user cap (in Redis when configured). */
  slots: SessionSlots;
  /** Credential changes announced by this process and (through Redis) by every other. */
  events: CredentialFeed;
  clock: Clock;
  /**
   * Takes on what can change while running (log level, [limits]); returns the sections that
   * differ from the running configuration but need a restart to take effect.
   */
  applyLive(next: Config): string[];
  close(): Promise<void>;
}

/** Sections SIGHUP applies to a running process (the TLS certificate is reloaded besides). */
const LIVE_SECTIONS = ['log', 'limits'] as const;

async function openStore(cfg: Config): Promise<Store> {
  const store =
    cfg.store.kind === 'mongodb' ? await MongoStore.connect(cfg.store.mongodb_url) : new EmbeddedStore(dataPath(cfg, cfg.store.path), { sync: cfg.store.sync });
  try {
    await store.init();
  } catch (err) {
    // An open client would keep the process alive after the failure it reports.
    await store.close().catch(() => undefined);
    throw err;
  }
  return store;
}

export async function createApp(cfg: Config, opts: { clock?: Clock; log?: Logger } = {}): Promise<App> {
  const clock = opts.clock ?? systemClock;
  const log = opts.log ?? createLogger(cfg.log.level);
  // Plugins first: one that fails to load stops the start before anything is opened.
  const plugins = await loadPlugins(cfg, log);
  const secrets = loadSecrets(dataPath(cfg, cfg.secrets.keys_file));
  const store = await openStore(cfg);
  const rs = redisSettings(cfg);
  const redis = configuredRedis(rs) ? connectRedis(rs) : null;
  redis?.on('error', (err: Error) => log.warn({ err: err.message }, 'redis error'));
  if (redis) {
    void persistenceRisks(redis).then(
      (risks) => risks.forEach((risk) => log.warn(risk)),
      () => undefined,
    );
  }
  const limiter: RateLimiter = redis ? new RedisLimiter(redis) : new MemoryLimiter(clock);
  const cache: CredentialCache = redis ? new RedisCredentialCache(redis) : new MemoryCredentialCache(clock);
  const slots: SessionSlots = redis ? new RedisSessionSlots(redis) : new MemorySessionSlots();
  const events: CredentialFeed = redis ? new RedisCredentialEvents(redis) : new LocalCredentialEvents();
  const hasher = new WorkerPool({ cost: cfg.auth.bcrypt_rounds, threads: cfg.auth.hash_threads || undefined, maxQueue: cfg.auth.hash_queue });
  const metrics = new Metrics(() => hasher.queued);
  const mail = notifySettings(cfg);

  const core = await createCore({
    store,
    codeMailer: smtpCodeMailer(mail),
    limiter,
    cache,
    clock,
    hasher,
    keys: { current: secrets.currentKeyId, keys: secrets.keys, hmac: secrets.hmacKey },
    settings: coreSettings(cfg),
    auditFallback: new AuditSpool(dataPath(cfg, 'audit-spool.jsonl')),
    onAuditError: (err, e) => log.error({ err: (err as Error).message, action: e.action }, 'audit store failed; event spooled'),
    onObserverError: (name, err, e) => log.warn({ err: (err as Error).message, observer: name, action: e.action }, 'audit observer failed'),
    events,
    // One line per decision, for operators and fail2ban: success at info, failure at warn,
    // a fault at error.
    onDecision: (d) => {
      log[d.result === 'success' ? 'info' : d.result === 'failure' ? 'warn' : 'error'](d, 'auth decision');
      metrics.decided(d);
    },
  });
  const { audit, auth, accounts, sessions, policy, emailCodes, securityKeys, windows } = core;
  // Everything that follows the audit trail hears each stored event from the one bus.
  audit.subscribe('metrics', (e) => metrics.audited(e));
  if (cfg.notify.enabled) audit.subscribe('security notices', securityNotices(store.users, mail));
  for (const { name, fn } of plugins) audit.subscribe(name, fn);
  let running = cfg;
  return {
    config: cfg,
    log,
    store,
    audit,
    auth,
    accounts,
    sessions,
    policy,
    emailCodes,
    securityKeys,
    workers: hasher,
    metrics,
    limiter,
    cache,
    slots,
    events,
    clock,
    applyLive(next) {
      const live = new Set<string>(LIVE_SECTIONS);
      const changed = (Object.keys(next) as Array<keyof Config>).filter((k) => JSON.stringify(next[k]) !== JSON.stringify(running[k]));
      const restart = changed.filter((k) => !live.has(k));
      windows.update(coreSettings(next).limits);
      // What was not applied stays as it runs, so a later reload reports it again.
      running = { ...running, log: next.log, limits: next.limits };
      // Said before the new level applies: a quieter level must not hide that it did.
      log.info({ applied: [...LIVE_SECTIONS], ...(restart.length ? { needRestart: restart } : {}) }, 'configuration reloaded');
      log.level = next.log.level;
      return restart;
    },
    async close() {
      await events.close();
      await slots.close();
      await store.close();
      redis?.disconnect();
      await hasher.close();
    },
  };
}
