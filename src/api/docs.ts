// The API's prose for its OpenAPI document, in one place: what each operation is for, when
// it answers what, and an example request (or answer) a reader can copy. Routes keep their
// short summary and their schemas; buildApi adds these to each route as it is registered.

interface OperationDoc {
  description: string;
  /** An example request body, for operations that take one. */
  body?: Record<string, unknown>;
  /** An example of the successful answer. */
  answer?: unknown;
}

const ASP = {
  id: '66f1c0ffee00000000000001',
  description: 'Thunderbird',
  scopes: ['imap', 'smtp'],
  networks: [],
  createdAt: '2026-12-01T09:00:00.000Z',
  expiresAt: null,
  lastUse: null,
};
const USER = {
  id: '66f1c0ffee00000000000002',
  username: 'alice@example.org',
  role: 'user',
  status: 'active',
  email: 'alice@example.org',
  twoFactor: true,
  totp: true,
  mustChangePassword: false,
  pgp: null,
  createdAt: '2026-11-02T08:00:00.000Z',
};
const CONFIRM = { password: 'correct horse battery staple', totp: '492039' };

export const OPERATION_DOCS: Record<string, OperationDoc> = {
  'GET /api/v1/client-setup': {
    description:
      "Public. What a mail app that finds nothing by itself must be told: the host, each protocol's port and TLS mode, and whether the user name is the whole address.",
    answer: {
      host: 'mail.example.org',
      displayName: 'Example Mail',
      username: 'address',
      imap: { port: 993, tls: 'implicit' },
      pop3: { port: 995, tls: 'implicit' },
      smtp: { port: 465, tls: 'implicit' },
    },
  },
  'POST /api/v1/session': {
    description:
      "Signs in to this page and the API. Without a second factor an account with 2FA answers 401 second_factor_required with the methods it has (and security-key options); send the code, a recovery code or the key's answer with the password again. A trusted device token skips the second factor.",
    body: { username: 'alice@example.org', password: 'correct horse battery staple', totp: '492039', trustDevice: true },
  },
  'DELETE /api/v1/session': { description: 'Signs out the session whose token is sent; its token stops working at once.' },
  'POST /api/v1/session/confirm': {
    description: 'Step-up: proves it is still you, so that changes answering 403 step_up_required go through for the step-up window ([api] step_up_window).',
    body: CONFIRM,
  },
  'DELETE /api/v1/sessions': {
    description: 'Signs out every web session of this account, this one included; with others=true every one but this (after a lost laptop, say).',
    answer: { signedOut: 3 },
  },
  'GET /api/v1/me': {
    description: 'The signed-in account: name, role, whether 2FA and PGP storage are on, and whether the password must be changed first.',
    answer: USER,
  },
  'DELETE /api/v1/me': {
    description: 'Deletes the account and every credential of it; its mailbox on the mail server stays. Administrators cannot delete themselves.',
    body: { ...CONFIRM },
  },
  'PUT /api/v1/me/password': {
    description:
      'Changes the account password (the password policy applies). Other web sessions, trusted devices and live mail sessions on the password end; app passwords keep working.',
    body: { currentPassword: 'correct horse battery staple', newPassword: 'a new long passphrase 7' },
  },
  'PUT /api/v1/me/email': {
    description: 'Sets the address security notices and emailed codes go to; null removes it. Needs a recent step-up.',
    body: { email: 'alice@example.org' },
    answer: USER,
  },
  'GET /api/v1/me/asps': {
    description: 'The app passwords of this account, with their scopes, networks, expiry and last use; never the passwords themselves.',
    answer: [ASP],
  },
  'POST /api/v1/me/asps': {
    description:
      'Creates an app password for mail apps, limited to its scopes (imap, pop3, smtp; * for all three) and optionally to networks and a lifetime. The password is in this answer only. Needs a recent step-up (and an emailed code when those are on).',
    body: { description: 'Thunderbird', scopes: ['imap', 'smtp'], expiresIn: '365d', networks: ['203.0.113.0/24'] },
    answer: { password: 'abcd efgh ijkl mnop', asp: ASP },
  },
  'POST /api/v1/me/email-code': {
    description:
      "Emails a 6-digit code for one sensitive operation, when the email_codes feature is on for the account's domain; 429 while a code sent a moment ago is still good.",
    body: { purpose: 'asp' },
  },
  'POST /api/v1/me/mobileconfig': { description: 'Answers application/x-apple-aspen-config: open it on the Mac, iPhone or iPad to add the account.', body: {} },
  'POST /api/v1/me/mobileconfig/link': { description: "The QR code encodes the link; scanning it with the phone's camera opens the profile.", body: {} },
  'DELETE /api/v1/me/asps/{id}': { description: 'Revokes one app password: mail sessions opened with it end at once.' },
  'POST /api/v1/me/totp/setup': {
    description: 'Starts adding an authenticator app: a new secret, its otpauth:// URI and a QR code. Nothing changes until /me/totp/enable confirms a code.',
    answer: {
      secret: 'JBSWY3DPEHPK3PXP',
      uri: 'otpauth://totp/postern:alice%40example.org?secret=JBSWY3DPEHPK3PXP&issuer=postern',
      qrCode: 'data:image/png;base64,…',
    },
  },
  'POST /api/v1/me/totp/enable': {
    description: 'Confirms the authenticator app with a code it shows; 2FA is on from now, and the recovery codes are in this answer only.',
    body: { code: '492039' },
    answer: { recoveryCodes: ['7KQ2-M9XD-4HTP', '…'] },
  },
  'POST /api/v1/me/totp/disable': {
    description: 'Turns every second factor off (authenticator, security keys, recovery codes): needs the password and a second factor.',
    body: CONFIRM,
  },
  'GET /api/v1/me/security-keys': { description: 'The security keys of this account, with when each was added and last used.' },
  'POST /api/v1/me/security-keys': {
    description:
      "Adds the security key from the browser's answer to the options of /me/security-keys/options; the first key turns 2FA on and returns recovery codes.",
    body: { label: 'YubiKey 5C', response: { id: '…', rawId: '…', type: 'public-key', response: {} } },
  },
  'POST /api/v1/me/security-keys/options': {
    description: 'Registration options for navigator.credentials.create(); answer them within the challenge lifetime ([webauthn] challenge_ttl).',
  },
  'DELETE /api/v1/me/security-keys/{id}': { description: 'Removes one security key; with no second factor left, 2FA is off.' },
  'POST /api/v1/me/recovery-codes': {
    description: 'Replaces every recovery code: the old ones stop working, the new ones are in this answer only.',
    answer: { recoveryCodes: ['7KQ2-M9XD-4HTP', '…'] },
  },
  'GET /api/v1/me/devices': { description: 'Browsers trusted to skip the second factor at sign-in, until their expiry.' },
  'DELETE /api/v1/me/devices/{id}': { description: 'Stops trusting one device: it is asked for the second factor again.' },
  'PUT /api/v1/me/pgp': {
    description: 'Stores an OpenPGP public key; with encrypt on, mail delivered and uploaded from now on is stored as PGP/MIME encrypted to it.',
    body: { publicKey: '-----BEGIN PGP PUBLIC KEY BLOCK-----\n…\n-----END PGP PUBLIC KEY BLOCK-----', encrypt: true },
  },
  'DELETE /api/v1/me/pgp': { description: 'Removes the PGP key: new mail is stored in clear; mail already encrypted stays so.' },
  'GET /api/v1/me/history': {
    description: 'Sign-ins (mail and web) and changes of this account, newest first, for the audit retention; page with nextCursor.',
    answer: {
      events: [
        {
          id: '…',
          time: '2026-12-01T09:12:00.000Z',
          action: 'auth',
          result: 'success',
          reason: 'asp',
          username: 'alice@example.org',
          ip: '203.0.113.5',
          protocol: 'imap',
          scope: 'imap',
          aspId: ASP.id,
          sessionId: 'k2vVbq',
          userAgent: null,
          actor: null,
        },
      ],
      nextCursor: null,
    },
  },
  'GET /api/v1/users': { description: 'Admins: accounts by name, with their role, status and 2FA; page with `after`.', answer: [USER] },
  'POST /api/v1/users': {
    description: 'Admins: creates an account (the password policy applies); the user may be asked to set up 2FA by policy.',
    body: { username: 'bob@example.org', password: 'a long initial passphrase 1', role: 'user', email: 'bob@example.org' },
  },
  'PATCH /api/v1/users/{name}': {
    description: 'Admins: disables (every session ends) or enables an account, changes its role or email.',
    body: { status: 'disabled' },
  },
  'DELETE /api/v1/users/{name}': { description: 'Admins: deletes an account and all its credentials; its mailbox on the mail server stays.' },
  'POST /api/v1/users/{name}/2fa/reset': {
    description: 'Admins: the user gets a temporary password that opens only its own change, and new recovery codes; the user is told at next sign-in.',
  },
  'GET /api/v1/policy/features': {
    description: "Admins: each feature's server-wide status and lock.",
    answer: { two_factor_required: { status: 'disabled', lock: 'unlocked' } },
  },
  'PUT /api/v1/policy/features/{name}': {
    description: 'Admins: sets a feature server-wide; locked means domains may not override it.',
    body: { status: 'enabled', lock: 'locked' },
  },
  'PUT /api/v1/domains/{domain}/features/{name}': {
    description: "Admins: a domain's own setting for a feature, while the server-wide one is unlocked.",
    body: { status: 'enabled' },
  },
  'GET /api/v1/tokens': { description: 'Admins: API tokens for automation, with role, creator and expiry; never the tokens.' },
  'POST /api/v1/tokens': {
    description: 'Admins: a token for automation (admin or auditor role), bound to its creator, shown in this answer only.',
    body: { role: 'auditor', description: 'SIEM export', expiresIn: '90d' },
  },
  'DELETE /api/v1/tokens/{id}': { description: 'Admins: revokes an API token at once.' },
  'GET /api/v1/audit': {
    description:
      'Admins and auditors: the audit trail filtered by user, action, result, address, protocol and time (durations such as 24h or ISO times), JSON pages or CSV.',
  },
};

/** The route's key in OPERATION_DOCS: its method and its path as OpenAPI writes it. */
export function operationKey(method: string, url: string): string {
  return `${method} ${url.replace(/:(\w+)/g, '{$1}')}`;
}
