import type { Registry } from 'prom-client';
import type { Accounts } from '../core/accounts.js';
import type { Authenticator } from '../core/authenticate.js';
import type { Clock } from '../core/clock.js';
import type { EmailCodes } from '../core/email-codes.js';
import type { Store } from '../core/ports.js';
import type { Policy } from '../core/policy.js';
import type { SecurityKeys } from '../core/security-keys.js';
import type { Principal, WebSessions } from '../core/web-sessions.js';
import type { ClientSetup } from './client-setup.js';
import type { NginxSettings } from './routes/nginx.js';

/** What the API's routes are given: the core's parts and the edge's own settings. */
export interface ApiDeps {
  store: Store;
  auth: Authenticator;
  accounts: Accounts;
  sessions: WebSessions;
  policy: Policy;
  emailCodes: EmailCodes;
  securityKeys: SecurityKeys;
  clock: Clock;
  /** Prometheus registry served at /metrics; absent to serve none. */
  metrics?: Registry;
  /** Bearer token /metrics asks for; absent or empty: none. */
  metricsToken?: string;
  /** nginx mail proxy auth_http endpoint at /auth/nginx; absent to serve none. */
  nginx?: NginxSettings;
  /** Checks behind /readyz, by name: each resolves when that part works, rejects when not. */
  readiness?: Record<string, () => Promise<void>>;
  /**
   * Addresses and CIDRs of reverse proxies whose X-Forwarded-For is believed: the client's
   * address (for rate windows and the audit trail) is then taken from it. Empty: none.
   */
  trustedProxies?: string[];
  /** What mail clients are told to connect to (autoconfig, Autodiscover, profiles); absent: none. */
  clientSetup?: ClientSetup;
  /** The certificate and key that sign Apple Mail profiles, read when one is made; null: unsigned. */
  profileSigner?: () => { cert: string; key: string } | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}
