import pino from 'pino';

/** Structured logs. Secrets never reach here: redact the fields that could carry them. */
export function createLogger(level: string) {
  return pino({
    level,
    redact: { paths: ['secret', 'password', 'code', '*.secret', '*.password', '*.code'], censor: '[redacted]' },
  });
}
export type Logger = ReturnType<typeof createLogger>;
