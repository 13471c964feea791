import type { FastifyReply } from 'fastify';
import { PosternError, type ErrorCode } from '../core/errors.js';
import type { AuthFailReason, AuthResult } from '../core/types.js';

// The API's one error registry: every failure leaves here as { code, message } with its status.

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

/**
 * The codes an API answer can carry: the core's, its refusals of an authentication, and the
 * few only the web edge has (who is asking, and the emailed-code flow).
 */
export type ApiErrorCode = ErrorCode | AuthFailReason | 'unauthenticated' | 'forbidden' | 'code_recently_sent' | 'bad_request' | 'internal_error';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ApiErrorCode,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** The HTTP status of every code the core can raise: a code left out here is a type error. */
const STATUS: Record<ErrorCode, number> = {
  invalid_input: 400,
  invalid_code: 400,
  invalid_security_key: 400,
  not_found: 404,
  conflict: 409,
  limit_reached: 409,
  totp_not_pending: 409,
  no_email: 409,
  no_mailbox: 409,
  step_up_required: 403,
  password_change_required: 403,
  temporary_failure: 503,
  store_misconfigured: 503,
  secret_unreadable: 500,
  config_invalid: 500,
  listen_failed: 500,
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

/** Sends any error thrown by a route or guard as the API's error body. */
export function sendError(reply: FastifyReply, err: unknown): FastifyReply {
  if (err instanceof HttpError) {
    if (err.extra.retryAfter) void reply.header('Retry-After', String(err.extra.retryAfter));
    return reply.status(err.status).send({ code: err.code, message: err.message, ...err.extra });
  }
  if (err instanceof PosternError) {
    if (err.temporary) return reply.status(503).send({ code: 'temporary_failure', message: err.message });
    return reply.status(STATUS[err.code]).send({ code: err.code, message: err.message });
  }
  const e = err as { validation?: unknown; statusCode?: number; message?: string; code?: string };
  if (e.validation) return reply.status(400).send({ code: 'invalid_input', message: e.message ?? 'invalid input' });
  if (e.statusCode && e.statusCode < 500) return reply.status(e.statusCode).send({ code: 'bad_request', message: e.message ?? 'bad request' });
  reply.log.error({ err: e.message }, 'unhandled API error');
  return reply.status(500).send({ code: 'internal_error', message: 'Internal error' });
}
