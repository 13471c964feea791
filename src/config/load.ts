import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { PosternError } from '../core/errors.js';
import { parseDuration } from '../core/duration.js';

const duration = z.string().transform((s, ctx) => {
  const ms = parseDuration(s);
  if (ms === null) {
    ctx.addIssue({ code: 'custom', message: 'expected a duration such as 500ms, 60s, 5m, 24h or 30d' });
    return z.NEVER;
  }
  return ms;
});
const count = z.number().int().min(1);
const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/, 'expected host:port');
const cidr = z.string().refine((s) => /^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(s), 'expected an IP address or CIDR');

const port = z.number().int().min(0).max(65535);
const status = z.enum(['enabled', 'disabled']);
const lock = z.enum(['locked', 'unlocked']);
const listener = z.strictObject({ enabled: z.boolean(), host: z.string().min(1), port, tls_port: port });

const schema = z.strictObject({
  server: z.strictObject({ data_dir: z.string().min(1), hostname: z.string().min(1), shutdown_grace: duration }),
  store: z.strictObject({
    kind: z.enum(['embedded', 'mongodb']),
    path: z.string().min(1),
    sync: z.enum(['normal', 'full']),
    mongodb_url: z.string().regex(/^mongodb(\+srv)?:\/\//, 'expected a mongodb:// or mongodb+srv:// URL'),
  }),
  redis: z
    .strictObject({
      url: z.union([z.literal(''), z.string().regex(/^rediss?:\/\//, 'expected redis:// or rediss://')]),
      sentinels: z.array(hostPort),
      sentinel_name: z.string(),
      cluster_nodes: z.array(hostPort),
      username: z.string(),
      password: z.string(),
      sentinel_password: z.string(),
      tls: z.boolean(),
    })
    .refine((r) => [r.url !== '', r.sentinels.length > 0, r.cluster_nodes.length > 0].filter(Boolean).length <= 1, 'set one of url, sentinels or cluster_nodes')
    .refine((r) => !r.sentinels.length || r.sentinel_name !== '', 'sentinel_name is needed with sentinels'),
  secrets: z.strictObject({ keys_file: z.string().min(1) }),
  auth: z.strictObject({
    bcrypt_rounds: z.number().int().min(10).max(15),
    hash_threads: z.number().int().min(0).max(256),
    hash_queue: z.number().int().min(1).max(100_000),
    asp_max_per_user: count,
    totp_window_steps: z.number().int().min(0).max(10),
    totp_issuer: z.string().min(1),
    recovery_codes: z.number().int().min(4).max(50),
    temp_password_ttl: duration,
    verified_cache_ttl: duration,
    email_code_ttl: duration,
    email_code_tries: z.number().int().min(1).max(10),
    email_code_resend_delay: duration,
  }),
  limits: z.strictObject({
    password_failures: count,
    password_window: duration,
    totp_failures: count,
    totp_window: duration,
    ip_failures: count,
    ip_window: duration,
    allow_list: z.array(cidr),
  }),
  audit: z.strictObject({ retention: duration }),
  features: z.strictObject({
    two_factor_required: status,
    two_factor_recommended: status,
    two_factor_required_lock: lock,
    two_factor_recommended_lock: lock,
    email_codes: status,
    email_codes_lock: lock,
  }),
  password_policy: z.strictObject({
    min_length: z.number().int().min(1).max(128),
    require_lower: z.boolean(),
    require_upper: z.boolean(),
    require_digit: z.boolean(),
    require_special: z.boolean(),
  }),
  log: z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) }),
  tls: z.strictObject({ cert: z.string(), key: z.string() }),
  client_setup: z.strictObject({
    enabled: z.boolean(),
    host: z.union([z.literal(''), z.string().regex(/^[a-z0-9.-]+$/i, 'expected a host name such as mail.example.org')]),
    display_name: z.string().min(1).max(100),
    domains: z.array(z.string().regex(/^[a-z0-9.-]+\.[a-z]{2,}$/i, 'expected a domain such as example.org')),
    username: z.enum(['address', 'localpart']),
    imap_port: port,
    imap_tls: z.enum(['implicit', 'starttls']),
    pop3_port: port,
    pop3_tls: z.enum(['implicit', 'starttls']),
    smtp_port: port,
    smtp_tls: z.enum(['implicit', 'starttls']),
    sign_profiles: z.boolean(),
  }),
  frontend: z.strictObject({
    plaintext_auth_networks: z.array(cidr),
    max_auth_failures: count,
    preauth_timeout: duration,
    preauth_deadline: duration,
    session_recheck: duration,
    max_line_length: z.number().int().min(512).max(1_048_576),
    max_literal_size: z.number().int().min(512).max(1_048_576),
    max_preauth_per_ip: count,
    proxy_protocol_from: z.array(cidr),
  }),
  imap: listener.extend({ max_sessions_per_user: count, max_append_size: count, max_append_total: count }),
  pop3: listener.extend({ max_sessions_per_user: count }),
  submission: listener.extend({
    max_message_size: count,
    max_recipients: count,
    save_sent: z
      .string()
      .max(200)
      .regex(/^[^\r\n\0]*$/, 'expected a mailbox name on one line'),
  }),
  lmtp: z.strictObject({ enabled: z.boolean(), host: z.string().min(1), port: port, max_message_size: count }),
  api: z.strictObject({
    enabled: z.boolean(),
    host: z.string().min(1),
    port,
    session_ttl: duration,
    trusted_device_ttl: duration,
    step_up_window: duration,
    metrics: z.boolean(),
    metrics_token: z.string().max(200),
    trusted_proxies: z.array(cidr),
  }),
  webauthn: z.strictObject({
    rp_id: z.string().regex(/^(?=.*[a-z])[a-z0-9.-]+$/i, 'expected a host name such as mail.example.org (WebAuthn takes no IP address or port)'),
    rp_name: z.string().min(1).max(100),
    origins: z.array(z.string().regex(/^https?:\/\/[^/\s]+$/, 'expected an origin such as https://mail.example.org')),
    challenge_ttl: duration,
  }),
  notify: z.strictObject({
    enabled: z.boolean(),
    smtp_host: z.string().min(1),
    smtp_port: port,
    from: z.string().min(3),
    tls_verify: z.boolean(),
    tls_ca: z.string(),
    require_tls: z.boolean(),
  }),
  nginx: z.strictObject({ enabled: z.boolean(), allow: z.array(cidr) }),
  plugins: z.strictObject({ load: z.array(z.string().min(1)) }),
  upstream: z.strictObject({
    host: z.string().min(1),
    imap_port: port,
    pop3_port: port,
    smtp_host: z.string(),
    smtp_port: port,
    lmtp_port: port,
    login: z.enum(['authzid', 'separator']),
    master_user: z.string().min(1),
    master_password: z.string(),
    master_separator: z.string().length(1),
    smtp_identity: z.enum(['xclient', 'none']),
    connect_timeout: duration,
    tls: z.enum(['none', 'starttls', 'implicit']),
    tls_ca: z.string(),
    tls_verify: z.boolean(),
    proxy_protocol: z.enum(['off', 'v1', 'v2']),
    spare_connections: z.number().int().min(0).max(64),
  }),
});

export type Config = z.output<typeof schema>;
type Tree = Record<string, unknown>;

const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEFAULT_CONFIG_FILE = join(PACKAGE_ROOT, 'config', 'default.toml');

function readToml(path: string): Tree {
  if (!existsSync(path)) throw new PosternError('config_invalid', `config file ${path} does not exist`);
  try {
    return parseToml(readFileSync(path, 'utf8')) as Tree;
  } catch (err) {
    throw new PosternError('config_invalid', `config file ${path}: ${(err as Error).message}`);
  }
}

function merge(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' ? merge(b as Tree, v as Tree) : v;
  }
  return out;
}

/** A value from the environment read as TOML (numbers, booleans, arrays) or else as a string. */
function envValue(raw: string): unknown {
  try {
    return (parseToml(`v = ${raw}`) as Tree).v;
  } catch {
    return raw;
  }
}

/** POSTERN_LIMITS__PASSWORD_FAILURES=10 → { limits: { password_failures: 10 } } */
function fromEnv(env: NodeJS.ProcessEnv): Tree {
  const out: Tree = {};
  for (const [name, raw] of Object.entries(env)) {
    const m = /^POSTERN_([A-Z0-9_]+?)__([A-Z0-9_]+)$/.exec(name);
    if (!m || raw === undefined) continue;
    const section = m[1]!.toLowerCase();
    const key = m[2]!.toLowerCase();
    out[section] = { ...((out[section] as Tree) ?? {}), [key]: envValue(raw) };
  }
  return out;
}

/**
 * Defaults, then the override file, then POSTERN_* variables; validated as a whole. A wrong
 * value stops the program with the key named and what it expects.
 */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv } = {}): Config {
  const env = opts.env ?? process.env;
  let tree = readToml(DEFAULT_CONFIG_FILE);
  const file = opts.file ?? env.POSTERN_CONFIG;
  const override = file ? readToml(file) : {};
  tree = merge(tree, override);
  tree = merge(tree, fromEnv(env));
  const parsed = schema.safeParse(tree);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const key = i.path.join('.') || '(top level)';
      const msg = i.code === 'unrecognized_keys' ? `unknown key(s) ${i.keys.join(', ')}` : i.message;
      return `  ${key}: ${msg}`;
    });
    throw new PosternError('config_invalid', `invalid configuration:\n${lines.join('\n')}`);
  }
  const cfg = parsed.data;
  if (cfg.api.trusted_device_ttl > 0 && cfg.api.trusted_device_ttl <= cfg.api.session_ttl) {
    throw new PosternError(
      'config_invalid',
      'invalid configuration:\n  api.trusted_device_ttl: must be longer than api.session_ttl (or 0d to turn trusted devices off)',
    );
  }
  if (cfg.imap.max_append_total < cfg.imap.max_append_size) {
    throw new PosternError('config_invalid', 'invalid configuration:\n  imap.max_append_total: must be at least imap.max_append_size');
  }
  // A relative data_dir is taken from where it was written: the override file's directory,
  // the current directory for the environment variable, the package for the default. So the
  // CLI finds the same database whatever directory it is run from.
  const setInFile = (override.server as Record<string, unknown> | undefined)?.data_dir !== undefined;
  const base = env.POSTERN_SERVER__DATA_DIR !== undefined ? process.cwd() : setInFile ? dirname(resolve(file!)) : PACKAGE_ROOT;
  cfg.server.data_dir = resolve(base, cfg.server.data_dir);
  return cfg;
}

export function dataPath(cfg: Config, p: string): string {
  return isAbsolute(p) ? p : join(cfg.server.data_dir, p);
}

/** Reads a PEM file a configuration key names; a missing or unreadable one stops the start with the key named. */
export function readPem(key: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new PosternError('config_invalid', `invalid configuration:\n  ${key}: cannot read ${path}: ${(err as Error).message}`);
  }
}
