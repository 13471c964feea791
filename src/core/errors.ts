/** An error with a stable code that callers map to protocol answers and exit codes. */
export class PosternError extends Error {
  constructor(
    readonly code: string,
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
