import type { FastifyPluginAsync } from 'fastify';
import { optionalLifetime } from '../../core/duration.js';
import type { Role } from '../../core/types.js';
import { errors, nameParam, idParam, userView as userSchema, passwordField, usernameField } from '../schemas.js';
import { actorName, actorOf, requireEmailCode, requireRole } from '../guards.js';
import type { ApiDeps } from '../deps.js';
import { userView } from '../views.js';

/** Administrators: accounts, roles, second-factor resets, API tokens. */
/** A Fastify plugin: its hooks and guards stay inside it. */
export const adminRoutes: FastifyPluginAsync<{ deps: ApiDeps }> = async (api, { deps: d }) => {
  const actor = actorOf;

  api.register(async (r) => {
    r.addHook('preHandler', requireRole('admin'));

    r.get<{ Querystring: { limit?: number; after?: string } }>(
      '/users',
      {
        schema: {
          tags: ['admin'],
          summary: 'List accounts with their 2FA status, by name',
          querystring: {
            type: 'object',
            properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 }, after: { type: 'string', maxLength: 254 } },
          },
          response: { 200: { type: 'array', items: userSchema }, ...errors(401, 403) },
        },
      },
      async (req) => (await d.store.users.list(req.query.limit ?? 100, req.query.after)).map(userView),
    );

    r.post<{ Body: { username: string; password: string; role?: Role; email?: string; temporary?: boolean; starter?: boolean } }>(
      '/users',
      {
        schema: {
          tags: ['admin'],
          summary: 'Create an account',
          body: {
            type: 'object',
            required: ['username', 'password'],
            additionalProperties: false,
            properties: {
              username: usernameField,
              password: passwordField,
              role: { type: 'string', enum: ['user', 'admin', 'auditor'] },
              email: { type: 'string', format: 'email', maxLength: 254 },
              temporary: { type: 'boolean' },
              starter: { type: 'boolean', description: 'start with recovery codes as the second factor and a temporary password' },
            },
          },
          response: {
            201: { ...userSchema, properties: { ...userSchema.properties, recoveryCodes: { type: 'array', items: { type: 'string' } } } },
            ...errors(400, 401, 403, 409),
          },
        },
      },
      async (req, reply) => {
        const { starter, ...input } = req.body;
        if (starter) {
          const { user, recoveryCodes } = await d.accounts.createStarterUser(actor(req), input);
          return reply.status(201).send({ ...userView(user), recoveryCodes });
        }
        return reply.status(201).send(userView(await d.accounts.createUser(actor(req), input)));
      },
    );

    r.patch<{ Params: { name: string }; Body: { status?: 'active' | 'disabled'; role?: Role; email?: string | null } }>(
      '/users/:name',
      {
        schema: {
          tags: ['admin'],
          summary: 'Disable or enable an account, change its role or its email address (null removes it)',
          params: nameParam,
          body: {
            type: 'object',
            additionalProperties: false,
            minProperties: 1,
            properties: {
              status: { type: 'string', enum: ['active', 'disabled'] },
              role: { type: 'string', enum: ['user', 'admin', 'auditor'] },
              email: { type: 'string', maxLength: 254, nullable: true },
            },
          },
          response: { 200: userSchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (req) => {
        let user = await d.accounts.get(req.params.name);
        if (req.body.status) user = await d.accounts.setStatus(actor(req), user.username, req.body.status);
        if (req.body.role) user = await d.accounts.setRole(actor(req), user.username, req.body.role);
        if (req.body.email !== undefined) user = await d.accounts.setEmail(actor(req), user.username, req.body.email);
        return userView(user);
      },
    );

    r.delete<{ Params: { name: string } }>(
      '/users/:name',
      {
        schema: {
          tags: ['admin'],
          summary: 'Delete an account and all its credentials',
          params: nameParam,
          response: { 204: { type: 'null' }, ...errors(401, 403, 404) },
        },
      },
      async (req, reply) => {
        await d.accounts.deleteUser(actor(req), req.params.name);
        return reply.status(204).send();
      },
    );

    r.post<{ Params: { name: string } }>(
      '/users/:name/2fa/reset',
      {
        schema: {
          tags: ['admin'],
          summary: 'Reset a user who lost their second factor: a temporary password and recovery codes to hand over',
          description:
            'Every second factor is removed, every session and trusted device ends. The account starts again with a temporary password (account page only, expiring, to be changed first) and fresh recovery codes as its only second factor; the user is told at the next sign-in.',
          params: nameParam,
          response: {
            200: {
              type: 'object',
              properties: { user: userSchema, temporaryPassword: { type: 'string' }, recoveryCodes: { type: 'array', items: { type: 'string' } } },
            },
            ...errors(401, 403, 404),
          },
        },
      },
      async (req) => {
        const { user, temporaryPassword, recoveryCodes } = await d.accounts.resetSecondFactor(actor(req), req.params.name);
        return { user: userView(user), temporaryPassword, recoveryCodes };
      },
    );

    const featureName = { type: 'string', enum: ['two_factor_required', 'two_factor_recommended'] } as const;
    const featureView = { type: 'object', properties: { status: { type: 'string' }, lock: { type: 'string' } } } as const;

    r.get(
      '/policy/features',
      {
        schema: {
          tags: ['policy'],
          summary: 'Server-wide feature settings: status and whether domains may override them',
          response: { 200: { type: 'object', additionalProperties: featureView }, ...errors(401, 403) },
        },
      },
      async () => {
        const f = await d.policy.features();
        return { two_factor_required: f.two_factor_required, two_factor_recommended: f.two_factor_recommended };
      },
    );

    r.put<{ Params: { name: 'two_factor_required' | 'two_factor_recommended' }; Body: { status: 'enabled' | 'disabled'; lock: 'locked' | 'unlocked' } }>(
      '/policy/features/:name',
      {
        schema: {
          tags: ['policy'],
          summary: 'Set a feature server-wide (e.g. mandatory 2FA), and whether domains may override it',
          params: { type: 'object', required: ['name'], properties: { name: featureName } },
          body: {
            type: 'object',
            required: ['status', 'lock'],
            additionalProperties: false,
            properties: { status: { type: 'string', enum: ['enabled', 'disabled'] }, lock: { type: 'string', enum: ['locked', 'unlocked'] } },
          },
          response: { 204: { type: 'null' }, ...errors(400, 401, 403) },
        },
      },
      async (req, reply) => {
        await d.policy.setFeature(actorName(req), req.params.name, req.body);
        return reply.status(204).send();
      },
    );

    r.put<{ Params: { domain: string; name: 'two_factor_required' | 'two_factor_recommended' }; Body: { status: 'enabled' | 'disabled' | null } }>(
      '/domains/:domain/features/:name',
      {
        schema: {
          tags: ['policy'],
          summary: "Override a feature for one domain (null returns to the server's setting); refused while locked",
          params: { type: 'object', required: ['domain', 'name'], properties: { domain: { type: 'string', minLength: 1, maxLength: 253 }, name: featureName } },
          body: {
            type: 'object',
            required: ['status'],
            additionalProperties: false,
            properties: { status: { type: 'string', enum: ['enabled', 'disabled'], nullable: true } },
          },
          response: {
            200: { type: 'object', properties: { name: { type: 'string' }, features: { type: 'object', additionalProperties: { type: 'string' } } } },
            ...errors(400, 401, 403, 409),
          },
        },
      },
      async (req) => {
        const dom = await d.policy.setDomainFeature(actorName(req), req.params.domain.toLowerCase(), req.params.name, req.body.status);
        return { name: dom.name, features: dom.features };
      },
    );

    const tokenView = {
      type: 'object',
      properties: {
        id: { type: 'string' },
        role: { type: 'string' },
        description: { type: 'string' },
        createdBy: { type: 'string' },
        createdAt: { type: 'string' },
        expiresAt: { type: 'string', nullable: true },
      },
    } as const;

    r.get(
      '/tokens',
      { schema: { tags: ['admin'], summary: 'API tokens for automation', response: { 200: { type: 'array', items: tokenView }, ...errors(401, 403) } } },
      async () =>
        (await d.store.apiTokens.list()).map((t) => ({
          ...t,
          tokenHash: undefined,
          createdAt: t.createdAt.toISOString(),
          expiresAt: t.expiresAt?.toISOString() ?? null,
        })),
    );

    r.post<{ Body: { role: 'admin' | 'auditor'; description?: string; expiresIn?: string; emailCode?: string } }>(
      '/tokens',
      {
        schema: {
          tags: ['admin'],
          summary: 'Create an API token (admin or auditor); the token is shown only in this answer',
          body: {
            type: 'object',
            required: ['role'],
            additionalProperties: false,
            properties: {
              role: { type: 'string', enum: ['admin', 'auditor'] },
              description: { type: 'string', maxLength: 200 },
              expiresIn: { type: 'string', pattern: '^[0-9]+(ms|s|m|h|d)$' },
              emailCode: { type: 'string', pattern: '^[0-9]{6}$' },
            },
          },
          response: {
            201: { type: 'object', properties: { token: { type: 'string' }, id: { type: 'string' }, role: { type: 'string' } } },
            ...errors(400, 401, 403),
          },
        },
      },
      async (req, reply) => {
        const ttl = optionalLifetime(req.body.expiresIn, 'expiresIn');
        await requireEmailCode(d, req, 'token', req.body.emailCode);
        const { token, record } = await d.sessions.createApiToken(actorOf(req), req.body.role, req.body.description ?? '', ttl);
        return reply.status(201).send({ token, id: record.id, role: record.role });
      },
    );

    r.delete<{ Params: { id: string } }>(
      '/tokens/:id',
      { schema: { tags: ['admin'], summary: 'Revoke an API token', params: idParam, response: { 204: { type: 'null' }, ...errors(401, 403, 404) } } },
      async (req, reply) => {
        await d.sessions.revokeApiToken(actorName(req), req.params.id);
        return reply.status(204).send();
      },
    );
  });
};
