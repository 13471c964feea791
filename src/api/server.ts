import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance } from 'fastify';
import type { ApiDeps } from './deps.js';
import { OPERATION_DOCS, operationKey } from './docs.js';
import { errorSchema, sendError } from './http-errors.js';
import { adminRoutes } from './routes/admin.js';
import { auditRoutes } from './routes/audit.js';
import { clientSetupRoutes } from './routes/client-setup.js';
import { meRoutes } from './routes/me.js';
import { nginxRoutes } from './routes/nginx.js';
import { sessionRoutes } from './routes/session.js';
import { PAGE_HTML, PAGE_JS } from './web/page.js';

export type { ApiDeps } from './deps.js';

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
  // Each operation's description and examples, from one table, as routes are registered.
  app.addHook('onRoute', (route) => {
    const schema = route.schema as Record<string, unknown> | undefined;
    if (!schema || schema.hide) return;
    for (const method of ([] as string[]).concat(route.method)) {
      const doc = OPERATION_DOCS[operationKey(method, route.url)];
      if (!doc) continue;
      schema.description = schema.description ? `${String(schema.description)}\n\n${doc.description}` : doc.description;
      if (doc.body && schema.body) schema.body = { ...(schema.body as object), examples: [doc.body] };
      const responses = schema.response as Record<string, Record<string, unknown>> | undefined;
      const ok = responses?.['200'] ?? responses?.['201'];
      if (doc.answer !== undefined && ok && !('$ref' in ok)) Object.assign(ok, { examples: [doc.answer] });
    }
  });
  await app.register(swagger, {
    // Shared schemas keep their names in the document (#/components/schemas/Error), not def-0.
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
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
  const csp =
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'";
  app.get('/', { schema: { hide: true } }, async (_req, reply) =>
    reply.header('content-security-policy', csp).type('text/html; charset=utf-8').send(PAGE_HTML),
  );
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
          return reply
            .status(401)
            .header('www-authenticate', 'Bearer')
            .send({ code: 'unauthenticated', message: 'Send the metrics token: Authorization: Bearer <[api] metrics_token>' });
        }
      }
      return reply.type(registry.contentType).send(await registry.metrics());
    });
  }
  if (deps.nginx) await nginxRoutes(app, deps, deps.nginx);
  if (deps.clientSetup) await app.register(clientSetupRoutes, { setup: deps.clientSetup, deps });
  // Each audience's routes are a plugin of their own under /api/v1: a guard one adds (a role,
  // a personal session) cannot leak onto another's.
  for (const routes of [sessionRoutes, meRoutes, adminRoutes, auditRoutes]) await app.register(routes, { prefix: '/api/v1', deps });
  return app;
}
