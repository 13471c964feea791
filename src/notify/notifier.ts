import nodemailer from 'nodemailer';
import type { CodeMailer, CodePurpose } from '../core/email-codes.js';
import type { AuditObserver } from '../core/audit-log.js';
import type { UserStore } from '../core/ports.js';
import type { AuditEvent } from '../core/types.js';

export interface NotifySettings {
  smtpHost: string;
  smtpPort: number;
  from: string;
  hostname: string;
  /** Check the SMTP server's certificate (and name) when the connection is upgraded to TLS. */
  tlsVerify: boolean;
  /** PEM of a private CA that signed the server's certificate; null: the system's CAs. */
  ca: Buffer | null;
  /** Send nothing unless the server offers STARTTLS. */
  requireTls: boolean;
}

/**
 * One SMTP transport for notices and codes: STARTTLS whenever the server offers it, with the
 * certificate checked, so that codes and notices are not handed to whoever answers.
 */
function smtpTransport(s: NotifySettings) {
  return nodemailer.createTransport({
    host: s.smtpHost,
    port: s.smtpPort,
    secure: false,
    requireTLS: s.requireTls,
    tls: { rejectUnauthorized: s.tlsVerify, servername: s.smtpHost, ...(s.ca ? { ca: s.ca } : {}) },
  });
}

/** What the user is told, per audit event that changes or threatens their sign-in. */
const NOTICES: Record<string, (e: AuditEvent) => string | null> = {
  'password.change': () => 'Your password was changed.',
  'password.reset': () => 'An administrator set a temporary password for your account.',
  'asp.create': (e) => `An application-specific password was created (scopes: ${e.reason ?? '?'}).`,
  'asp.delete': () => 'An application-specific password was revoked.',
  'totp.enable': (e) => (e.result === 'success' ? 'Two-factor authentication was turned on.' : null),
  'totp.disable': () => 'Two-factor authentication was turned off.',
  'security_key.add': (e) => (e.result === 'success' ? 'A security key was added as a second factor.' : null),
  'security_key.delete': () => 'A security key was removed.',
  '2fa.reset': () => 'An administrator turned off two-factor authentication for your account.',
  'recovery.regenerate': () => 'New recovery codes were made; the old ones no longer work.',
  'device.create': () => 'A device was trusted to skip the second factor.',
  'device.delete': () => 'A trusted device was removed.',
  auth: (e) =>
    e.result === 'failure' && e.reason === 'second_factor_invalid'
      ? 'Someone signed in with your correct password but a wrong second factor. If this was not you, change your password.'
      : null,
};

function body(e: AuditEvent, what: string, hostname: string): string {
  return [
    what,
    '',
    `When:     ${e.time.toISOString()}`,
    `From:     ${e.ip ?? 'unknown address'}${e.protocol ? ` (${e.protocol})` : ''}`,
    `Done by:  ${e.actor ?? 'you'}`,
    '',
    `If you did not expect this, sign in at ${hostname} and review your account, or contact your administrator.`,
  ].join('\n');
}

const PURPOSES: Record<CodePurpose, string> = {
  sign_in: 'sign in from a new device',
  asp: 'create an application-specific password',
  token: 'create an API token',
  disable_2fa: 'turn off two-factor authentication',
  delete_account: 'delete your account',
};

/** Sends emailed verification codes through the same SMTP server as the notices. */
export function smtpCodeMailer(s: NotifySettings): CodeMailer {
  const transport = smtpTransport(s);
  return {
    async sendCode(to, code, purpose) {
      await transport.sendMail({
        from: s.from,
        to,
        subject: `Your ${s.hostname} code: ${code}`,
        text: `Use ${code} to ${PURPOSES[purpose]}. It works once and expires in a few minutes.\n\nIf you did not ask for it, someone knows your password: change it.`,
      });
    },
  };
}

/**
 * Tells users by email when their authentication data changes, derived from the audit
 * trail so no change can skip it. Sending happens after the event is stored and never
 * delays or fails the operation itself.
 */
export function securityNotices(users: UserStore, s: NotifySettings): AuditObserver {
  const transport = smtpTransport(s);
  return async (e: AuditEvent) => {
    const what = NOTICES[e.action]?.(e);
    if (!what || !e.userId) return;
    const user = await users.findById(e.userId);
    if (!user?.email) return;
    await transport.sendMail({ from: s.from, to: user.email, subject: `Security notice for ${user.username}`, text: body(e, what, s.hostname) });
  };
}
