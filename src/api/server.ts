import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import type { Accounts, Actor } from '../core/accounts.js';
import type { Authenticator } from '../core/authenticate.js';
import type { Clock } from '../core/clock.js';
import { PosternError } from '../core/errors.js';
import type { Store } from '../core/ports.js';
import type { AuthResult, Role } from '../core/types.js';
import type { CodePurpose, EmailCodes } from '../core/email-codes.js';
import type { Policy } from '../core/policy.js';
import type { SecurityKeys } from '../core/security-keys.js';
import type { Principal, WebSessions } from '../core/web-sessions.js';
import { adminRoutes } from './routes/admin.js';
import { PAGE_HTML, PAGE_JS } from './web/page.js';
import { auditRoutes } from './routes/audit.js';
import { meRoutes } from './routes/me.js';
import { nginxRoutes, type NginxSettings } from './routes/nginx.js';
import { sessionRoutes } from './routes/session.js';

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
}

/** Runs every readiness check at once, each bounded in time; names and what failed. */
async function readiness(checks: Record<string, () => Promise<void>>): Promise<{ ready: boolean; checks: Record<string, string> }> {
  const results = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('no answer within 3 s')), 3000);
      });
      try {
        await Promise.race([check(), timeout]);
        return [name, 'ok'] as const;
      } catch (err) {
        return [name, (err as Error).message || 'failed'] as const;
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return { ready: results.every(([, r]) => r === 'ok'), checks: Object.fromEntries(results) };
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** Error body of every failure: a stable code and a message a person can act on. */
export const errorSchema = {
  $id: 'Error',
  type: 'object',
  required: ['code', 'message'],
  properties: {
    code: { type: 'string' },
    message: { type: 'string' },
    retryAfter: { type: 'integer' },
    methods: { type: 'array', items: { type: 'string' } },
    /** With second_factor_required, when the account has security keys: pass to navigator.credentials.get(). */
    securityKeyOptions: { type: 'object', additionalProperties: true },
  },
} as const;

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

const STATUS: Record<string, number> = {
  invalid_input: 400,
  invalid_code: 400,
  invalid_security_key: 400,
  not_found: 404,
  conflict: 409,
  limit_reached: 409,
  totp_not_pending: 409,
  no_email: 409,
  step_up_required: 403,
  password_change_required: 403,
};

/** A refused authentication as an HTTP error: 401, 403, 429 with Retry-After, or 503. */
export function refusal(r: Extract<AuthResult, { ok: false }>): HttpError {
  if (r.reason === 'locked') return new HttpError(429, 'locked', r.message, { retryAfter: r.retryAfter ?? 60 });
  if (r.reason === 'temporary_failure') return new HttpError(503, 'temporary_failure', r.message);
  if (r.reason === 'account_disabled') return new HttpError(403, r.reason, r.message);
  const extra = { ...(r.methods ? { methods: r.methods } : {}), ...(r.securityKeyOptions ? { securityKeyOptions: r.securityKeyOptions } : {}) };
  return new HttpError(401, r.reason, r.message, extra);
}

export const forbidden = (message = 'Your role does not allow this') => new HttpError(403, 'forbidden', message);

/**
 * Sensitive operations need an emailed code while the email_codes feature is on for the
 * caller's domain (B5): ask for one with POST /me/email-code, then send it as `emailCode`.
 */
export async function requireEmailCode(d: ApiDeps, req: FastifyRequest, purpose: CodePurpose, code: string | undefined): Promise<void> {
  const p = req.principal;
  if (!p || p.kind !== 'session' || !(await d.policy.enabled('email_codes', p.user.domain))) return;
  const check = await d.emailCodes.check(p.user, purpose, code);
  if (check === 'missing') throw new HttpError(403, 'email_code_required', `This needs a code sent by email: POST /api/v1/me/email-code with purpose "${purpose}"`);
  if (check === 'invalid') throw new HttpError(403, 'email_code_invalid', 'Wrong email code');
}

/** Route guard: the caller must be signed in and, if given, hold one of `roles`. */
export function requireRole(...roles: Role[]) {
  return async (req: FastifyRequest) => {
    if (!req.principal) throw new HttpError(401, 'unauthenticated', 'Sign in first: send Authorization: Bearer <token>');
    passwordChangedFirst(req);
    if (roles.length && !roles.includes(req.principal.role)) throw forbidden();
  };
}

/** Routes an account may use while mandatory 2FA waits for it to set a second factor up. */
const SETUP_ROUTES = new Set([
  '/api/v1/me',
  '/api/v1/me/totp/setup',
  '/api/v1/me/totp/enable',
  '/api/v1/me/security-keys/options',
  '/api/v1/me/security-keys',
  '/api/v1/me/password',
  '/api/v1/session',
  '/api/v1/session/confirm',
  '/api/v1/sessions',
]);

/** Routes a session signed in with a temporary password may use before changing it (A9). */
const PASSWORD_CHANGE_ROUTES = new Set(['/api/v1/me', '/api/v1/me/password', '/api/v1/session']);

/** A session on a temporary password may do nothing else before changing it: no ASPs, no tokens, no admin work. */
function passwordChangedFirst(req: FastifyRequest): void {
  const p = req.principal;
  if (p?.kind === 'session' && p.user.mustChangePassword && !PASSWORD_CHANGE_ROUTES.has(req.routeOptions.url ?? '')) {
    throw new HttpError(403, 'password_change_required', 'This is a temporary password: change it first (PUT /api/v1/me/password)');
  }
}

/** Route guard for the caller's own account: a user session, not an automation token. */
export function requireSessionWith(policy: Policy) {
  return async (req: FastifyRequest) => {
    const p = req.principal;
    if (!p) throw new HttpError(401, 'unauthenticated', 'Sign in first: send Authorization: Bearer <token>');
    if (p.kind !== 'session') throw forbidden('API tokens cannot act on a personal account');
    passwordChangedFirst(req);
    if (!p.user.twoFactor && !SETUP_ROUTES.has(req.routeOptions.url ?? '') && (await policy.enabled('two_factor_required', p.user.domain))) {
      throw new HttpError(403, 'two_factor_setup_required', 'Two-factor authentication is required: set it up first (POST /api/v1/me/totp/setup)');
    }
  };
}

export function sessionOf(req: FastifyRequest) {
  const p = req.principal;
  if (!p || p.kind !== 'session') throw forbidden('API tokens cannot act on a personal account');
  return p;
}

export function actorName(req: FastifyRequest): string {
  const p = req.principal;
  if (!p) return 'anonymous';
  return p.kind === 'session' ? p.user.username : `token:${p.token.id}`;
}

/** Who makes a change, for the core: the name, the address, and the web session it came in on. */
export function actorOf(req: FastifyRequest): Actor {
  const p = req.principal;
  return { name: actorName(req), ip: req.ip, protocol: 'http', ...(p?.kind === 'session' ? { sessionId: p.session.id } : {}) };
}

function sendError(reply: FastifyReply, err: unknown): FastifyReply {
  if (err instanceof HttpError) {
    if (err.extra.retryAfter) void reply.header('Retry-After', String(err.extra.retryAfter));
    return reply.status(err.status).send({ code: err.code, message: err.message, ...err.extra });
  }
  if (err instanceof PosternError) {
    if (err.temporary) return reply.status(503).send({ code: 'temporary_failure', message: err.message });
    return reply.status(STATUS[err.code] ?? 400).send({ code: err.code, message: err.message });
  }
  const e = err as { validation?: unknown; statusCode?: number; message?: string; code?: string };
  if (e.validation) return reply.status(400).send({ code: 'invalid_input', message: e.message ?? 'invalid input' });
  if (e.statusCode && e.statusCode < 500) return reply.status(e.statusCode).send({ code: 'bad_request', message: e.message ?? 'bad request' });
  reply.log.error({ err: e.message }, 'unhandled API error');
  return reply.status(500).send({ code: 'internal_error', message: 'Internal error' });
}

/**
 * The browser half of WebAuthn (option decoding, navigator.credentials calls) for the page:
 * @simplewebauthn/browser's own prebuilt bundle, served as it ships.
 */
function browserWebAuthn(): Buffer {
  const entry = createRequire(import.meta.url).resolve('@simplewebauthn/browser');
  return readFileSync(join(dirname(entry), '..', 'dist', 'bundle', 'index.umd.min.js'));
}

/** The web API as a Fastify instance with its OpenAPI document and docs UI. */
export async function buildApi(deps: ApiDeps, opts: { logger?: boolean } = {}): Promise<FastifyInstance> {
  const proxies = deps.trustedProxies ?? [];
  const app = Fastify({ logger: opts.logger ?? false, trustProxy: proxies.length ? proxies : false, bodyLimit: 64 * 1024 });
  app.addSchema(errorSchema);
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'postern API', version: '1', description: 'Accounts, app passwords, second factors and audit of the postern mail gateway.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.decorateRequest('principal', null);
  app.addHook('onRequest', async (req) => {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    req.principal = m ? await deps.sessions.principal(m[1]!) : null;
  });
  app.setErrorHandler((err, _req, reply) => sendError(reply, err));
  app.setNotFoundHandler((_req, reply) => reply.status(404).send({ code: 'not_found', message: 'No such route' }));
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  // Liveness: the process answers. Readiness: what it needs to do its job answers too.
  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    const r = await readiness(deps.readiness ?? {});
    return reply.status(r.ready ? 200 : 503).send({ status: r.ready ? 'ready' : 'not ready', checks: r.checks });
  });
  // The self-service page; its strict policy allows only its own script and data: QR codes.
  const csp = "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'";
  app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.header('content-security-policy', csp).type('text/html; charset=utf-8').send(PAGE_HTML));
  app.get('/app.js', { schema: { hide: true } }, async (_req, reply) => reply.type('application/javascript; charset=utf-8').send(PAGE_JS));
  const webauthnJs = browserWebAuthn();
  app.get('/webauthn.js', { schema: { hide: true } }, async (_req, reply) => reply.type('application/javascript; charset=utf-8').send(webauthnJs));
  const registry = deps.metrics;
  if (registry) {
    const expected = deps.metricsToken ? Buffer.from(`Bearer ${deps.metricsToken}`) : null;
    app.get('/metrics', { schema: { hide: true } }, async (req, reply) => {
      if (expected) {
        const given = Buffer.from(req.headers.authorization ?? '');
        if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
          return reply.status(401).header('www-authenticate', 'Bearer').send({ code: 'unauthenticated', message: 'Send the metrics token: Authorization: Bearer <[api] metrics_token>' });
        }
      }
      return reply.type(registry.contentType).send(await registry.metrics());
    });
  }
  if (deps.nginx) await nginxRoutes(app, deps, deps.nginx);
  await app.register(async (api) => {
    await sessionRoutes(api, deps);
    await meRoutes(api, deps);
    await adminRoutes(api, deps);
    await auditRoutes(api, deps);
  }, { prefix: '/api/v1' });
  return app;
}
