import { Accounts, type AccountSettings } from './accounts.js';
import { AuditLog, type AuditErrorSink, type AuditFallback, type ObserverErrorSink } from './audit-log.js';
import { Authenticator, type AuthSettings, type Decision } from './authenticate.js';
import type { Clock } from './clock.js';
import { makeDummyHash } from './passwords.js';
import type { CredentialCache, CredentialEvents, Hasher, RateLimiter, Store } from './ports.js';
import { RateWindows, type LimitSettings } from './rate-windows.js';
import { EmailCodes, type CodeMailer, type EmailCodeSettings } from './email-codes.js';
import { Policy, type FeatureDefaults } from './policy.js';
import { SecretBox } from './secret-box.js';
import { SecurityKeys, type SecurityKeySettings } from './security-keys.js';
import { StepUp } from './step-up.js';
import { WebSessions, type WebSessionSettings } from './web-sessions.js';

export interface CoreSettings {
  auth: AuthSettings;
  accounts: AccountSettings;
  limits: LimitSettings;
  web: WebSessionSettings;
  features: FeatureDefaults;
  emailCodes: EmailCodeSettings;
  securityKeys: SecurityKeySettings;
  auditRetentionMs: number;
}

export interface CoreDeps {
  store: Store;
  limiter: RateLimiter;
  cache: CredentialCache;
  hasher: Hasher;
  clock: Clock;
  keys: { current: string; keys: ReadonlyMap<string, Buffer>; hmac: Buffer };
  settings: CoreSettings;
  auditFallback?: AuditFallback;
  /** Sends emailed verification codes; without one, the email_codes feature cannot be used. */
  codeMailer?: CodeMailer;
  onAuditError?: AuditErrorSink;
  /** An audit observer (metrics, notices, a plugin) failed on an event. */
  onObserverError?: ObserverErrorSink;
  /** Where credential changes are announced, so that live mail sessions are checked again. */
  events?: CredentialEvents;
  /** Told of every authentication decision (for the log). */
  onDecision?: (d: Decision) => void;
}

export interface Core {
  auth: Authenticator;
  accounts: Accounts;
  audit: AuditLog;
  windows: RateWindows;
  box: SecretBox;
  sessions: WebSessions;
  policy: Policy;
  emailCodes: EmailCodes;
  securityKeys: SecurityKeys;
}

/** Wires the core's parts around the given stores; no I/O of its own beyond them. */
export async function createCore(d: CoreDeps): Promise<Core> {
  const box = new SecretBox(d.keys.keys, d.keys.current);
  const audit = new AuditLog(d.store.audit, d.clock, d.settings.auditRetentionMs, d.auditFallback ?? null, d.onAuditError, d.onObserverError);
  const windows = new RateWindows(d.limiter, d.settings.limits);
  const common = { store: d.store, audit, hasher: d.hasher, box, serverKey: d.keys.hmac, clock: d.clock };
  const policy = new Policy(d.store.policy, d.settings.features, d.clock, audit);
  const securityKeys = new SecurityKeys({
    keys: d.store.securityKeys,
    challenges: d.store.challenges,
    clock: d.clock,
    serverKey: d.keys.hmac,
    settings: d.settings.securityKeys,
  });
  const auth = new Authenticator({
    ...common,
    policy,
    securityKeys,
    windows,
    cache: d.cache,
    settings: d.settings.auth,
    dummyHash: await makeDummyHash(d.hasher),
    onDecision: d.onDecision,
  });
  const stepUp = new StepUp(d.store.challenges, d.clock, d.settings.web.stepUpWindowMs);
  const accounts = new Accounts({ ...common, securityKeys, settings: d.settings.accounts, stepUp, events: d.events });
  const emailCodes = new EmailCodes(d.store.challenges, d.codeMailer ?? null, d.clock, d.keys.hmac, d.settings.emailCodes);
  const sessions = new WebSessions({
    store: d.store,
    auth,
    audit,
    clock: d.clock,
    serverKey: d.keys.hmac,
    settings: d.settings.web,
    policy,
    emailCodes,
    stepUp,
  });
  return { auth, accounts, audit, windows, box, sessions, policy, emailCodes, securityKeys };
}
