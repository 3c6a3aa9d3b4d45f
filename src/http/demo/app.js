// sessiond demo page: plain JavaScript, no framework, no build step, served with a strict
// Content-Security-Policy (no inline code).
//
// How it holds a session, as a browser application should:
// - the refresh token lives only in sessiond's HttpOnly cookie (Path=/v1/auth/browser); this
//   script never sees it;
// - the access token lives only in this tab's memory (never in Web Storage or IndexedDB);
// - refreshes are serialised across tabs with the Web Locks API, and the new access token is
//   shared with the other tabs over a BroadcastChannel: a tab that waited for the lock while
//   another tab refreshed uses that tab's token instead of refreshing again (see refresh()).
'use strict';

const CSRF = { 'x-sessiond-csrf': '1' };
const LOCK = 'sessiond-refresh';
const channel = 'BroadcastChannel' in self ? new BroadcastChannel('sessiond-demo') : null;

/** Memory-only state of this tab. */
const state = {
  access: null, // { token, claims, expiresAt }
  user: null,
  session: null,
  pendingMfa: null, // { challengeId, methods, email }
  pendingVerify: null, // { verificationId, email, password, name }
  passkeysEnabled: true,
  conditional: null, // AbortController of a pending conditional-UI request
  refreshTimer: null,
};

/** Counters the browser tests read (window.sessiondDemo.stats). */
const stats = { refreshed: 0, shared: 0, refreshFailures: 0 };

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- small helpers

function b64urlToBytes(s) {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

function bytesToB64url(buf) {
  const bytes = new Uint8Array(buf);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function claimsOf(token) {
  try {
    const payload = token.split('.')[1];
    return JSON.parse(new TextDecoder().decode(b64urlToBytes(payload)));
  } catch {
    return {};
  }
}

function when(iso) {
  if (!iso) return 'never';
  const d = new Date(iso);
  return d.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

function notice(text, kind = 'info') {
  const n = $('notice');
  n.textContent = text;
  n.className = `notice ${kind}`;
  n.hidden = !text;
}

function logRequest(method, path, status) {
  const log = $('log');
  const line = el('li', { className: status >= 400 || status === 0 ? 'bad' : '' },
    `${new Date().toLocaleTimeString()}  ${method} ${path} → ${status || 'network error'}`);
  log.prepend(line);
  while (log.children.length > 40) log.lastChild.remove();
}

/** An API error with the documented body `{error: {code, message, details}}`. */
class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || 'http_' + status;
    this.details = e.details || {};
  }
}

/**
 * One API call. `auth` adds the in-memory access token (and refreshes once on
 * `invalid_token`); every call carries the CSRF header, which browser routes require.
 */
async function api(method, path, { body, auth = false, retried = false } = {}) {
  const headers = { ...CSRF };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (auth && state.access) headers.authorization = `Bearer ${state.access.token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    logRequest(method, path, 0);
    throw new ApiError(0, { error: { code: 'network', message: 'sessiond cannot be reached' } });
  }
  logRequest(method, path, response.status);
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (response.ok) return data;
  const error = new ApiError(response.status, data);
  if (auth && !retried && error.code === 'invalid_token') {
    // The access token expired (or this tab slept): refresh once, then retry.
    await refresh();
    return api(method, path, { body, auth, retried: true });
  }
  throw error;
}

// ---------------------------------------------------------------- tokens and many tabs

/** Takes a token answer (login, MFA, passkey, refresh, step-up or another tab's broadcast). */
function adopt(answer) {
  const claims = claimsOf(answer.access_token);
  state.access = {
    token: answer.access_token,
    claims,
    expiresAt: Date.now() + (answer.expires_in || 60) * 1000,
  };
  if (answer.user) state.user = answer.user;
  if (answer.session) state.session = answer.session;
  scheduleRefresh();
  render();
}

function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  if (!state.access) return;
  // Refresh at about 80% of the lifetime, spread a little so tabs do not all wake together.
  const left = state.access.expiresAt - Date.now();
  const delay = Math.max(5000, left * 0.8 - Math.random() * 5000);
  state.refreshTimer = setTimeout(() => refresh().catch(() => {}), delay);
}

function broadcast(message) {
  if (channel) channel.postMessage(message);
}

if (channel) {
  channel.onmessage = (event) => {
    const m = event.data || {};
    if (m.type === 'tokens' && m.answer) {
      // Another tab refreshed (or logged in): same session, newer access token.
      if (!state.access || state.access.token !== m.answer.access_token) {
        const first = !state.access;
        adopt(m.answer);
        if (first) showSignedIn();
      }
    } else if (m.type === 'signed-out') {
      signedOut('Signed out in another tab.');
    }
  };
}

/**
 * Refreshes the access token through the cookie, one tab at a time.
 *
 * Every tab shares the one refresh-token cookie, and each refresh rotates it. Without
 * coordination two tabs refreshing at once would send the same cookie twice, and the second
 * would count as a replay. Inside the `sessiond-refresh` lock the cookie jar always holds the
 * newest cookie (the browser stores Set-Cookie before the previous holder's fetch resolves),
 * and a tab that sees a token newer than the one it had when it asked for the lock uses it
 * instead of rotating again.
 */
async function refresh() {
  const seen = state.access && state.access.token;
  const run = async () => {
    if (state.access && state.access.token !== seen && state.access.expiresAt - Date.now() > 30000) {
      stats.shared += 1;
      return { shared: true, status: 200 };
    }
    try {
      const answer = await api('POST', '/v1/auth/browser/refresh');
      stats.refreshed += 1;
      adopt(answer);
      broadcast({ type: 'tokens', answer });
      return { shared: false, status: 200 };
    } catch (e) {
      const had = !!state.access;
      // A start-up without a cookie is no failure: there was no session to refresh.
      if (had) stats.refreshFailures += 1;
      if (e.status === 401 || e.status === 403) signedOut(had ? `Your session ended (${e.code}).` : '');
      throw e;
    }
  };
  if (navigator.locks) return navigator.locks.request(LOCK, run);
  return run();
}

// ---------------------------------------------------------------- WebAuthn

function dropNulls(value) {
  if (Array.isArray(value)) return value.map(dropNulls);
  if (value && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) if (v !== null && v !== undefined) out[k] = dropNulls(v);
    return out;
  }
  return value;
}

/** webauthn-rs's `{publicKey: {...}}` options (bytes as base64url) → what the browser takes. */
function publicKeyOptions(options, kind) {
  const pk = dropNulls(options.publicKey);
  pk.challenge = b64urlToBytes(pk.challenge);
  if (kind === 'create') {
    pk.user.id = b64urlToBytes(pk.user.id);
    for (const c of pk.excludeCredentials || []) c.id = b64urlToBytes(c.id);
  } else {
    for (const c of pk.allowCredentials || []) c.id = b64urlToBytes(c.id);
  }
  return pk;
}

/** A credential → the JSON webauthn-rs reads (base64url bytes). */
function credentialJson(cred) {
  const r = cred.response;
  const ext = cred.getClientExtensionResults ? cred.getClientExtensionResults() : {};
  const extensions = {};
  if (ext.credProps) extensions.credProps = ext.credProps;
  if (typeof ext.appid === 'boolean') extensions.appid = ext.appid;
  const base = { id: cred.id, rawId: bytesToB64url(cred.rawId), type: cred.type, extensions };
  if (r.attestationObject) {
    return {
      ...base,
      response: {
        attestationObject: bytesToB64url(r.attestationObject),
        clientDataJSON: bytesToB64url(r.clientDataJSON),
        transports: r.getTransports ? r.getTransports() : undefined,
      },
    };
  }
  return {
    ...base,
    response: {
      authenticatorData: bytesToB64url(r.authenticatorData),
      clientDataJSON: bytesToB64url(r.clientDataJSON),
      signature: bytesToB64url(r.signature),
      userHandle: r.userHandle ? bytesToB64url(r.userHandle) : undefined,
    },
  };
}

async function createCredential(options) {
  stopConditional();
  const cred = await navigator.credentials.create({ publicKey: publicKeyOptions(options, 'create') });
  return credentialJson(cred);
}

async function getCredential(options, extra = {}) {
  if (!extra.mediation) stopConditional();
  const cred = await navigator.credentials.get({ publicKey: publicKeyOptions(options, 'get'), ...extra });
  return credentialJson(cred);
}

function stopConditional() {
  if (state.conditional) {
    state.conditional.abort();
    state.conditional = null;
  }
}

/** Conditional UI: passkeys offered in the email field's autofill, started once on load. */
async function startConditional() {
  if (!window.PublicKeyCredential || !PublicKeyCredential.isConditionalMediationAvailable) return;
  if (!(await PublicKeyCredential.isConditionalMediationAvailable())) return;
  let start;
  try {
    start = await api('POST', '/v1/auth/passkeys/login/start', { body: { conditional: true } });
  } catch (e) {
    if (e.code === 'passkeys_disabled') passkeysOff();
    return;
  }
  const abort = new AbortController();
  state.conditional = abort;
  let credential;
  try {
    credential = await getCredential(start.options, { mediation: 'conditional', signal: abort.signal });
  } catch {
    return; // aborted (another sign-in began) or dismissed
  } finally {
    if (state.conditional === abort) state.conditional = null;
  }
  await busy($('passkey-login'), async () => {
    const answer = await api('POST', '/v1/auth/passkeys/login/finish', {
      body: { ceremony_id: start.ceremony_id, credential, device_name: deviceName(), transport: 'cookie' },
    });
    signedIn(answer, 'Signed in with a passkey.');
  });
}

function passkeysOff() {
  state.passkeysEnabled = false;
  for (const id of ['passkey-login', 'step-up', 'passkeys-card', 'reauth-passkey', 'mfa-passkey']) $(id).hidden = true;
  document.querySelector('.or').hidden = true;
  document.querySelector('.hint').hidden = true;
}

// ---------------------------------------------------------------- screens

function deviceName() {
  const ua = navigator.userAgent;
  const browser = /Edg\//.test(ua) ? 'Edge' : /Chrom/.test(ua) ? 'Chromium' : /Firefox/.test(ua) ? 'Firefox' : /Safari/.test(ua) ? 'Safari' : 'Browser';
  return `${browser} (demo)`;
}

function showPanel(name) {
  for (const form of document.querySelectorAll('[data-panel]')) form.hidden = form.dataset.panel !== name;
  for (const tab of document.querySelectorAll('.tab')) tab.setAttribute('aria-selected', String(tab.dataset.tab === name));
  document.querySelector('.tabs').hidden = !(name === 'login' || name === 'register');
}

function showSignedIn() {
  $('loading').hidden = true;
  $('signed-out').hidden = true;
  $('signed-in').hidden = false;
  $('who').hidden = false;
  loadAccount();
}

function signedIn(answer, message) {
  stopConditional();
  state.pendingMfa = null;
  adopt(answer);
  broadcast({ type: 'tokens', answer });
  showSignedIn();
  notice(message, 'ok');
}

function signedOut(message) {
  clearTimeout(state.refreshTimer);
  state.access = null;
  state.user = null;
  state.session = null;
  $('loading').hidden = true;
  $('signed-in').hidden = true;
  $('who').hidden = true;
  $('signed-out').hidden = false;
  $('recovery').hidden = true;
  $('recovery-codes').replaceChildren();
  showPanel('login');
  notice(message || '', 'info');
}

function render() {
  const a = state.access;
  if (!a) return;
  const aal = a.claims.aal || 1;
  const amr = a.claims.amr || [];
  const email = (state.user && state.user.email) || a.claims.email || a.claims.sub || '';
  $('who-email').textContent = email;
  $('who-aal').textContent = `aal ${aal}`;
  $('who-aal').className = `pill${aal >= 2 ? ' aal2' : ''}`;
  $('me-user').textContent = state.user ? `${state.user.name ? state.user.name + ' · ' : ''}${state.user.email}` : email;
  $('me-aal').textContent = String(aal);
  $('me-aal').className = `pill${aal >= 2 ? ' aal2' : ''}`;
  $('me-amr').textContent = amr.join(', ') || '—';
  $('me-session').textContent = (state.session && state.session.id) || a.claims.sid || '';
  $('me-token').textContent = `in memory, expires ${new Date(a.expiresAt).toLocaleTimeString()}`;
}

async function loadAccount() {
  await Promise.allSettled([loadSessions(), loadPasskeys(), loadTotp()]);
}

async function loadSessions() {
  const list = $('sessions');
  let data;
  try {
    data = await api('GET', '/v1/auth/sessions?limit=50', { auth: true });
  } catch (e) {
    list.replaceChildren(el('li', { className: 'empty' }, e.message));
    return;
  }
  const current = state.session && state.session.id;
  list.replaceChildren(...data.sessions.map((s) => {
    const mine = s.current || s.id === current;
    const what = el('div', { className: 'what' },
      el('strong', {}, s.device_name || 'Unnamed device', mine ? el('span', { className: 'tag' }, 'this session') : null),
      el('small', {}, `${s.ip || 'unknown IP'} · since ${when(s.created_at)} · last seen ${when(s.last_seen_at)}`));
    const buttons = el('div', { className: 'buttons' });
    if (!mine) {
      buttons.append(el('button', {
        type: 'button', className: 'danger', textContent: 'Revoke',
        onclick: () => act(async () => {
          await api('DELETE', `/v1/auth/sessions/${s.id}`, { auth: true });
          notice('Session revoked.', 'ok');
          await loadSessions();
        }),
      }));
    }
    return el('li', { className: mine ? 'current' : '', dataset: { sessionId: s.id } }, what, buttons);
  }));
}

async function loadPasskeys() {
  if (!state.passkeysEnabled) return;
  const list = $('passkeys');
  let data;
  try {
    data = await api('GET', '/v1/auth/passkeys', { auth: true });
  } catch (e) {
    if (e.code === 'passkeys_disabled' || e.status === 404) passkeysOff();
    else list.replaceChildren(el('li', { className: 'empty' }, e.message));
    return;
  }
  if (!data.passkeys.length) {
    list.replaceChildren(el('li', { className: 'empty' }, 'No passkeys yet.'));
    return;
  }
  list.replaceChildren(...data.passkeys.map((p) => el('li', { dataset: { passkeyId: p.id } },
    el('div', { className: 'what' },
      el('strong', {}, p.name),
      el('small', {}, `added ${when(p.created_at)} · last used ${when(p.last_used_at)}${p.backup_eligible ? ' · synced' : ' · device-bound'}`)),
    el('div', { className: 'buttons' },
      el('button', {
        type: 'button', className: 'secondary', textContent: 'Rename',
        onclick: () => act(async () => {
          const name = window.prompt('New name for this passkey', p.name);
          if (!name || name === p.name) return;
          await api('PATCH', `/v1/auth/passkeys/${p.id}`, { body: { name }, auth: true });
          notice('Passkey renamed.', 'ok');
          await loadPasskeys();
        }),
      }),
      el('button', {
        type: 'button', className: 'danger', textContent: 'Delete',
        onclick: () => act(() => deletePasskey(p)),
      })))));
}

async function deletePasskey(p) {
  const remove = (confirm) => sensitive(() => api('DELETE', `/v1/auth/passkeys/${p.id}${confirm ? '?confirm=true' : ''}`, { auth: true }));
  try {
    await remove(false);
  } catch (e) {
    if (e.code !== 'last_second_factor') throw e;
    if (!window.confirm(`"${p.name}" is your last second factor. Delete it anyway?`)) return;
    await remove(true);
  }
  notice('Passkey deleted.', 'ok');
  await loadPasskeys();
}

async function loadTotp() {
  try {
    const s = await api('GET', '/v1/auth/mfa', { auth: true });
    $('totp-status').textContent = s.totp_enabled
      ? `On since ${when(s.enabled_at)} · ${s.recovery_codes_remaining} recovery codes left`
      : 'Off. Add an authenticator app as a second factor.';
    $('totp-start').hidden = s.totp_enabled;
    if (s.totp_enabled) $('totp-enrol').hidden = true;
  } catch (e) {
    $('totp-status').textContent = e.message;
  }
}

function showRecoveryCodes(codes) {
  if (!codes || !codes.length) return;
  const list = $('recovery-codes');
  list.replaceChildren(...codes.map((c) => el('li', {}, c)));
  $('recovery').hidden = false;
  notice('Save these recovery codes now: they are shown only once.', 'ok');
}

// ---------------------------------------------------------------- actions

/** Disables `button` while `work` runs; errors become the notice. */
async function busy(button, work) {
  if (button) button.disabled = true;
  try {
    return await work();
  } catch (e) {
    if (e && e.name === 'NotAllowedError') notice('The passkey prompt was dismissed or timed out.', 'error');
    else notice(e.message || String(e), 'error');
  } finally {
    if (button) button.disabled = false;
  }
}

function act(work) {
  return busy(null, work);
}

/**
 * Runs a sensitive action; when sessiond answers `insufficient_user_authentication`, asks the
 * user to prove it is them (password, or a passkey step-up when level 2 is required), then
 * tries once more.
 */
async function sensitive(work) {
  try {
    return await work();
  } catch (e) {
    if (e.code !== 'insufficient_user_authentication') throw e;
    const ok = await reauthenticate(e.details);
    if (!ok) throw new Error('Cancelled.');
    return work();
  }
}

function reauthenticate(details) {
  const needsAal2 = details && details.acr_values === 'aal2';
  const dialog = $('reauth');
  $('reauth-why').textContent = needsAal2
    ? 'This action needs a passkey (assurance level 2).'
    : 'This action needs a recent sign-in. Confirm with your password or a passkey.';
  $('reauth-password-label').hidden = needsAal2;
  $('reauth-submit').hidden = needsAal2;
  $('reauth-passkey').hidden = !state.passkeysEnabled;
  $('reauth-password').value = '';
  return new Promise((resolve) => {
    const done = (ok) => {
      dialog.close();
      $('reauth-form').onsubmit = null;
      $('reauth-passkey').onclick = null;
      $('reauth-cancel').onclick = null;
      resolve(ok);
    };
    $('reauth-form').onsubmit = (ev) => {
      ev.preventDefault();
      busy($('reauth-submit'), async () => {
        const a = await api('POST', '/v1/auth/sessions/current/reauth', { body: { password: $('reauth-password').value }, auth: true });
        done(true);
        return a;
      });
    };
    $('reauth-passkey').onclick = () => busy($('reauth-passkey'), async () => {
      await stepUp();
      done(true);
    });
    $('reauth-cancel').onclick = () => done(false);
    dialog.showModal();
  });
}

async function stepUp() {
  const start = await api('POST', '/v1/auth/passkeys/step-up/start', { body: {}, auth: true });
  const credential = await getCredential(start.options);
  const answer = await api('POST', '/v1/auth/passkeys/step-up/finish', {
    body: { ceremony_id: start.ceremony_id, credential },
    auth: true,
  });
  adopt(answer);
  broadcast({ type: 'tokens', answer });
  notice(`Stepped up: assurance level ${answer.aal}.`, 'ok');
}

async function passwordLogin(email, password) {
  try {
    const answer = await api('POST', '/v1/auth/browser/sessions', {
      body: { email, password, device_name: deviceName() },
    });
    signedIn(answer, 'Signed in.');
  } catch (e) {
    if (e.code !== 'mfa_required') throw e;
    const methods = e.details.methods || [];
    state.pendingMfa = { challengeId: e.details.challenge_id, methods, email };
    $('mfa-passkey').hidden = !methods.includes('passkey') || !state.passkeysEnabled;
    $('mfa-totp').hidden = !(methods.includes('totp') || methods.includes('recovery_code'));
    $('mfa-code').required = !$('mfa-totp').hidden;
    $('mfa-code').value = '';
    showPanel('mfa');
    notice('Password accepted. A second factor is needed.', 'info');
  }
}

async function showDevCode(email) {
  try {
    const mail = await api('GET', `/demo/dev/last-code?email=${encodeURIComponent(email)}`);
    if (mail && mail.code) {
      $('dev-code-value').textContent = mail.code;
      $('dev-code').hidden = false;
    }
  } catch {
    // Not in development mail mode, or not on loopback: the code is only in the mailbox.
  }
}

function wire() {
  for (const tab of document.querySelectorAll('.tab')) {
    tab.onclick = () => { showPanel(tab.dataset.tab); notice(''); };
  }

  $('login-form').onsubmit = (ev) => {
    ev.preventDefault();
    stopConditional();
    busy($('login-submit'), () => passwordLogin($('login-email').value, $('login-password').value));
  };

  $('passkey-login').onclick = () => busy($('passkey-login'), async () => {
    const start = await api('POST', '/v1/auth/passkeys/login/start', { body: { conditional: false } });
    const credential = await getCredential(start.options);
    const answer = await api('POST', '/v1/auth/passkeys/login/finish', {
      body: { ceremony_id: start.ceremony_id, credential, device_name: deviceName(), transport: 'cookie' },
    });
    signedIn(answer, 'Signed in with a passkey.');
  });

  $('register-form').onsubmit = (ev) => {
    ev.preventDefault();
    busy($('register-submit'), async () => {
      const email = $('register-email').value;
      const password = $('register-password').value;
      const name = $('register-name').value.trim();
      const body = { email, password };
      if (name) body.name = name;
      const answer = await api('POST', '/v1/auth/register', { body });
      state.pendingVerify = { verificationId: answer.verification_id, email: answer.user.email, password };
      $('verify-email').textContent = answer.user.email;
      $('verify-code').value = '';
      $('dev-code').hidden = true;
      showPanel('verify');
      notice('Account created. Check your mail for the code.', 'ok');
      await showDevCode(answer.user.email);
    });
  };

  $('recovery-done').onclick = () => { $('recovery').hidden = true; $('recovery-codes').replaceChildren(); };

  $('dev-code-use').onclick = () => { $('verify-code').value = $('dev-code-value').textContent; };

  $('verify-form').onsubmit = (ev) => {
    ev.preventDefault();
    busy($('verify-submit'), async () => {
      const p = state.pendingVerify;
      await api('POST', '/v1/auth/email/verify', { body: { verification_id: p.verificationId, code: $('verify-code').value.trim() } });
      state.pendingVerify = null;
      await passwordLogin(p.email, p.password);
    });
  };

  $('mfa-form').onsubmit = (ev) => {
    ev.preventDefault();
    busy($('mfa-submit'), async () => {
      const answer = await api('POST', '/v1/auth/browser/mfa', {
        body: { challenge_id: state.pendingMfa.challengeId, code: $('mfa-code').value.trim() },
      });
      signedIn(answer, 'Signed in with two factors.');
    });
  };

  $('mfa-passkey').onclick = () => busy($('mfa-passkey'), async () => {
    const challengeId = state.pendingMfa.challengeId;
    const start = await api('POST', '/v1/auth/passkeys/mfa/start', { body: { challenge_id: challengeId } });
    const credential = await getCredential(start.options);
    const answer = await api('POST', '/v1/auth/passkeys/mfa/finish', {
      body: { challenge_id: challengeId, ceremony_id: start.ceremony_id, credential, transport: 'cookie' },
    });
    signedIn(answer, 'Signed in with password and passkey.');
  });

  $('mfa-cancel').onclick = () => { state.pendingMfa = null; showPanel('login'); notice(''); };

  $('refresh').onclick = () => busy($('refresh'), async () => {
    const r = await refresh();
    notice(r.shared ? 'Another tab had just refreshed: using its token.' : 'Access token refreshed.', 'ok');
    await loadSessions();
  });

  $('step-up').onclick = () => busy($('step-up'), stepUp);

  $('logout').onclick = () => busy($('logout'), async () => {
    try {
      await api('POST', '/v1/auth/browser/logout');
    } finally {
      broadcast({ type: 'signed-out' });
      signedOut('Signed out.');
    }
  });

  $('passkey-add').onsubmit = (ev) => {
    ev.preventDefault();
    busy($('passkey-add-submit'), async () => {
      const name = $('passkey-name').value.trim();
      const start = await sensitive(() => api('POST', '/v1/auth/passkeys/register/start', { body: { name }, auth: true }));
      const credential = await createCredential(start.options);
      const answer = await api('POST', '/v1/auth/passkeys/register/finish', {
        body: { ceremony_id: start.ceremony_id, credential },
        auth: true,
      });
      $('passkey-name').value = '';
      notice(`Passkey "${answer.passkey.name}" added.`, 'ok');
      showRecoveryCodes(answer.recovery_codes);
      await loadPasskeys();
    });
  };

  $('totp-start').onclick = () => busy($('totp-start'), async () => {
    const e = await sensitive(() => api('POST', '/v1/auth/mfa/totp', { auth: true }));
    // The QR code is an image (data: URL), never markup inserted into the page.
    $('totp-qr').src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(e.qr_svg)}`;
    $('totp-secret').textContent = e.secret;
    $('totp-enrol').hidden = false;
    $('totp-start').hidden = true;
  });

  $('totp-enrol').onsubmit = (ev) => {
    ev.preventDefault();
    busy($('totp-confirm'), async () => {
      const answer = await sensitive(() => api('POST', '/v1/auth/mfa/totp/confirm', { body: { code: $('totp-code').value.trim() }, auth: true }));
      $('totp-code').value = '';
      $('totp-enrol').hidden = true;
      showRecoveryCodes(answer.recovery_codes);
      await loadTotp();
    });
  };

  $('revoke-others').onclick = () => busy($('revoke-others'), async () => {
    await sensitive(() => api('DELETE', '/v1/auth/sessions', { auth: true }));
    notice('Every other session was logged out.', 'ok');
    await loadSessions();
  });
}

async function boot() {
  wire();
  showPanel('login');
  // WebAuthn refuses IP addresses as relying-party ids: say where the page works fully.
  const onIp = /^[\d.]+$|^\[/.test(location.hostname);
  const ipWarning = () => {
    if (!onIp) return;
    const url = `${location.protocol}//localhost${location.port ? ':' + location.port : ''}${location.pathname}`;
    notice(`Passkeys need a domain: open ${url} instead of an IP address.`, 'error');
  };
  try {
    // A reload (or a new tab) has no access token: the cookie gets one, if there is a session.
    await refresh();
    showSignedIn();
    ipWarning();
  } catch {
    if (!state.access) {
      signedOut('');
      ipWarning();
      startConditional();
    }
  }
}

/** What the browser tests drive and read; nothing here reveals more than the page shows. */
window.sessiondDemo = {
  refresh,
  stats,
  signedIn: () => !!state.access,
  sessionId: () => (state.session && state.session.id) || null,
  /** `GET /v1/auth/me` with this tab's access token: `{status, session}`. */
  async whoami() {
    try {
      const me = await api('GET', '/v1/auth/me', { auth: true });
      return { status: 200, session: me.session.id };
    } catch (e) {
      return { status: e.status, code: e.code };
    }
  },
};

boot();
