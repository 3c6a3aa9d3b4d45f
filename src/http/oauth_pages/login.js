// The passkey button of sessiond's sign-in page (/oauth2/authorize): the existing passkey login
// ceremony (/v1/auth/passkeys/login/start), finished at /oauth2/login/passkey, which answers
// where to go next. Same origin, no framework, no inline code (the page's CSP forbids it).
'use strict';

function b64urlToBytes(s) {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

function bytesToB64url(buf) {
  let bin = '';
  for (const b of new Uint8Array(buf)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function dropNulls(value) {
  if (Array.isArray(value)) return value.map(dropNulls);
  if (value && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) if (v !== null && v !== undefined) out[k] = dropNulls(v);
    return out;
  }
  return value;
}

async function postJson(path, body) {
  const response = await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    credentials: 'same-origin',
    body: JSON.stringify(body),
  });
  const json = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((json.error && json.error.message) || json.message || 'The passkey was not accepted.');
  return json;
}

async function passkeyLogin(button) {
  const form = button.closest('form');
  const message = document.getElementById('error-message');
  button.disabled = true;
  try {
    const start = await postJson('/v1/auth/passkeys/login/start', { conditional: false });
    const pk = dropNulls(start.options.publicKey);
    pk.challenge = b64urlToBytes(pk.challenge);
    for (const c of pk.allowCredentials || []) c.id = b64urlToBytes(c.id);
    const cred = await navigator.credentials.get({ publicKey: pk });
    const r = cred.response;
    const credential = {
      id: cred.id,
      rawId: bytesToB64url(cred.rawId),
      type: cred.type,
      extensions: {},
      response: {
        authenticatorData: bytesToB64url(r.authenticatorData),
        clientDataJSON: bytesToB64url(r.clientDataJSON),
        signature: bytesToB64url(r.signature),
        userHandle: r.userHandle ? bytesToB64url(r.userHandle) : undefined,
      },
    };
    const answer = await postJson('/oauth2/login/passkey', {
      request: form.elements.request.value,
      csrf: form.elements.csrf.value,
      ceremony_id: start.ceremony_id,
      credential,
    });
    window.location.assign(answer.redirect);
  } catch (e) {
    if (message) {
      message.textContent = e.message || 'The passkey was not accepted.';
      message.hidden = false;
    }
    button.disabled = false;
  }
}

const button = document.getElementById('passkey-login');
if (button) {
  if (!window.PublicKeyCredential) button.hidden = true;
  button.addEventListener('click', () => passkeyLogin(button));
}
