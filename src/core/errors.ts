/**
 * Every code a PosternError carries, each with what it means for whoever meets it. Closed:
 * an edge maps each of them (the API's status map is a Record over this), so a new code is a
 * type error until every edge says how to answer it.
 */
export const ERROR_CODES = {
  invalid_input: 'a value in the request is not valid; the message names it',
  invalid_code: 'a one-time code (TOTP, recovery, emailed) is wrong or spent',
  invalid_security_key: 'the security key answer does not verify',
  not_found: 'what was named does not exist',
  conflict: 'it exists already, or its state does not allow this',
  limit_reached: 'a per-account limit (ASPs, keys) is reached',
  totp_not_pending: 'there is no TOTP setup to confirm: start one first',
  no_email: 'the account has no email address to send a code to',
  no_mailbox: 'the mail server has no mailbox for this account',
  step_up_required: 'confirm the password (or second factor) again first',
  password_change_required: 'a temporary password opens only its own change',
  temporary_failure: 'a part postern depends on is down: try again later',
  store_misconfigured: 'the store refuses postern or is newer than it: the operator must act',
  secret_unreadable: 'a sealed secret cannot be opened with the configured keys',
  config_invalid: 'the configuration does not load; the message names the key',
  listen_failed: 'a listener could not bind its address',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error with a stable code that callers map to protocol answers and exit codes. */
export class PosternError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** True for faults of a dependency (store, Redis, upstream): retry later, not the user's fault. */
    readonly temporary = false,
  ) {
    super(message);
    this.name = 'PosternError';
  }
}

export const notFound = (what: string) => new PosternError('not_found', `${what} not found`);
export const conflict = (message: string) => new PosternError('conflict', message);
export const invalid = (message: string) => new PosternError('invalid_input', message);

/** Wraps a dependency failure so callers answer "try again later", never "wrong password". */
export function temporary(cause: unknown, what: string): PosternError {
  const err = new PosternError('temporary_failure', `${what} is unavailable, try again later`, true);
  err.cause = cause;
  return err;
}

export const isTemporary = (err: unknown): boolean => err instanceof PosternError && err.temporary;
