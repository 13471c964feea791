// Plugins: modules named in [plugins] load, each exporting a default function that receives
// the API below and registers what it adds (an audit sink, a notification transport, ...).
// The boundary is small on purpose: plugins see events and configuration, never secrets,
// and cannot change a decision.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Config } from './config/load.js';
import { PosternError } from './core/errors.js';
import type { AuditObserver } from './core/audit-log.js';
import type { Logger } from './log.js';

export interface PluginApi {
  /** The configuration with its secrets taken out (see redactedConfig). */
  config: Readonly<Config>;
  log: Logger;
  /** Called after each audit event is stored. Its failures are logged and go no further. */
  onAuditEvent(fn: AuditObserver): void;
}

export type Plugin = (api: PluginApi) => void | Promise<void>;

/** Loads the configured plugins (paths relative to the working directory); returns their audit observers, named by plugin. */
export async function loadPlugins(cfg: Config, log: Logger): Promise<Array<{ name: string; fn: AuditObserver }>> {
  const observers: Array<{ name: string; fn: AuditObserver }> = [];
  for (const path of cfg.plugins.load) {
    let plugin: unknown;
    try {
      plugin = ((await import(pathToFileURL(resolve(path)).href)) as { default?: unknown }).default;
    } catch (err) {
      throw new PosternError('config_invalid', `invalid configuration:\n  plugins.load: cannot load ${path}: ${(err as Error).message}`);
    }
    if (typeof plugin !== 'function')
      throw new PosternError('config_invalid', `invalid configuration:\n  plugins.load: ${path} has no default export function`);
    await (plugin as Plugin)({
      config: redactedConfig(cfg),
      log: log.child({ plugin: path }),
      onAuditEvent: (fn) => observers.push({ name: `plugin ${path}`, fn }),
    });
  }
  return observers;
}

const REDACTED = '[redacted]';

/** A URL's password, if it has one, replaced (mongodb://user:pw@host → mongodb://user:[redacted]@host). */
function withoutPassword(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/i, `$1:${REDACTED}@`);
}

/**
 * What plugins see of the configuration: everything but secrets. The master password that
 * opens every mailbox goes, so do passwords inside the store and Redis URLs; paths to key
 * files stay (a path is not the key). Frozen, so a plugin cannot change what postern runs on.
 */
export function redactedConfig(cfg: Config): Readonly<Config> {
  const copy = structuredClone(cfg);
  copy.upstream.master_password = copy.upstream.master_password ? REDACTED : '';
  copy.store.mongodb_url = withoutPassword(copy.store.mongodb_url);
  copy.redis.url = withoutPassword(copy.redis.url);
  copy.redis.password = copy.redis.password ? REDACTED : '';
  copy.redis.sentinel_password = copy.redis.sentinel_password ? REDACTED : '';
  const freeze = (o: object): void => {
    Object.freeze(o);
    for (const v of Object.values(o)) if (v && typeof v === 'object' && !Object.isFrozen(v)) freeze(v);
  };
  freeze(copy);
  return copy;
}
