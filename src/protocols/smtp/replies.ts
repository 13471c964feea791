import type { AuthResult } from '../../core/types.js';
import type { Reply } from '../upstream/smtp-client.js';

/** An error smtp-server answers with its `responseCode`. */
export type SmtpError = Error & { responseCode?: number };
export const smtpError = (code: number, message: string): SmtpError => Object.assign(new Error(message), { responseCode: code });

/** SMTP answer for a refused login (RFC 4954): 454 for anything temporary, 535 for bad credentials. */
export function smtpRefusal(r: Extract<AuthResult, { ok: false }>): SmtpError {
  if (r.reason === 'locked') return smtpError(454, `4.7.0 Too many failed attempts, try again in ${r.retryAfter ?? 60} seconds`);
  if (r.reason === 'temporary_failure') return smtpError(454, '4.7.0 Temporary authentication failure, try again later');
  return smtpError(535, `5.7.8 ${r.message}`);
}

/** An upstream's reply passed on to the client as it was. */
export const replyError = (r: Reply): SmtpError => smtpError(r.code, r.text.split('\n').join(' '));
