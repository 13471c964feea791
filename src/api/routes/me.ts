import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import QRCode from 'qrcode';
import { parseAspScopes } from '../../core/asp.js';
import { optionalLifetime } from '../../core/duration.js';
import type { SecurityKeyAssertion } from '../../core/types.js';
import { aspView, auditPage, errors, idParam, securityKeyView, userView as userSchema, webauthnOptions, webauthnResponse } from '../schemas.js';
import { actorOf, requireEmailCode, requireSessionWith, sessionOf } from '../guards.js';
import { HttpError, refusal } from '../http-errors.js';
import type { ApiDeps } from '../deps.js';
import { accountProfile, sendProfile } from '../client-setup.js';
import { userView } from '../views.js';
import { secondFactorOf } from './session.js';

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

/** What a drastic change of one's own account needs: the password, a second factor, an emailed code. */
type Confirmation = { password: string; totp?: string; recoveryCode?: string; securityKey?: SecurityKeyAssertion; emailCode?: string };
const confirmationBody = {
  type: 'object',
  required: ['password'],
  additionalProperties: false,
  properties: {
    password: { type: 'string', maxLength: 1024 },
    totp: { type: 'string', pattern: '^[0-9]{6}$' },
    recoveryCode: { type: 'string', maxLength: 64 },
    securityKey: webauthnResponse,
    emailCode: { type: 'string', pattern: '^[0-9]{6}$' },
  },
} as const;

/** Self-service for the signed-in user's own account. */
/** A Fastify plugin: its hooks and guards stay inside it. */
export const meRoutes: FastifyPluginAsync<{ deps: ApiDeps }> = async (api, { deps: d }) => {
  const me = (req: FastifyRequest) => sessionOf(req).user;
  const actor = actorOf;
  /** Re-checks the password (and second factor when 2FA is on) under the rate windows. */
  const confirm = async (req: FastifyRequest, password: string, factor: { totp?: string; recoveryCode?: string; securityKey?: SecurityKeyAssertion }) => {
    const r = await d.sessions.confirm(sessionOf(req), {
      password,
      secondFactor: secondFactorOf(factor),
      ip: req.ip,
      userAgent: req.headers['user-agent'] ?? null,
    });
    if (!r.ok) throw refusal(r);
  };

  api.register(async (r) => {
    r.addHook('preHandler', requireSessionWith(d.policy));

    r.get('/me', { schema: { tags: ['me'], summary: 'My account', response: { 200: userSchema, ...errors(401, 403) } } }, async (req) => userView(me(req)));

    r.delete<{ Body: Confirmation }>(
      '/me',
      {
        schema: {
          tags: ['me'],
          summary: 'Delete my account: needs the password, the second factor when 2FA is on, and an emailed code when those are on',
          description: 'Removes the account from postern (sign-in, app passwords, keys, sessions); the mailbox on the mail server stays.',
          body: confirmationBody,
          response: { 204: { type: 'null' }, ...errors(400, 401, 403, 429, 503) },
        },
      },
      async (req, reply) => {
        // An administrator leaving is another administrator's job, so that one always remains.
        if (me(req).role === 'admin') throw new HttpError(403, 'forbidden', 'Administrators cannot delete their own account: ask another administrator');
        await confirm(req, req.body.password, req.body);
        await requireEmailCode(d, req, 'delete_account', req.body.emailCode);
        await d.accounts.deleteUser(actor(req), me(req).username);
        return reply.status(204).send();
      },
    );

    r.put<{ Body: { currentPassword: string; newPassword: string } }>(
      '/me/password',
      {
        schema: {
          tags: ['me'],
          summary: 'Change my password (the server password policy applies)',
          body: {
            type: 'object',
            required: ['currentPassword', 'newPassword'],
            additionalProperties: false,
            properties: { currentPassword: { type: 'string', minLength: 1, maxLength: 1024 }, newPassword: { type: 'string', minLength: 1, maxLength: 1024 } },
          },
          response: { 204: { type: 'null' }, ...errors(400, 401, 403, 429, 503) },
        },
      },
      async (req, reply) => {
        const user = me(req);
        const check = await d.auth.authenticate({ username: user.username, secret: req.body.currentPassword, scope: 'master', ip: req.ip, protocol: 'http' });
        // With 2FA on, "second factor required" still proves the password; this session already passed the factor.
        if (!check.ok && check.reason !== 'second_factor_required') throw refusal(check);
        await d.accounts.setPassword(actor(req), user.username, req.body.newPassword);
        return reply.status(204).send();
      },
    );

    r.put<{ Body: { email: string | null } }>(
      '/me/email',
      {
        schema: {
          tags: ['me'],
          summary: 'Change where my security notices and emailed codes go (null removes it); needs a recent step-up',
          body: { type: 'object', required: ['email'], additionalProperties: false, properties: { email: { type: 'string', maxLength: 254, nullable: true } } },
          response: { 200: userSchema, ...errors(400, 401, 403) },
        },
      },
      async (req) => userView(await d.accounts.setEmail(actor(req), me(req).username, req.body.email)),
    );

    r.get(
      '/me/asps',
      { schema: { tags: ['asps'], summary: 'My application-specific passwords', response: { 200: { type: 'array', items: aspView }, ...errors(401, 403) } } },
      async (req) =>
        (await d.store.asps.listByUser(me(req).id)).map((a) => ({
          id: a.id,
          description: a.description,
          scopes: a.scopes,
          networks: a.networks,
          createdAt: iso(a.createdAt),
          expiresAt: iso(a.expiresAt),
          lastUse: a.lastUse ? { ...a.lastUse, time: iso(a.lastUse.time) } : null,
        })),
    );

    r.post<{ Body: { purpose: 'asp' | 'token' | 'disable_2fa' | 'delete_account' } }>(
      '/me/email-code',
      {
        schema: {
          tags: ['me'],
          summary: 'Email me a 6-digit code for a sensitive operation (when email codes are on)',
          body: {
            type: 'object',
            required: ['purpose'],
            additionalProperties: false,
            properties: { purpose: { type: 'string', enum: ['asp', 'token', 'disable_2fa', 'delete_account'] } },
          },
          response: { 202: { type: 'object', properties: { sent: { type: 'boolean' } } }, ...errors(400, 401, 403, 409, 429, 503) },
        },
      },
      async (req, reply) => {
        const r = await d.emailCodes.send(me(req), req.body.purpose);
        if ('retryAfter' in r)
          throw new HttpError(429, 'code_recently_sent', 'A code was sent a moment ago: use it, or ask again later', { retryAfter: r.retryAfter });
        return reply.status(202).send({ sent: true });
      },
    );

    r.post<{ Body: { description?: string; scopes: string[]; expiresIn?: string; networks?: string[]; emailCode?: string } }>(
      '/me/asps',
      {
        schema: {
          tags: ['asps'],
          summary: 'Create an application-specific password; the password is returned only in this answer',
          body: {
            type: 'object',
            required: ['scopes'],
            additionalProperties: false,
            properties: {
              description: { type: 'string', maxLength: 200 },
              scopes: { type: 'array', minItems: 1, maxItems: 4, items: { type: 'string', enum: ['imap', 'pop3', 'smtp', '*'] } },
              expiresIn: { type: 'string', pattern: '^[0-9]+(ms|s|m|h|d)$' },
              networks: {
                type: 'array',
                maxItems: 50,
                items: { type: 'string', maxLength: 64 },
                description: 'Addresses or CIDRs it may log in from; none: from anywhere',
              },
              emailCode: { type: 'string', pattern: '^[0-9]{6}$' },
            },
          },
          response: { 201: { type: 'object', properties: { password: { type: 'string' }, asp: aspView } }, ...errors(400, 401, 403, 409) },
        },
      },
      async (req, reply) => {
        const ttl = optionalLifetime(req.body.expiresIn, 'expiresIn');
        await requireEmailCode(d, req, 'asp', req.body.emailCode);
        const { asp, password } = await d.accounts.createAsp(actor(req), me(req).username, {
          description: req.body.description ?? '',
          scopes: parseAspScopes(req.body.scopes),
          expiresInMs: ttl,
          networks: req.body.networks,
        });
        return reply.status(201).send({
          password,
          asp: {
            id: asp.id,
            description: asp.description,
            scopes: asp.scopes,
            networks: asp.networks,
            createdAt: iso(asp.createdAt),
            expiresAt: iso(asp.expiresAt),
            lastUse: null,
          },
        });
      },
    );

    const setup = d.clientSetup;
    if (setup) {
      r.post<{ Body: { emailCode?: string } }>(
        '/me/mobileconfig',
        {
          schema: {
            tags: ['asps'],
            summary: 'An Apple Mail profile (.mobileconfig) for this account, with a new app password (IMAP and SMTP) made for it',
            description:
              'Creates an ASP like POST /me/asps (the same confirmation applies) and returns it inside a configuration profile, ' +
              'signed with the server certificate when one is available. The password is in the profile only.',
            body: { type: 'object', additionalProperties: false, properties: { emailCode: { type: 'string', pattern: '^[0-9]{6}$' } } },
            response: { 200: { type: 'string', description: 'application/x-apple-aspen-config' }, ...errors(401, 403, 409) },
          },
        },
        async (req, reply) => {
          const user = me(req);
          await requireEmailCode(d, req, 'asp', req.body?.emailCode);
          const { password } = await d.accounts.createAsp(actor(req), user.username, { description: 'Apple Mail profile', scopes: ['imap', 'smtp'] });
          return sendProfile(reply, setup.host, await accountProfile(setup, user, password, d.profileSigner?.() ?? null));
        },
      );

      r.post<{ Body: { emailCode?: string } }>(
        '/me/mobileconfig/link',
        {
          schema: {
            tags: ['asps'],
            summary: 'A one-time link (and its QR code) that gives a phone the Apple Mail profile',
            description:
              "The link works once, for 10 minutes, and only while the account's credentials stay as they are; opening it creates the ASP " +
              '(IMAP and SMTP) and downloads the profile. Asked for with the same confirmation as POST /me/asps.',
            body: { type: 'object', additionalProperties: false, properties: { emailCode: { type: 'string', pattern: '^[0-9]{6}$' } } },
            response: {
              201: { type: 'object', properties: { url: { type: 'string' }, expiresAt: { type: 'string', format: 'date-time' }, qr: { type: 'string' } } },
              ...errors(401, 403, 409),
            },
          },
        },
        async (req, reply) => {
          await requireEmailCode(d, req, 'asp', req.body?.emailCode);
          const { token, expiresAt } = await d.accounts.issueProfileLink(actor(req), me(req).username);
          const url = `${req.protocol}://${req.host}/setup/${token}`;
          return reply.status(201).send({ url, expiresAt: expiresAt.toISOString(), qr: await QRCode.toDataURL(url) });
        },
      );
    }

    r.delete<{ Params: { id: string } }>(
      '/me/asps/:id',
      {
        schema: {
          tags: ['asps'],
          summary: 'Revoke one application-specific password',
          params: idParam,
          response: { 204: { type: 'null' }, ...errors(401, 403, 404) },
        },
      },
      async (req, reply) => {
        await d.accounts.revokeAsp(actor(req), me(req).username, req.params.id);
        return reply.status(204).send();
      },
    );

    r.post(
      '/me/totp/setup',
      {
        schema: {
          tags: ['second factor'],
          summary: 'Start TOTP enrolment: secret, otpauth URI and QR code; 2FA turns on only after /me/totp/enable',
          response: {
            200: { type: 'object', properties: { secret: { type: 'string' }, uri: { type: 'string' }, qrCode: { type: 'string' } } },
            ...errors(401, 403),
          },
        },
      },
      async (req) => {
        const { secret, uri } = await d.accounts.setupTotp(actor(req), me(req).username);
        return { secret, uri, qrCode: await QRCode.toDataURL(uri) };
      },
    );

    r.post<{ Body: { code: string } }>(
      '/me/totp/enable',
      {
        schema: {
          tags: ['second factor'],
          summary: 'Confirm TOTP enrolment with a code; returns recovery codes (shown once)',
          body: { type: 'object', required: ['code'], additionalProperties: false, properties: { code: { type: 'string', pattern: '^[0-9]{6}$' } } },
          response: { 200: { type: 'object', properties: { recoveryCodes: { type: 'array', items: { type: 'string' } } } }, ...errors(400, 401, 403, 409) },
        },
      },
      async (req) => d.accounts.confirmTotp(actor(req), me(req).username, req.body.code),
    );

    r.post<{ Body: Confirmation }>(
      '/me/totp/disable',
      {
        schema: {
          tags: ['second factor'],
          summary: 'Turn my second factors off: needs the password and a second factor',
          body: confirmationBody,
          response: { 204: { type: 'null' }, ...errors(400, 401, 403, 429, 503) },
        },
      },
      async (req, reply) => {
        if (!me(req).twoFactor) throw new HttpError(409, 'conflict', 'Two-factor authentication is not on');
        await confirm(req, req.body.password, req.body);
        await requireEmailCode(d, req, 'disable_2fa', req.body.emailCode);
        await d.accounts.disableSecondFactor(actor(req), me(req).username);
        return reply.status(204).send();
      },
    );

    r.get(
      '/me/security-keys',
      {
        schema: {
          tags: ['second factor'],
          summary: 'My security keys (FIDO2/WebAuthn)',
          response: { 200: { type: 'array', items: securityKeyView }, ...errors(401, 403) },
        },
      },
      async (req) =>
        (await d.securityKeys.list(me(req).id)).map((k) => ({ id: k.id, label: k.label, createdAt: iso(k.createdAt), lastUsedAt: iso(k.lastUsedAt) })),
    );

    r.post(
      '/me/security-keys/options',
      {
        schema: {
          tags: ['second factor'],
          summary: 'Start adding a security key: options for navigator.credentials.create() (answer within 5 minutes)',
          response: { 200: webauthnOptions, ...errors(401, 403) },
        },
      },
      async (req) => d.accounts.securityKeyOptions(actor(req), me(req).username),
    );

    r.post<{ Body: { response: Record<string, unknown>; label?: string } }>(
      '/me/security-keys',
      {
        schema: {
          tags: ['second factor'],
          summary: 'Add a security key from the answer of navigator.credentials.create(); turns 2FA on',
          body: {
            type: 'object',
            required: ['response'],
            additionalProperties: false,
            properties: { response: webauthnResponse, label: { type: 'string', maxLength: 120 } },
          },
          response: {
            201: { type: 'object', properties: { key: securityKeyView, recoveryCodes: { type: 'array', nullable: true, items: { type: 'string' } } } },
            ...errors(400, 401, 403, 409),
          },
        },
      },
      async (req, reply) => {
        const { key, recoveryCodes } = await d.accounts.addSecurityKey(actor(req), me(req).username, req.body.response, req.body.label ?? '');
        return reply.status(201).send({ key: { id: key.id, label: key.label, createdAt: iso(key.createdAt), lastUsedAt: null }, recoveryCodes });
      },
    );

    r.delete<{ Params: { id: string } }>(
      '/me/security-keys/:id',
      {
        schema: { tags: ['second factor'], summary: 'Remove one security key', params: idParam, response: { 204: { type: 'null' }, ...errors(401, 403, 404) } },
      },
      async (req, reply) => {
        await d.accounts.removeSecurityKey(actor(req), me(req).username, req.params.id);
        return reply.status(204).send();
      },
    );

    r.post(
      '/me/recovery-codes',
      {
        schema: {
          tags: ['second factor'],
          summary: 'Replace my recovery codes; the new ones are shown only in this answer',
          response: { 200: { type: 'object', properties: { recoveryCodes: { type: 'array', items: { type: 'string' } } } }, ...errors(401, 403, 409) },
        },
      },
      async (req) => {
        if (!me(req).twoFactor) throw new HttpError(409, 'conflict', 'Turn on two-factor authentication first');
        return { recoveryCodes: await d.accounts.regenerateRecoveryCodes(actor(req), me(req).username) };
      },
    );

    r.get(
      '/me/devices',
      {
        schema: {
          tags: ['second factor'],
          summary: 'Devices that skip the second factor',
          response: {
            200: {
              type: 'array',
              items: {
                type: 'object',
                properties: { id: { type: 'string' }, label: { type: 'string' }, createdAt: { type: 'string' }, expiresAt: { type: 'string' } },
              },
            },
            ...errors(401, 403),
          },
        },
      },
      async (req) =>
        (await d.sessions.listDevices(me(req).id)).map((x) => ({ id: x.id, label: x.label, createdAt: iso(x.createdAt), expiresAt: iso(x.expiresAt) })),
    );

    r.delete<{ Params: { id: string } }>(
      '/me/devices/:id',
      {
        schema: { tags: ['second factor'], summary: 'Stop trusting a device', params: idParam, response: { 204: { type: 'null' }, ...errors(401, 403, 404) } },
      },
      async (req, reply) => {
        await d.sessions.removeDevice(me(req), req.params.id, me(req).username);
        return reply.status(204).send();
      },
    );

    r.put<{ Body: { publicKey: string; encrypt: boolean } }>(
      '/me/pgp',
      {
        schema: {
          tags: ['pgp'],
          summary: 'Upload my PGP public key and choose whether mail is stored encrypted to it',
          body: {
            type: 'object',
            required: ['publicKey', 'encrypt'],
            additionalProperties: false,
            properties: { publicKey: { type: 'string', minLength: 1, maxLength: 65536 }, encrypt: { type: 'boolean' } },
          },
          response: { 200: userSchema, ...errors(400, 401, 403) },
        },
      },
      async (req) => userView(await d.accounts.setPgpKey(actor(req), me(req).username, req.body.publicKey, req.body.encrypt)),
    );

    r.delete(
      '/me/pgp',
      { schema: { tags: ['pgp'], summary: 'Remove my PGP key (mail is stored in clear again)', response: { 200: userSchema, ...errors(401, 403) } } },
      async (req) => userView(await d.accounts.setPgpKey(actor(req), me(req).username, null, false)),
    );

    r.get<{ Querystring: { limit?: number; cursor?: string } }>(
      '/me/history',
      {
        schema: {
          tags: ['me'],
          summary: 'My sign-in history and account changes, newest first',
          querystring: {
            type: 'object',
            properties: { limit: { type: 'integer', minimum: 1, maximum: 200, default: 50 }, cursor: { type: 'string', maxLength: 200 } },
          },
          response: { 200: auditPage, ...errors(400, 401, 403) },
        },
      },
      async (req) => d.store.audit.query({ username: me(req).username, limit: req.query.limit ?? 50, cursor: req.query.cursor }, d.clock.now()),
    );
  });
};
