// JSON schemas shared by routes; Fastify validates requests and serialises responses with them.
export const err = { $ref: 'Error#' } as const;

/** What each error status means for the caller; the body is always the Error schema. */
const ERROR_RESPONSES: Record<number, string> = {
  400: 'The request is not valid: `code` says why (invalid_input names the field), `message` says it in words.',
  401: 'Not signed in, or the credentials are wrong: invalid_credentials, second_factor_required (with `methods`), …',
  403: 'Not allowed now: the role (forbidden), a step-up first (step_up_required), a temporary password, 2FA setup first.',
  404: 'No such thing (not_found).',
  409: 'The state does not allow it: conflict, limit_reached, totp_not_pending, no_email.',
  429: 'Too many attempts (locked) or a code sent a moment ago: wait the Retry-After seconds.',
  503: 'A part postern depends on is down (temporary_failure): try again later; never a wrong password.',
};

/** Error responses by status, each described, all with the Error body. */
export const errors = (...codes: number[]) => Object.fromEntries(codes.map((c) => [c, { description: ERROR_RESPONSES[c] ?? 'Error', ...err }]));

export const userView = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    username: { type: 'string' },
    role: { type: 'string', enum: ['user', 'admin', 'auditor'] },
    status: { type: 'string', enum: ['active', 'disabled'] },
    email: { type: 'string', nullable: true },
    twoFactor: { type: 'boolean' },
    totp: { type: 'boolean' },
    mustChangePassword: { type: 'boolean' },
    pgp: { type: 'object', nullable: true, properties: { fingerprint: { type: 'string' }, encrypt: { type: 'boolean' } } },
    createdAt: { type: 'string', format: 'date-time' },
  },
} as const;

export const aspView = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    description: { type: 'string' },
    scopes: { type: 'array', items: { type: 'string' } },
    networks: { type: 'array', items: { type: 'string' } },
    createdAt: { type: 'string', format: 'date-time' },
    expiresAt: { type: 'string', format: 'date-time', nullable: true },
    lastUse: {
      type: 'object',
      nullable: true,
      properties: { time: { type: 'string', format: 'date-time' }, ip: { type: 'string', nullable: true }, protocol: { type: 'string', nullable: true } },
    },
  },
} as const;

export const auditView = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    time: { type: 'string', format: 'date-time' },
    action: { type: 'string' },
    result: { type: 'string' },
    reason: { type: 'string', nullable: true },
    username: { type: 'string', nullable: true },
    ip: { type: 'string', nullable: true },
    protocol: { type: 'string', nullable: true },
    scope: { type: 'string', nullable: true },
    aspId: { type: 'string', nullable: true },
    sessionId: { type: 'string', nullable: true },
    userAgent: { type: 'string', nullable: true },
    actor: { type: 'string', nullable: true },
  },
} as const;

export const auditPage = {
  type: 'object',
  properties: { events: { type: 'array', items: auditView }, nextCursor: { type: 'string', nullable: true } },
} as const;

export const idParam = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9a-f]{24}$' } } } as const;
export const nameParam = { type: 'object', required: ['name'], properties: { name: { type: 'string', minLength: 1, maxLength: 254 } } } as const;
export const ok = { type: 'object', properties: { ok: { type: 'boolean' } } } as const;

/** Request fields for a username and a password, the same wherever they are taken. */
export const usernameField = { type: 'string', minLength: 1, maxLength: 254 } as const;
export const passwordField = { type: 'string', minLength: 1, maxLength: 1024 } as const;

/** A WebAuthn answer from the browser (RegistrationResponseJSON / AuthenticationResponseJSON), checked in full by the core. */
export const webauthnResponse = {
  type: 'object',
  required: ['id', 'rawId', 'type', 'response'],
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 1024 },
    rawId: { type: 'string', minLength: 1, maxLength: 1024 },
    type: { type: 'string', enum: ['public-key'] },
    response: { type: 'object', additionalProperties: true },
    clientExtensionResults: { type: 'object', additionalProperties: true },
    authenticatorAttachment: { type: 'string' },
  },
} as const;

/** WebAuthn options for the browser, passed on as the library made them. */
export const webauthnOptions = { type: 'object', additionalProperties: true } as const;

export const securityKeyView = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    label: { type: 'string' },
    createdAt: { type: 'string', format: 'date-time' },
    lastUsedAt: { type: 'string', format: 'date-time', nullable: true },
  },
} as const;
