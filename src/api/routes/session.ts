import type { FastifyPluginAsync } from 'fastify';
import type { SecondFactor, SecurityKeyAssertion } from '../../core/types.js';
import { errors, userView as userSchema, passwordField, usernameField, webauthnResponse } from '../schemas.js';
import { requireSessionWith, sessionOf } from '../guards.js';
import { refusal } from '../http-errors.js';
import type { ApiDeps } from '../deps.js';
import { userView } from '../views.js';

interface SignInBody {
  username: string;
  password: string;
  totp?: string;
  recoveryCode?: string;
  securityKey?: SecurityKeyAssertion;
  deviceToken?: string;
  trustDevice?: boolean;
  deviceLabel?: string;
  emailCode?: string;
}

/** The one second factor a request carries, if any. */
export function secondFactorOf(b: { totp?: string; recoveryCode?: string; securityKey?: SecurityKeyAssertion }): SecondFactor | undefined {
  if (b.totp) return { kind: 'totp', code: b.totp };
  if (b.recoveryCode) return { kind: 'recovery', code: b.recoveryCode };
  if (b.securityKey) return { kind: 'security_key', assertion: b.securityKey };
  return undefined;
}

/** Master sign-in (password + second factor or trusted device) and sign-out. */
/** A Fastify plugin: its hooks and guards stay inside it. */
export const sessionRoutes: FastifyPluginAsync<{ deps: ApiDeps }> = async (api, { deps: d }) => {
  api.post<{ Body: SignInBody }>(
    '/session',
    {
      schema: {
        tags: ['session'],
        summary: 'Sign in: password plus a second factor (TOTP, security key, recovery code) or a trusted-device token',
        description:
          'Without a second factor, an account with 2FA answers 401 second_factor_required with the methods it can use; with security keys, also securityKeyOptions to pass to navigator.credentials.get(). Send its answer back as securityKey with the password.',
        security: [],
        body: {
          type: 'object',
          required: ['username', 'password'],
          additionalProperties: false,
          properties: {
            username: usernameField,
            password: passwordField,
            totp: { type: 'string', pattern: '^[0-9]{6}$' },
            recoveryCode: { type: 'string', minLength: 8, maxLength: 64 },
            securityKey: webauthnResponse,
            deviceToken: { type: 'string', maxLength: 200 },
            trustDevice: { type: 'boolean' },
            deviceLabel: { type: 'string', maxLength: 120 },
            emailCode: { type: 'string', pattern: '^[0-9]{6}$' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              token: { type: 'string' },
              expiresAt: { type: 'string', format: 'date-time' },
              deviceToken: { type: 'string', nullable: true },
              notices: { type: 'array', items: { type: 'string' } },
              mustChangePassword: { type: 'boolean' },
              mustSetUpTwoFactor: { type: 'boolean' },
              user: userSchema,
            },
          },
          ...errors(400, 401, 403, 429, 503),
        },
      },
    },
    async (req) => {
      const b = req.body;
      const secondFactor = secondFactorOf(b);
      const r = await d.sessions.signIn({
        username: b.username,
        password: b.password,
        secondFactor,
        deviceToken: b.deviceToken,
        trustDevice: b.trustDevice,
        deviceLabel: b.deviceLabel,
        emailCode: b.emailCode,
        ip: req.ip,
        userAgent: req.headers['user-agent'] ?? null,
      });
      if (!r.ok) throw refusal(r);
      return {
        token: r.token,
        expiresAt: r.session.expiresAt.toISOString(),
        deviceToken: r.deviceToken,
        notices: r.notices,
        mustChangePassword: r.mustChangePassword,
        mustSetUpTwoFactor: r.mustSetUpTwoFactor,
        user: userView(r.user),
      };
    },
  );

  api.post<{ Body: { password: string; totp?: string; recoveryCode?: string; securityKey?: SecurityKeyAssertion } }>(
    '/session/confirm',
    {
      schema: {
        tags: ['session'],
        summary: 'Enter the password (and second factor) again: sensitive changes are allowed for a while after (step-up)',
        description:
          'Adding or removing second factors, new recovery codes, ASPs, API tokens and PGP key changes answer 403 step_up_required when the last proof is older than the step-up window.',
        body: {
          type: 'object',
          required: ['password'],
          additionalProperties: false,
          properties: {
            password: passwordField,
            totp: { type: 'string', pattern: '^[0-9]{6}$' },
            recoveryCode: { type: 'string', minLength: 8, maxLength: 64 },
            securityKey: webauthnResponse,
          },
        },
        response: { 204: { type: 'null' }, ...errors(400, 401, 403, 429, 503) },
      },
      preHandler: requireSessionWith(d.policy),
    },
    async (req, reply) => {
      const r = await d.sessions.confirm(sessionOf(req), {
        password: req.body.password,
        secondFactor: secondFactorOf(req.body),
        ip: req.ip,
        userAgent: req.headers['user-agent'] ?? null,
      });
      if (!r.ok) throw refusal(r);
      return reply.status(204).send();
    },
  );

  api.delete(
    '/session',
    {
      schema: { tags: ['session'], summary: 'Sign out this session', response: { 204: { type: 'null' }, ...errors(401, 403) } },
      preHandler: requireSessionWith(d.policy),
    },
    async (req, reply) => {
      const { user, session } = sessionOf(req);
      await d.sessions.signOut(user, session);
      return reply.status(204).send();
    },
  );

  api.delete<{ Querystring: { others?: boolean } }>(
    '/sessions',
    {
      schema: {
        tags: ['session'],
        summary: 'Sign out every session of this account (others=true: all but this one)',
        querystring: { type: 'object', additionalProperties: false, properties: { others: { type: 'boolean' } } },
        response: { 200: { type: 'object', properties: { signedOut: { type: 'integer' } } }, ...errors(401, 403) },
      },
      preHandler: requireSessionWith(d.policy),
    },
    async (req) => {
      const p = sessionOf(req);
      return { signedOut: await d.sessions.signOutEverywhere(p.user, req.query.others ? p.session.id : undefined) };
    },
  );
};
