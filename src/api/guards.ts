import type { FastifyRequest } from 'fastify';
import type { Actor } from '../core/accounts.js';
import type { CodePurpose } from '../core/email-codes.js';
import type { Policy } from '../core/policy.js';
import type { Role } from '../core/types.js';
import type { ApiDeps } from './deps.js';
import { HttpError, forbidden } from './http-errors.js';

// Route guards (who may call what) and who the caller is, for the routes of every audience.

/**
 * Sensitive operations need an emailed code while the email_codes feature is on for the
 * caller's domain: ask for one with POST /me/email-code, then send it as `emailCode`.
 */
export async function requireEmailCode(d: ApiDeps, req: FastifyRequest, purpose: CodePurpose, code: string | undefined): Promise<void> {
  const p = req.principal;
  if (!p || p.kind !== 'session' || !(await d.policy.enabled('email_codes', p.user.domain))) return;
  const check = await d.emailCodes.check(p.user, purpose, code);
  if (check === 'missing')
    throw new HttpError(403, 'email_code_required', `This needs a code sent by email: POST /api/v1/me/email-code with purpose "${purpose}"`);
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

/** Routes a session signed in with a temporary password may use before changing it. */
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
