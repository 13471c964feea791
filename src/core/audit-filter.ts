import { isIP } from 'node:net';
import { parseDuration } from './duration.js';
import { invalid } from './errors.js';
import { AUDIT_ACTIONS, AUDIT_RESULTS, PROTOCOLS, type AuditAction, type AuditQuery, type AuditResult, type Protocol } from './types.js';
import { normalizeUsername } from './username.js';

/** An audit query as a person types it, on the command line or in the API's query string. */
export interface AuditFilterInput {
  user?: string;
  action?: string;
  result?: string;
  ip?: string;
  protocol?: string;
  since?: string;
  until?: string;
}

/**
 * A time bound in the one syntax the CLI and the API share: an ISO 8601 date-time
 * (2026-11-30T08:00:00Z) or a duration back from now (30m, 24h, 7d).
 */
export function parseTimeBound(text: string, what: string, now: Date): Date {
  const ago = parseDuration(text);
  if (ago !== null) return new Date(now.getTime() - ago);
  const at = /^\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)?)?$/.test(text) ? new Date(text) : null;
  if (!at || Number.isNaN(at.getTime()))
    throw invalid(`${what} expects an ISO date-time such as 2026-11-30T08:00:00Z or a duration back from now such as 24h, not "${text}"`);
  return at;
}

/** Checks every filter against what can be in the log, so that a typo is an error, not an empty answer. */
export function parseAuditFilter(f: AuditFilterInput, now: Date): Omit<AuditQuery, 'limit' | 'cursor'> {
  const oneOf = <T extends string>(value: string | undefined, allowed: readonly T[], what: string): T | undefined => {
    if (value === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(value)) throw invalid(`${what} must be one of ${allowed.join(', ')}; not "${value}"`);
    return value as T;
  };
  if (f.ip !== undefined && !isIP(f.ip)) throw invalid(`ip must be an IPv4 or IPv6 address, not "${f.ip}"`);
  const since = f.since === undefined ? undefined : parseTimeBound(f.since, 'since', now);
  const until = f.until === undefined ? undefined : parseTimeBound(f.until, 'until', now);
  if (since && until && since.getTime() > until.getTime()) throw invalid('since must be before until');
  return {
    username: f.user === undefined ? undefined : normalizeUsername(f.user),
    action: oneOf<AuditAction>(f.action, AUDIT_ACTIONS, 'action'),
    result: oneOf<AuditResult>(f.result, AUDIT_RESULTS, 'result'),
    ip: f.ip,
    protocol: oneOf<Protocol>(f.protocol, PROTOCOLS, 'protocol'),
    since,
    until,
  };
}
