// The self-service page: one HTML document and one script, kept as strings so
// the build needs no asset step. It only calls the public JSON API; the session token lives
// in memory (sessionStorage), never in a cookie, so the API stays free of CSRF.

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>postern — your account</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
  label { display: block; margin: .4rem 0; } input[type=text], input[type=password] { width: 18rem; padding: .3rem; }
  button { padding: .35rem .8rem; margin-top: .4rem; } table { border-collapse: collapse; width: 100%; }
  td, th { border-bottom: 1px solid #ddd; padding: .3rem; text-align: left; font-size: .9rem; }
  .secret { font: 1.3rem monospace; background: #f3f3f3; padding: .5rem; display: inline-block; }
  .error { color: #a00; } .notice { color: #555; } [hidden] { display: none; }
  .feedback { min-height: 1.2em; margin: .3rem 0; } .feedback.error { color: #a00; } .feedback.ok { color: #175e17; }
  input, textarea { max-width: 100%; box-sizing: border-box; }
  table { display: block; overflow-x: auto; } pre, code, .secret { overflow-wrap: anywhere; white-space: pre-wrap; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem .8rem; } dd { margin: 0; }
  @media (max-width: 30rem) { body { margin: 1rem auto; } dl { grid-template-columns: 1fr; } dd { margin-bottom: .4rem; } }
</style>
</head>
<body>
<h1>postern</h1>
<p id="message" class="error" role="alert"></p>

<form id="signin">
  <h2>Sign in</h2>
  <label>Username <input type="text" name="username" autocomplete="username" required></label>
  <label>Password <input type="password" name="password" autocomplete="current-password" required></label>
  <label>Authenticator code <input type="text" name="totp" inputmode="numeric" autocomplete="one-time-code"></label>
  <label>or recovery code <input type="text" name="recoveryCode"></label>
  <label>Emailed code (when asked) <input type="text" name="emailCode" inputmode="numeric"></label>
  <label><input type="checkbox" name="trust"> Trust this device: no second factor here for a while</label>
  <button type="submit">Sign in</button>
  <p class="feedback" role="status" aria-live="polite"></p>
</form>

<main id="account" hidden>
  <p>Signed in as <strong id="who"></strong> · two-factor: <span id="twofactor"></span>
     <button id="signout" type="button">Sign out</button> <button id="signout-others" type="button">Sign out my other sessions</button> <button id="signout-all" type="button">Sign out everywhere</button></p>
  <p id="notices" class="notice" role="status"></p>
  <nav aria-label="Sections"><a href="#password">Password</a> · <a href="#totp">Two-factor</a> · <a href="#keys">Security keys</a> · <a href="#apps">App passwords</a> · <a href="#email">Email</a> · <a href="#history-section">History</a> · <a href="#delete">Delete account</a></nav>

  <section id="stepup" hidden>
    <h2>Confirm it is you</h2>
    <p class="feedback" role="status" aria-live="polite"></p>
    <p>This change needs your password again (and your second factor, when it is on).</p>
    <form id="stepup-form">
      <label>Password <input type="password" name="password" autocomplete="current-password" required></label>
      <label>Authenticator or recovery code <input type="text" name="code" autocomplete="one-time-code"></label>
      <button type="submit">Confirm and continue</button> <button type="button" id="stepup-cancel">Cancel</button>
    </form>
  </section>

  <section id="password">
    <h2>Password</h2>
    <p class="feedback" role="status" aria-live="polite"></p>
    <form id="password-change">
      <label>Current password <input type="password" name="currentPassword" autocomplete="current-password" required></label>
      <label>New password <input type="password" name="newPassword" autocomplete="new-password" required></label>
      <label>New password again <input type="password" name="again" autocomplete="new-password" required></label>
      <button type="submit">Change password</button>
    </form>
  </section>

  <section id="totp">
    <h2>Authenticator app</h2>
    <p class="feedback" role="status" aria-live="polite"></p>
    <button id="totp-setup" type="button">Set up an authenticator app</button>
    <div id="totp-enrol" hidden>
      <p>Scan this code, or type the key <code id="totp-secret"></code>, then enter the code the app shows.</p>
      <img id="totp-qr" alt="QR code for the authenticator app" width="200" height="200">
      <form id="totp-enable"><label>Code <input type="text" name="code" inputmode="numeric" required></label><button type="submit">Turn on</button></form>
    </div>
    <div id="recovery" hidden><p>Your recovery codes, shown only now. Keep them somewhere safe:</p><pre id="recovery-codes"></pre></div>
    <div id="twofactor-on" hidden>
      <button id="recovery-new" type="button">Make new recovery codes</button>
      <form id="totp-disable">
        <label>Password <input type="password" name="password" autocomplete="current-password" required></label>
        <label>Authenticator or recovery code <input type="text" name="code" autocomplete="one-time-code" required></label>
        <button type="submit">Turn two-factor authentication off</button>
      </form>
    </div>
  </section>

  <section id="keys">
    <h2>Security keys</h2>
    <p class="feedback" role="status" aria-live="polite"></p>
    <form id="key-add">
      <label>Name <input type="text" name="label" maxlength="120" placeholder="e.g. YubiKey"></label>
      <button type="submit">Add a security key</button>
    </form>
    <table><thead><tr><th>Name</th><th>Added</th><th>Last used</th><th></th></tr></thead><tbody id="keys-list"></tbody></table>
  </section>

  <section id="apps">
    <h2>App passwords for mail clients</h2>
    <p class="feedback" role="status" aria-live="polite"></p>
    <form id="asp-create">
      <label>Description <input type="text" name="description" maxlength="200"></label>
      <label><input type="checkbox" name="scope" value="imap" checked> IMAP</label>
      <label><input type="checkbox" name="scope" value="pop3"> POP3</label>
      <label><input type="checkbox" name="scope" value="smtp" checked> SMTP (sending)</label>
      <label>Only from (optional) <input type="text" name="networks" placeholder="203.0.113.0/24, 2001:db8::/32"></label>
      <label>Expires <select name="expiresIn"><option value="">never</option><option value="30d">in 30 days</option><option value="90d">in 90 days</option><option value="365d">in a year</option></select></label>
      <button type="submit">Create app password</button>
    </form>
    <div id="asp-new" hidden>
      <p>New app password, shown only now: <span class="secret" id="asp-password"></span></p>
      <p>In your mail app, choose a manual setup and enter:</p>
      <dl id="asp-settings"></dl>
    </div>
    <div id="apple" hidden>
      <h3>Apple Mail (iPhone, iPad, Mac)</h3>
      <p>A profile sets the account up with an app password of its own.</p>
      <button type="button" id="apple-download">Download the profile</button>
      <button type="button" id="apple-qr">Show a QR code for a phone</button>
      <p id="apple-link" hidden>Scan this with the phone's camera (it works once, for 10 minutes): <br><img id="apple-qr-img" alt="QR code that opens the setup link" width="200" height="200"><br><a id="apple-url"></a></p>
    </div>
    <table><thead><tr><th>Description</th><th>Scopes</th><th>Only from</th><th>Created</th><th>Expires</th><th>Last used</th><th></th></tr></thead><tbody id="asps"></tbody></table>
  </section>

  <section>
    <h2>Trusted devices</h2>
    <p class="feedback" role="status" aria-live="polite"></p>
    <table><thead><tr><th>Device</th><th>Trusted since</th><th>Until</th><th></th></tr></thead><tbody id="devices"></tbody></table>
  </section>

  <section>
    <h2>Encrypted mail storage (PGP)</h2>
    <p class="feedback" role="status" aria-live="polite"></p>
    <p>Key: <span id="pgp-status">none</span></p>
    <form id="pgp-set">
      <label>Public key <textarea name="publicKey" rows="6" cols="64" placeholder="-----BEGIN PGP PUBLIC KEY BLOCK-----"></textarea></label>
      <label><input type="checkbox" name="encrypt" checked> Store new mail encrypted to this key</label>
      <button type="submit">Save key</button> <button id="pgp-remove" type="button">Remove key</button>
    </form>
  </section>

  <section id="email">
    <h2>Email for security notices</h2>
    <p class="feedback" role="status" aria-live="polite"></p>
    <form id="email-set">
      <label>Email address <input type="email" name="email" autocomplete="email" placeholder="you@example.org"></label>
      <button type="submit">Save</button> <span class="notice">Leave it empty to get no notices.</span>
    </form>
  </section>

  <section id="delete">
    <h2>Delete my account</h2>
    <p class="feedback" role="status" aria-live="polite"></p>
    <p>This removes your sign-in, app passwords, keys and sessions here. Your mailbox on the mail server stays.</p>
    <form id="delete-account">
      <label>Password <input type="password" name="password" autocomplete="current-password" required></label>
      <label>Authenticator or recovery code (when two-factor is on) <input type="text" name="code" autocomplete="one-time-code"></label>
      <label><input type="checkbox" name="sure" required> I understand this cannot be undone</label>
      <button type="submit">Delete my account</button>
    </form>
  </section>

  <section id="history-section">
    <h2>Recent sign-ins and changes</h2>
    <p class="feedback" role="status" aria-live="polite"></p>
    <table><thead><tr><th>Time</th><th>What</th><th>Result</th><th>From</th></tr></thead><tbody id="history"></tbody></table>
  </section>
</main>
<script src="/webauthn.js"></script>
<script src="/app.js"></script>
</body>
</html>`;

export const PAGE_JS = `'use strict';
const api = (path, opts = {}) => {
  const token = sessionStorage.getItem('postern-token');
  return fetch('/api/v1' + path, {
    method: opts.method || 'GET',
    headers: Object.assign({}, opts.body ? { 'content-type': 'application/json' } : {}, token ? { authorization: 'Bearer ' + token } : {}),
    body: opts.body ? JSON.stringify(opts.body) : undefined,
  }).then(async (r) => {
    const data = r.status === 204 ? {} : await r.json().catch(() => ({}));
    if (!r.ok) throw Object.assign(new Error(data.message || r.statusText), { code: data.code, data });
    return data;
  });
};
const $ = (id) => document.getElementById(id);

// Every sentence the page shows, in one place (ready for translation): what each API error
// code means for the person reading it, what each form field expects, notices and history.
const TEXT = {
  errors: {
    invalid_credentials: 'That user name and password do not match.',
    locked: (e) => 'Too many failed attempts. Try again in ' + ((e.data && e.data.retryAfter) || 60) + ' seconds.',
    account_disabled: 'This account is disabled. Ask your administrator.',
    second_factor_required: 'A second factor is required: enter the code from your authenticator app or a recovery code, or use your security key.',
    second_factor_invalid: 'That code is not right, or was used already. Enter the code the app shows now.',
    two_factor_setup_required: 'Two-factor authentication is required for your account: set it up below first.',
    password_expired: 'Your password has expired: ask your administrator for a new one.',
    email_code_required: 'We sent you a code by email for this. Enter it and try again.',
    email_code_invalid: 'That emailed code is not right.',
    code_recently_sent: 'A code was sent a moment ago: use that one, or ask again in a few minutes.',
    step_up_required: 'For this, confirm your password (and second factor) again first.',
    password_change_required: 'You signed in with a temporary password: change it first.',
    unauthenticated: 'Your session has ended. Sign in again.',
    forbidden: 'Your account may not do this.',
    limit_reached: 'You have reached the limit for this. Remove one first.',
    conflict: 'That already exists, or does not fit what is there now.',
    not_found: 'That is gone already. Reload the page.',
    invalid_code: 'That code is not right.',
    invalid_security_key: 'The security key could not be verified. Try again.',
    totp_not_pending: 'Start the authenticator setup again.',
    no_email: 'Add an email address to your account first.',
    temporary_failure: 'The service is busy or partly down. Try again in a moment.',
    address_denied: 'This password is not allowed from where you are.',
    scope_denied: 'This password is not for this kind of access.',
    asp_required: 'Use an app password for mail apps, not your account password.',
  },
  fields: {
    scopes: 'Choose at least one of IMAP, POP3 or SMTP.',
    description: 'The description is too long.',
    networks: 'Give addresses or networks like 203.0.113.0/24, separated by commas.',
    code: 'The code is the 6 digits your authenticator app shows.',
    totp: 'The authenticator code is 6 digits.',
    emailCode: 'The emailed code is 6 digits.',
    publicKey: 'Paste an armored OpenPGP public key (it starts with -----BEGIN PGP PUBLIC KEY BLOCK-----).',
    label: 'The name is too long.',
  },
  fallback: 'Something went wrong. Try again, or reload the page.',
  notices: {
    two_factor_reset_by_admin: 'An administrator reset your two-factor authentication: set up an authenticator app or security key again.',
    two_factor_recommended: 'Two-factor authentication is recommended: set it up below.',
    mustSetUpTwoFactor: 'Two-factor authentication is required: set it up below.',
  },
  protocols: { imap: 'mail (IMAP)', pop3: 'mail (POP3)', smtp: 'sending mail (SMTP)', http: 'this page', lmtp: 'mail delivery', cli: 'the command line' },
  actions: {
    'asp.create': 'Created an app password', 'asp.delete': 'Revoked an app password', 'asp.link': 'Asked for a phone setup link',
    'password.change': 'Changed the password', 'password.reset': 'The password was reset', 'totp.setup': 'Started authenticator setup',
    'totp.enable': 'Turned on the authenticator app', 'totp.disable': 'Turned off the authenticator app', '2fa.reset': 'Two-factor authentication was reset',
    'recovery.regenerate': 'Made new recovery codes', 'recovery.use': 'Used a recovery code', 'pgp.update': 'Changed the PGP key',
    'security_key.add': 'Added a security key', 'security_key.delete': 'Removed a security key', 'device.create': 'Trusted a device',
    'device.delete': 'Removed a trusted device', 'session.signout': 'Signed out', 'user.update': 'Changed account details',
  },
};

/** A sentence for an API error: its code's, a field's for a validation error, or a plain fallback. */
const explain = (e) => {
  const t = TEXT.errors[e.code];
  if (t) return typeof t === 'function' ? t(e) : t;
  if (e.code === 'invalid_input') {
    // The request's validation names a field (body/scopes ...); the core's own messages are written for people.
    const field = /^(?:body|querystring|params)\\/(\\w+)/.exec(e.message || '');
    if (field) return TEXT.fields[field[1]] || 'Please check what you entered.';
    if (e.message) return e.message;
  }
  return TEXT.fallback;
};

/** Shows a line next to the form it is about (its section's feedback), as an error or a confirmation. */
const tell = (where, text, ok) => {
  const section = where && where.closest ? where.closest('section, #signin') : null;
  const el = (section && section.querySelector('.feedback')) || $('message');
  el.textContent = text || '';
  el.classList.toggle('error', Boolean(text) && !ok);
  el.classList.toggle('ok', Boolean(text) && Boolean(ok));
};
const failed = (where) => (e) => tell(where, explain(e));
const cell = (text) => { const td = document.createElement('td'); td.textContent = text == null ? '' : String(text); return td; };
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '-');
/** A table row of texts, with a button that deletes path when removal is given. */
const row = (texts, removal) => {
  const tr = document.createElement('tr');
  texts.forEach((t) => tr.appendChild(cell(t)));
  if (removal) {
    const td = document.createElement('td');
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = removal.label;
    b.onclick = () => api(removal.path, { method: 'DELETE' }).then(() => (tell(b, removal.done, true), refresh()), failed(b));
    td.appendChild(b);
    tr.appendChild(td);
  }
  return tr;
};
const showRecoveryCodes = (codes) => {
  $('recovery-codes').textContent = codes.join('\\n');
  $('recovery').hidden = false;
};

/** One history row as a sentence: "Signed in to mail (IMAP) with app password 'Thunderbird'". */
const describe = (e, aspName) => {
  if (e.action === 'auth') {
    const where = TEXT.protocols[e.protocol] || 'the service';
    const how = e.aspId ? " with app password '" + (aspName[e.aspId] || 'since revoked') + "'" : '';
    const reason = TEXT.errors[e.reason];
    const why = e.result === 'success' || !reason ? '' : ' (' + (typeof reason === 'function' ? 'too many attempts' : reason.replace(/\\.$/, '')) + ')';
    return (e.result === 'success' ? 'Signed in to ' : 'Sign-in refused to ') + where + how + why;
  }
  return (TEXT.actions[e.action] || e.action) + (e.actor && e.actor !== e.username ? ' by ' + e.actor : '');
};

async function refresh() {
  const me = await api('/me');
  clientSetup = clientSetup || (await fetch('/api/v1/client-setup').then((r) => (r.ok ? r.json() : null), () => null));
  $('apple').hidden = !clientSetup;
  $('signin').hidden = true;
  $('account').hidden = false;
  $('who').textContent = me.username;
  $('twofactor').textContent = me.twoFactor ? 'on' : 'off';
  $('twofactor-on').hidden = !me.twoFactor;
  if (document.activeElement === document.body || !document.activeElement) $('email-set').elements.email.value = me.email || '';
  // A temporary password opens nothing but its own change: say so, and show that form first.
  if (me.mustChangePassword) {
    $('notices').textContent = TEXT.errors.password_change_required + ' (Password, below.)';
    $('password').scrollIntoView();
  }
  $('pgp-status').textContent = me.pgp ? me.pgp.fingerprint + (me.pgp.encrypt ? ' (new mail stored encrypted)' : ' (mail stored in clear)') : 'none';
  const [devices, asps, keys, history] = await Promise.all([
    api('/me/devices').catch(() => []),
    api('/me/asps').catch(() => []),
    api('/me/security-keys').catch(() => []),
    api('/me/history?limit=20').catch(() => ({ events: [] })),
  ]);
  $('devices').replaceChildren(...devices.map((d) => row([d.label, when(d.createdAt), when(d.expiresAt)], { label: 'Remove', path: '/me/devices/' + d.id, done: 'Device removed: it will be asked for a second factor again.' })));
  $('asps').replaceChildren(...asps.map((a) => row(
    [a.description || '(no description)', a.scopes.join(', '), (a.networks || []).join(', ') || 'anywhere', when(a.createdAt), a.expiresAt ? when(a.expiresAt) : 'never', a.lastUse ? when(a.lastUse.time) + ' ' + (a.lastUse.protocol || '') : 'never'],
    { label: 'Revoke', path: '/me/asps/' + a.id, done: 'App password revoked.' },
  )));
  $('keys-list').replaceChildren(...keys.map((k) => row([k.label, when(k.createdAt), when(k.lastUsedAt)], { label: 'Remove', path: '/me/security-keys/' + k.id, done: 'Security key removed.' })));
  const aspName = Object.fromEntries(asps.map((a) => [a.id, a.description || 'no description']));
  $('history').replaceChildren(...history.events.map((e) => row([when(e.time), describe(e, aspName), e.result === 'success' ? 'done' : e.result === 'failure' ? 'refused' : 'failed (service trouble)', e.ip || ''])));
}

$('signin').onsubmit = async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const body = { username: f.get('username'), password: f.get('password') };
  for (const k of ['totp', 'recoveryCode', 'emailCode']) if (f.get(k)) body[k] = String(f.get(k)).trim();
  // A device trusted earlier proves itself with its token; a new one may ask to be trusted.
  const device = localStorage.getItem('postern-device');
  if (device) body.deviceToken = device;
  if (f.get('trust')) body.trustDevice = true;
  try {
    const r = await api('/session', { method: 'POST', body }).catch(async (e) => {
      // No code typed and the account has a security key: ask the key, then send its answer.
      const options = e.code === 'second_factor_required' && e.data.securityKeyOptions;
      if (!options) throw e;
      tell(ev.target, 'Touch your security key.', true);
      body.securityKey = await SimpleWebAuthnBrowser.startAuthentication({ optionsJSON: options });
      return api('/session', { method: 'POST', body });
    });
    sessionStorage.setItem('postern-token', r.token);
    if (r.deviceToken) localStorage.setItem('postern-device', r.deviceToken);
    tell(ev.target, '');
    $('notices').textContent = (r.notices || []).concat(r.mustSetUpTwoFactor ? ['mustSetUpTwoFactor'] : []).map((n) => TEXT.notices[n] || '').filter(Boolean).join(' ');
    await refresh();
  } catch (e) {
    tell(ev.target, explain(e));
  }
};

$('signout').onclick = async () => {
  await api('/session', { method: 'DELETE' }).catch(() => {});
  sessionStorage.removeItem('postern-token');
  location.reload();
};

$('totp-setup').onclick = async () => {
  try {
    const r = await api('/me/totp/setup', { method: 'POST' });
    $('totp-secret').textContent = r.secret;
    $('totp-qr').src = r.qrCode;
    $('totp-enrol').hidden = false;
    tell($('totp-setup'), '');
  } catch (e) { tell($('totp-setup'), explain(e)); }
};

$('totp-enable').onsubmit = async (ev) => {
  ev.preventDefault();
  try {
    const r = await api('/me/totp/enable', { method: 'POST', body: { code: String(new FormData(ev.target).get('code')).trim() } });
    $('totp-enrol').hidden = true;
    showRecoveryCodes(r.recoveryCodes);
    tell(ev.target, 'Two-factor authentication is on.', true);
    await refresh();
  } catch (e) { tell(ev.target, explain(e)); }
};

$('key-add').onsubmit = async (ev) => {
  ev.preventDefault();
  try {
    const options = await api('/me/security-keys/options', { method: 'POST' });
    tell(ev.target, 'Touch your security key.', true);
    const response = await SimpleWebAuthnBrowser.startRegistration({ optionsJSON: options });
    const r = await api('/me/security-keys', { method: 'POST', body: { response, label: String(new FormData(ev.target).get('label') || '') } });
    tell(ev.target, 'Security key added.', true);
    if (r.recoveryCodes) showRecoveryCodes(r.recoveryCodes);
    await refresh();
  } catch (e) { tell(ev.target, explain(e)); }
};

$('pgp-set').onsubmit = async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    await api('/me/pgp', { method: 'PUT', body: { publicKey: String(f.get('publicKey') || ''), encrypt: f.get('encrypt') === 'on' } });
    tell(ev.target, 'PGP key saved.', true);
    await refresh();
  } catch (e) { tell(ev.target, explain(e)); }
};

$('pgp-remove').onclick = () => api('/me/pgp', { method: 'DELETE' }).then(() => (tell($('pgp-remove'), 'PGP key removed.', true), refresh()), failed($('pgp-remove')));

let clientSetup = null;
const tlsName = (t) => (t === 'implicit' ? 'SSL/TLS' : 'STARTTLS');
const showSettings = async (username) => {
  clientSetup = clientSetup || (await fetch('/api/v1/client-setup').then((r) => (r.ok ? r.json() : null), () => null));
  const dl = $('asp-settings');
  dl.replaceChildren();
  if (!clientSetup) return;
  const add = (term, value) => {
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.textContent = value;
    dl.append(dt, dd);
  };
  add('Incoming mail (IMAP)', clientSetup.host + ', port ' + clientSetup.imap.port + ', ' + tlsName(clientSetup.imap.tls));
  add('Incoming mail (POP3)', clientSetup.host + ', port ' + clientSetup.pop3.port + ', ' + tlsName(clientSetup.pop3.tls));
  add('Outgoing mail (SMTP)', clientSetup.host + ', port ' + clientSetup.smtp.port + ', ' + tlsName(clientSetup.smtp.tls));
  add('User name', username);
  add('Password', 'the app password above');
};
$('apple-download').onclick = async () => {
  try {
    const token = sessionStorage.getItem('postern-token');
    const r = await fetch('/api/v1/me/mobileconfig', { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer ' + token }, body: '{}' });
    if (!r.ok) {
      const data = await r.json().catch(() => ({}));
      throw Object.assign(new Error(data.message || r.statusText), { code: data.code, data });
    }
    const a = document.createElement('a');
    a.href = URL.createObjectURL(await r.blob());
    a.download = (clientSetup ? clientSetup.host : 'mail') + '.mobileconfig';
    a.click();
    tell($('apple-download'), 'Profile downloaded: open it on the device to add the account.', true);
    await refresh();
  } catch (e) { tell($('apple-download'), explain(e)); }
};
$('apple-qr').onclick = async () => {
  try {
    const r = await api('/me/mobileconfig/link', { method: 'POST', body: {} });
    $('apple-qr-img').src = r.qr;
    $('apple-url').textContent = r.url;
    $('apple-url').href = r.url;
    $('apple-link').hidden = false;
    tell($('apple-qr'), '');
  } catch (e) { tell($('apple-qr'), explain(e)); }
};

/** The password, and the code typed beside it as a TOTP (6 digits) or a recovery code. */
const proof = (f) => {
  const code = String(f.get('code') || '').trim();
  const body = { password: String(f.get('password')) };
  if (code) body[/^[0-9]{6}$/.test(code) ? 'totp' : 'recoveryCode'] = code;
  return body;
};

/**
 * Runs a change; when the API asks to confirm it is you (step_up_required), shows the form for
 * that, and runs the change again once confirmed.
 */
let pendingStepUp = null;
const confirmed = async (where, change) => {
  try {
    return await change();
  } catch (e) {
    if (e.code !== 'step_up_required') throw e;
    $('stepup').hidden = false;
    tell($('stepup-form'), '');
    $('stepup').scrollIntoView();
    return new Promise((resolve, reject) => { pendingStepUp = { change, resolve, reject, where }; });
  }
};
$('stepup-form').onsubmit = async (ev) => {
  ev.preventDefault();
  const body = proof(new FormData(ev.target));
  try {
    await api('/session/confirm', { method: 'POST', body });
    ev.target.reset();
    $('stepup').hidden = true;
    const p = pendingStepUp;
    pendingStepUp = null;
    if (p) p.change().then(p.resolve, p.reject);
  } catch (e) { tell(ev.target, explain(e)); }
};
$('stepup-cancel').onclick = () => {
  $('stepup').hidden = true;
  const p = pendingStepUp;
  pendingStepUp = null;
  if (p) p.reject(Object.assign(new Error('canceled'), { code: 'canceled' }));
};
TEXT.errors.canceled = 'Not changed.';

$('password-change').onsubmit = async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  if (f.get('newPassword') !== f.get('again')) return tell(ev.target, 'The two new passwords are not the same.');
  try {
    await api('/me/password', { method: 'PUT', body: { currentPassword: String(f.get('currentPassword')), newPassword: String(f.get('newPassword')) } });
    ev.target.reset();
    tell(ev.target, 'Password changed. Your mail apps keep working with their app passwords.', true);
    await refresh();
  } catch (e) { tell(ev.target, explain(e)); }
};

$('email-set').onsubmit = async (ev) => {
  ev.preventDefault();
  const email = String(new FormData(ev.target).get('email') || '').trim();
  try {
    await confirmed(ev.target, () => api('/me/email', { method: 'PUT', body: { email: email || null } }));
    tell(ev.target, email ? 'Security notices will go to ' + email + '.' : 'No more security notices by email.', true);
    await refresh();
  } catch (e) { tell(ev.target, explain(e)); }
};

$('recovery-new').onclick = async () => {
  try {
    const r = await confirmed($('recovery-new'), () => api('/me/recovery-codes', { method: 'POST' }));
    showRecoveryCodes(r.recoveryCodes);
    tell($('recovery-new'), 'New recovery codes made: the old ones no longer work.', true);
  } catch (e) { tell($('recovery-new'), explain(e)); }
};

$('totp-disable').onsubmit = async (ev) => {
  ev.preventDefault();
  const body = proof(new FormData(ev.target));
  try {
    await api('/me/totp/disable', { method: 'POST', body });
    ev.target.reset();
    tell(ev.target, 'Two-factor authentication is off.', true);
    await refresh();
  } catch (e) { tell(ev.target, explain(e)); }
};

$('delete-account').onsubmit = async (ev) => {
  ev.preventDefault();
  const body = proof(new FormData(ev.target));
  try {
    await api('/me', { method: 'DELETE', body });
    sessionStorage.removeItem('postern-token');
    $('account').hidden = true;
    $('signin').hidden = false;
    tell($('signin'), 'Your account was deleted.', true);
  } catch (e) { tell(ev.target, explain(e)); }
};

$('signout-others').onclick = async () => {
  try {
    const r = await api('/sessions?others=true', { method: 'DELETE' });
    tell(null, r.signedOut === 1 ? 'One other session signed out.' : r.signedOut + ' other sessions signed out.', true);
  } catch (e) { tell(null, explain(e)); }
};

$('signout-all').onclick = async () => {
  await api('/sessions', { method: 'DELETE' }).catch(() => {});
  sessionStorage.removeItem('postern-token');
  location.reload();
};

$('asp-create').onsubmit = async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    const networks = String(f.get('networks') || '').split(',').map((x) => x.trim()).filter(Boolean);
    const expiresIn = String(f.get('expiresIn') || '');
    const body = { description: f.get('description') || '', scopes: f.getAll('scope'), ...(networks.length ? { networks } : {}), ...(expiresIn ? { expiresIn } : {}) };
    const r = await confirmed(ev.target, () => api('/me/asps', { method: 'POST', body }));
    $('asp-password').textContent = r.password;
    await showSettings((await api('/me')).username);
    $('asp-new').hidden = false;
    tell(ev.target, 'App password created.', true);
    await refresh();
  } catch (e) { tell(ev.target, explain(e)); }
};

if (sessionStorage.getItem('postern-token')) refresh().catch(() => sessionStorage.removeItem('postern-token'));
`;
