// The one place the configuration file's sections are turned into each part's settings:
// parts take plain settings (milliseconds, matchers, PEM buffers), never the Config itself.
import type { ClientSetup } from '../api/client-setup.js';
import type { NginxSettings } from '../api/routes/nginx.js';
import type { CoreSettings } from '../core/core.js';
import { networkMatcher } from '../core/rate-windows.js';
import type { NotifySettings } from '../notify/notifier.js';
import type { FrontendSettings } from '../protocols/context.js';
import type { LmtpSettings } from '../protocols/smtp/lmtp.js';
import type { SubmissionSettings } from '../protocols/smtp/submission.js';
import type { UpstreamSettings } from '../protocols/upstream/mail-upstream.js';
import type { RedisSettings } from '../stores/redis-client.js';
import { existsSync, readFileSync } from 'node:fs';
import { dataPath, readPem, type Config } from './load.js';

/** The [redis] section as the connection's settings. */
export function redisSettings(cfg: Config): RedisSettings {
  const r = cfg.redis;
  return {
    url: r.url,
    sentinels: r.sentinels,
    sentinelName: r.sentinel_name,
    clusterNodes: r.cluster_nodes,
    username: r.username,
    password: r.password,
    sentinelPassword: r.sentinel_password,
    tls: r.tls,
  };
}

/** Maps the configuration file's sections onto the core's settings. */
export function coreSettings(cfg: Config): CoreSettings {
  const l = cfg.limits;
  const pp = cfg.password_policy;
  return {
    auth: { totpWindowSteps: cfg.auth.totp_window_steps, verifiedCacheTtlMs: cfg.auth.verified_cache_ttl, bcryptCost: cfg.auth.bcrypt_rounds },
    accounts: {
      aspMaxPerUser: cfg.auth.asp_max_per_user,
      recoveryCodeCount: cfg.auth.recovery_codes,
      totpIssuer: cfg.auth.totp_issuer,
      totpWindowSteps: cfg.auth.totp_window_steps,
      tempPasswordTtlMs: cfg.auth.temp_password_ttl,
      passwordPolicy: {
        minLength: pp.min_length,
        requireLower: pp.require_lower,
        requireUpper: pp.require_upper,
        requireDigit: pp.require_digit,
        requireSpecial: pp.require_special,
      },
    },
    limits: {
      passwordFailures: l.password_failures,
      passwordWindowMs: l.password_window,
      totpFailures: l.totp_failures,
      totpWindowMs: l.totp_window,
      ipFailures: l.ip_failures,
      ipWindowMs: l.ip_window,
      allowList: l.allow_list,
    },
    web: { sessionTtlMs: cfg.api.session_ttl, trustedDeviceTtlMs: cfg.api.trusted_device_ttl, stepUpWindowMs: cfg.api.step_up_window },
    features: {
      two_factor_required: { status: cfg.features.two_factor_required, lock: cfg.features.two_factor_required_lock },
      two_factor_recommended: { status: cfg.features.two_factor_recommended, lock: cfg.features.two_factor_recommended_lock },
      // Not configurable features yet: kept so every feature has a server-wide value.
      email_codes: { status: cfg.features.email_codes, lock: cfg.features.email_codes_lock },
      trusted_devices: { status: cfg.api.trusted_device_ttl > 0 ? 'enabled' : 'disabled', lock: 'locked' },
    },
    emailCodes: { ttlMs: cfg.auth.email_code_ttl, resendDelayMs: cfg.auth.email_code_resend_delay, tries: cfg.auth.email_code_tries },
    securityKeys: {
      rpId: cfg.webauthn.rp_id,
      rpName: cfg.webauthn.rp_name,
      origins: cfg.webauthn.origins.length ? cfg.webauthn.origins : [`http://${cfg.webauthn.rp_id}:${cfg.api.port}`],
      challengeTtlMs: cfg.webauthn.challenge_ttl,
    },
    auditRetentionMs: cfg.audit.retention,
  };
}

/** What mail clients are told to connect to; null when client setup is off. */
export function clientSetup(cfg: Config): ClientSetup | null {
  const c = cfg.client_setup;
  if (!c.enabled) return null;
  return {
    host: c.host || cfg.server.hostname,
    displayName: c.display_name,
    domains: c.domains,
    username: c.username,
    imap: { port: c.imap_port, tls: c.imap_tls },
    pop3: { port: c.pop3_port, tls: c.pop3_tls },
    smtp: { port: c.smtp_port, tls: c.smtp_tls },
  };
}

/**
 * The certificate and key that sign Apple Mail profiles: [tls]'s, else the one generated on
 * first start. Read at each use, so a certificate reloaded by SIGHUP signs from then on.
 */
export function profileSigner(cfg: Config): { cert: string; key: string } | null {
  const files = cfg.tls.cert ? { cert: cfg.tls.cert, key: cfg.tls.key } : { cert: dataPath(cfg, 'tls/cert.pem'), key: dataPath(cfg, 'tls/key.pem') };
  if (!existsSync(files.cert) || !existsSync(files.key)) return null;
  return { cert: readFileSync(files.cert, 'utf8'), key: readFileSync(files.key, 'utf8') };
}

/** Where security notices and emailed codes are sent from. */
export function notifySettings(cfg: Config): NotifySettings {
  const n = cfg.notify;
  return {
    smtpHost: n.smtp_host,
    smtpPort: n.smtp_port,
    from: n.from,
    hostname: cfg.server.hostname,
    tlsVerify: n.tls_verify,
    ca: n.tls_ca ? readPem('notify.tls_ca', n.tls_ca) : null,
    requireTls: n.require_tls,
  };
}

/** The mail server postern logs in to as each user. */
export function upstreamSettings(cfg: Config): UpstreamSettings {
  const up = cfg.upstream;
  return {
    host: up.host,
    smtpHost: up.smtp_host || up.host,
    imapPort: up.imap_port,
    pop3Port: up.pop3_port,
    timeoutMs: up.connect_timeout,
    login: up.login,
    masterUser: up.master_user,
    masterPassword: up.master_password,
    separator: up.master_separator,
    tls: { mode: up.tls, ca: up.tls_ca ? readPem('upstream.tls_ca', up.tls_ca) : null, verify: up.tls_verify },
    proxyProtocol: up.proxy_protocol,
    spareConnections: up.spare_connections,
  };
}

/** What every mail listener needs before login. */
export function frontendSettings(cfg: Config): FrontendSettings {
  return {
    plaintextAllowed: networkMatcher(cfg.frontend.plaintext_auth_networks),
    maxAuthFailures: cfg.frontend.max_auth_failures,
    proxyFrom: cfg.frontend.proxy_protocol_from.length ? networkMatcher(cfg.frontend.proxy_protocol_from) : null,
    preauthTimeoutMs: cfg.frontend.preauth_timeout,
    preauthDeadlineMs: cfg.frontend.preauth_deadline,
    maxLineLength: cfg.frontend.max_line_length,
    maxLiteralSize: cfg.frontend.max_literal_size,
    maxAppendSize: cfg.imap.max_append_size,
    hostname: cfg.server.hostname,
  };
}

export function submissionSettings(cfg: Config): SubmissionSettings {
  return {
    maxMessageSize: cfg.submission.max_message_size,
    maxRecipients: cfg.submission.max_recipients,
    smtpPort: cfg.upstream.smtp_port,
    identity: cfg.upstream.smtp_identity,
    saveSent: cfg.submission.save_sent,
  };
}

export function lmtpSettings(cfg: Config): LmtpSettings {
  return { maxMessageSize: cfg.lmtp.max_message_size, lmtpPort: cfg.upstream.lmtp_port };
}

/** nginx's auth_http endpoint, when nginx carries the mail sessions. */
export function nginxSettings(cfg: Config): NginxSettings | undefined {
  if (!cfg.nginx.enabled) return undefined;
  const up = cfg.upstream;
  return {
    allowed: networkMatcher(cfg.nginx.allow),
    upstreamHost: up.host,
    smtpHost: up.smtp_host || up.host,
    ports: { imap: up.imap_port, pop3: up.pop3_port, smtp: up.smtp_port },
    upstreamLogin: (username) => ({ user: `${username}${up.master_separator}${up.master_user}`, pass: up.master_password }),
  };
}
