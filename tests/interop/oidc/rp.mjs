// openid-client (an OpenID-certified relying party, pinned in package.json) signing in to a live
// sessiond over HTTP, without a browser: discovery, the authorization code flow with PKCE, state
// and nonce (the login and consent pages are fetched and their forms posted by hand, with a
// cookie jar), the token exchange, openid-client's own ID token validation, userinfo, refresh,
// introspection and revocation, for a public client (`none`) and a confidential one
// (`client_secret_basic` and `client_secret_post`), then every negative path of issue #12.
//
// Usage: node rp.mjs <config.json>. The config names the issuer (http://127.0.0.1:PORT), a
// second issuer whose codes expire after a second, and the test user's email and password.
// The script registers the user, the applications and their redirect URIs itself over
// sessiond's first-party API. It prints one JSON line per case:
//   {"case": "<name>", "ok": true|false, "detail": "..."}
// and exits 0 when every case passed (tests/interop/oidc.rs asserts each case by name).

import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import * as oidc from 'openid-client';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const SCOPE = 'openid profile email offline_access';

// ------------------------------------------------------------------------------------------
// Reporting

let failures = 0;

function report(name, ok, detail = '') {
  if (!ok) failures += 1;
  // Details are for people: an error can quote a whole token response, which helps nobody.
  const text = String(detail);
  const short = text.length > 500 ? `${text.slice(0, 500)}…` : text;
  process.stdout.write(`${JSON.stringify({ case: name, ok, detail: short })}\n`);
}

class Failed extends Error {}

function check(condition, message) {
  if (!condition) throw new Failed(message);
}

/** Runs one case; a thrown error fails it (with its message), never the whole script. */
async function runCase(name, body) {
  try {
    const detail = await body();
    report(name, true, detail ?? '');
  } catch (e) {
    report(name, false, describe(e));
  }
}

function describe(e) {
  if (e instanceof Failed) return e.message;
  const parts = [e?.constructor?.name, e?.code, e?.error, e?.error_description, e?.message];
  const cause = e?.cause instanceof Error
    ? `${e.cause.message} ${JSON.stringify(e.cause.cause ?? '')}`
    : JSON.stringify(e?.cause ?? '');
  return `${parts.filter(Boolean).join(': ')} (cause: ${cause})`;
}

/** Runs `body`, which must throw; returns the error. */
async function mustThrow(body, what) {
  try {
    await body();
  } catch (e) {
    return e;
  }
  throw new Failed(`${what}: expected an error, got success`);
}

/** The OAuth error code of an openid-client error: a token-endpoint error body
 * (ResponseBodyError), an error redirect (AuthorizationResponseError), or a 401 with a
 * WWW-Authenticate challenge (RFC 6749 §5.2 for `invalid_client` after HTTP Basic), where
 * openid-client stops at the challenge: then the error is the challenge's `error` parameter
 * or, without one, the RFC 6749 body's. */
async function oauthError(e) {
  if (e instanceof oidc.ResponseBodyError || e instanceof oidc.AuthorizationResponseError) {
    return e.error;
  }
  if (e instanceof oidc.WWWAuthenticateChallengeError) {
    const fromChallenge = e.cause?.find((c) => c.parameters?.error)?.parameters.error;
    if (fromChallenge) return fromChallenge;
    const body = await e.response.json().catch(() => ({}));
    return body.error ?? `a ${e.status} challenge without an error`;
  }
  return `not an OAuth error: ${describe(e)}`;
}

async function expectOAuthError(body, expected, what) {
  const e = await mustThrow(body, what);
  const got = await oauthError(e);
  check(got === expected, `${what}: expected ${expected}, got ${got}`);
  return `${expected}`;
}

// ------------------------------------------------------------------------------------------
// HTTP with a hand-kept cookie jar (a browser's part, played by hand)

class Browser {
  constructor(issuer) {
    this.origin = new URL(issuer).origin;
    this.cookies = new Map();
  }

  async fetch(url, init = {}) {
    const headers = new Headers(init.headers ?? {});
    const target = new URL(url, this.origin);
    if (target.origin === this.origin && this.cookies.size) {
      headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    }
    const response = await fetch(target, { ...init, headers, redirect: 'manual' });
    if (target.origin === this.origin) {
      for (const line of response.headers.getSetCookie()) {
        const [pair, ...attributes] = line.split(';');
        const eq = pair.indexOf('=');
        const name = pair.slice(0, eq).trim();
        const value = pair.slice(eq + 1).trim();
        const expired = attributes.some((a) => /^\s*max-age\s*=\s*0\s*$/i.test(a));
        if (expired || value === '') this.cookies.delete(name);
        else this.cookies.set(name, value);
      }
    }
    return response;
  }

  /** Posts a form as the page's own origin would (the Origin header a browser sends). */
  async post(path, fields) {
    return this.fetch(path, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: this.origin },
      body: new URLSearchParams(fields).toString(),
    });
  }
}

function decodeEntities(s) {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&#x27;|&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&#x2F;|&#47;/g, '/')
    .replace(/&amp;/g, '&');
}

/** The forms of an HTML page: [{action, fields: {name: value} of its hidden inputs}]. */
function forms(html) {
  const found = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attr = (tag, name) => {
      const a = tag.match(new RegExp(`\\b${name}\\s*=\\s*("([^"]*)"|'([^']*)')`, 'i'));
      return a ? decodeEntities(a[2] ?? a[3]) : undefined;
    };
    const fields = {};
    for (const input of m[2].matchAll(/<input\b[^>]*>/gi)) {
      if ((attr(input[0], 'type') ?? '').toLowerCase() === 'hidden') {
        fields[attr(input[0], 'name')] = attr(input[0], 'value') ?? '';
      }
    }
    found.push({ action: attr(m[1], 'action'), fields });
  }
  return found;
}

function formWithAction(html, action) {
  const form = forms(html).find((f) => f.action === action);
  check(form, `no <form action="${action}"> on the page:\n${html.slice(0, 600)}`);
  check(form.fields.request && form.fields.csrf, `the ${action} form lacks hidden request/csrf`);
  return form;
}

/**
 * Drives an authorization request to its redirect: GET /oauth2/authorize, then (as the page
 * asks) the login form and the consent form. Returns the redirect (callback) URL with the
 * code or error. `decision` is what the consent page answers.
 */
async function authorize(browser, url, { email, password, decision = 'allow' } = {}) {
  let response = await browser.fetch(url);
  for (let step = 0; step < 6; step += 1) {
    const location = response.headers.get('location');
    if (response.status === 303 || response.status === 302) {
      check(location, `${response.status} without Location`);
      const next = new URL(location, browser.origin);
      if (next.origin !== browser.origin || !next.pathname.startsWith('/oauth2/')) return next;
      response = await browser.fetch(next);
      continue;
    }
    const html = await response.text();
    check(response.status === 200, `authorization page answered ${response.status}: ${html.slice(0, 300)}`);
    if (html.includes('action="/oauth2/login"')) {
      check(email, 'the login page was shown, but this case has no user to sign in');
      const form = formWithAction(html, '/oauth2/login');
      response = await browser.post('/oauth2/login', { ...form.fields, email, password });
      check(response.status === 303, `login answered ${response.status}: ${(await response.text()).slice(0, 300)}`);
    } else if (html.includes('action="/oauth2/consent"')) {
      const form = formWithAction(html, '/oauth2/consent');
      response = await browser.post('/oauth2/consent', { ...form.fields, decision });
      check(response.status === 303, `consent answered ${response.status}`);
    } else {
      throw new Failed(`neither the login nor the consent page: ${html.slice(0, 300)}`);
    }
  }
  throw new Failed('no redirect to the client after six steps');
}

// ------------------------------------------------------------------------------------------
// sessiond's first-party API (setup, and the token-separation cases)

async function api(issuer, path, { method = 'GET', bearer, body } = {}) {
  const headers = {};
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  if (body) headers['content-type'] = 'application/json';
  const response = await fetch(new URL(path, issuer), {
    method,
    headers,
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  return { status: response.status, body: json };
}

/** Registers and signs in the user, registers the applications: {firstParty, clients}. */
async function setUp(issuer) {
  const { email, password } = config;
  let r = await api(issuer, '/v1/auth/register', { method: 'POST', body: { email, password } });
  check(r.status === 201, `register: ${r.status} ${JSON.stringify(r.body)}`);
  r = await api(issuer, '/v1/auth/sessions', { method: 'POST', body: { email, password } });
  check(r.status === 201, `login: ${r.status} ${JSON.stringify(r.body)}`);
  const firstParty = r.body;
  const callback = (name) => `${config.redirect_base}/${name}/callback`;
  const application = async (name, clientType) => {
    const res = await api(issuer, '/v1/applications', {
      method: 'POST',
      bearer: firstParty.access_token,
      body: {
        name: `openid-client ${name}`,
        client_type: clientType,
        redirect_uris: [callback(name)],
        allowed_scopes: SCOPE.split(' '),
      },
    });
    check(res.status === 201, `create application ${name}: ${res.status} ${JSON.stringify(res.body)}`);
    return {
      id: res.body.application.client_id,
      secret: res.body.client_secret,
      redirect_uri: callback(name),
    };
  };
  return {
    firstParty,
    clients: {
      public: await application('public', 'public'),
      confidential: await application('confidential', 'confidential'),
    },
  };
}

// ------------------------------------------------------------------------------------------
// openid-client

const AUTH = {
  none: () => oidc.None(),
  client_secret_basic: (secret) => oidc.ClientSecretBasic(secret),
  client_secret_post: (secret) => oidc.ClientSecretPost(secret),
};

/** openid-client's Configuration from discovery: `http` issuers are allowed explicitly. */
async function discover(issuer, client, method, secret = client.secret) {
  const metadata = { redirect_uris: [client.redirect_uri], token_endpoint_auth_method: method };
  return oidc.discovery(new URL(issuer), client.id, metadata, AUTH[method](secret), {
    execute: [oidc.allowInsecureRequests],
  });
}

/** A fresh authorization request: its URL and the values the callback is checked against. */
async function authorizationRequest(rp, client, extra = {}) {
  const verifier = oidc.randomPKCECodeVerifier();
  const request = {
    verifier,
    state: oidc.randomState(),
    nonce: oidc.randomNonce(),
  };
  const parameters = {
    redirect_uri: client.redirect_uri,
    scope: SCOPE,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state: request.state,
    nonce: request.nonce,
    ...extra,
  };
  for (const [k, v] of Object.entries(parameters)) if (v === undefined) delete parameters[k];
  request.url = oidc.buildAuthorizationUrl(rp, parameters);
  return request;
}

/** The code exchange with openid-client's checks (state, iss, nonce, ID token). */
function exchange(rp, callback, request, overrides = {}) {
  return oidc.authorizationCodeGrant(rp, callback, {
    pkceCodeVerifier: request.verifier,
    expectedState: request.state,
    expectedNonce: request.nonce,
    idTokenExpected: true,
    ...overrides,
  });
}

function atHash(accessToken) {
  const digest = createHash('sha256').update(accessToken).digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

// ------------------------------------------------------------------------------------------
// The flows

/** The whole happy path for one client and authentication method. */
async function happyPath(issuer, client, method, browser, user) {
  const tag = method;
  let rp;
  await runCase(`${tag}: discovery`, async () => {
    rp = await discover(issuer, client, method);
    const as = rp.serverMetadata();
    check(as.issuer === issuer, `issuer ${as.issuer} != ${issuer}`);
    check(as.authorization_response_iss_parameter_supported === true, 'RFC 9207 iss not advertised');
    check((as.code_challenge_methods_supported ?? []).includes('S256'), 'S256 not advertised');
    check((as.token_endpoint_auth_methods_supported ?? []).includes(method), `${method} not advertised`);
    return as.issuer;
  });
  if (!rp) return;

  let tokens;
  let request;
  await runCase(`${tag}: authorization code with PKCE and nonce`, async () => {
    request = await authorizationRequest(rp, client);
    const callback = await authorize(browser, request.url, user);
    check(callback.searchParams.get('code'), `no code in ${callback}`);
    check(callback.searchParams.get('iss') === issuer, `iss ${callback.searchParams.get('iss')}`);
    tokens = await exchange(rp, callback, request);
    check(tokens.token_type?.toLowerCase() === 'bearer', `token_type ${tokens.token_type}`);
    check(tokens.refresh_token, 'no refresh token for authorization_code');
    return `scope=${tokens.scope}`;
  });
  if (!tokens) return;

  let claims;
  await runCase(`${tag}: ID token validated by openid-client`, async () => {
    claims = tokens.claims();
    check(claims, 'no ID token');
    check(claims.iss === issuer && claims.aud === client.id, `iss/aud ${claims.iss} ${claims.aud}`);
    check(claims.nonce === request.nonce, 'nonce');
    check(claims.sub && claims.auth_time && claims.iat && claims.exp, 'sub/auth_time/iat/exp');
    check(claims.at_hash === atHash(tokens.access_token), `at_hash ${claims.at_hash}`);
    check(claims.acr === 'aal1', `acr ${claims.acr}`);
    check(claims.email === config.email, `email claim ${claims.email}`);
    return `sub=${claims.sub}`;
  });

  await runCase(`${tag}: userinfo`, async () => {
    const info = await oidc.fetchUserInfo(rp, tokens.access_token, claims?.sub ?? oidc.skipSubjectCheck);
    check(info.email === config.email, `userinfo email ${info.email}`);
    return `sub=${info.sub}`;
  });

  let refreshed;
  await runCase(`${tag}: refresh`, async () => {
    refreshed = await oidc.refreshTokenGrant(rp, tokens.refresh_token);
    check(refreshed.access_token && refreshed.access_token !== tokens.access_token, 'a new access token');
    check(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token, 'rotated refresh token');
    return `scope=${refreshed.scope}`;
  });
  if (!refreshed) return;

  if (method === 'none') {
    await runCase(`${tag}: introspection requires client authentication`, () =>
      expectOAuthError(() => oidc.tokenIntrospection(rp, refreshed.access_token), 'invalid_client', 'public client introspects'));
  } else {
    await runCase(`${tag}: introspection`, async () => {
      const at = await oidc.tokenIntrospection(rp, refreshed.access_token);
      check(at.active === true, `access token: ${JSON.stringify(at)}`);
      check(at.client_id === client.id && at.sub === claims?.sub, `client_id/sub: ${JSON.stringify(at)}`);
      const rt = await oidc.tokenIntrospection(rp, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
      check(rt.active === true, `refresh token: ${JSON.stringify(rt)}`);
      const old = await oidc.tokenIntrospection(rp, tokens.refresh_token);
      check(old.active === false, `the rotated-out refresh token: ${JSON.stringify(old)}`);
      return 'access and refresh token active';
    });
  }

  await runCase(`${tag}: revocation`, async () => {
    await oidc.tokenRevocation(rp, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
    await expectOAuthError(() => oidc.refreshTokenGrant(rp, refreshed.refresh_token), 'invalid_grant', 'refresh after revocation');
    if (method !== 'none') {
      const at = await oidc.tokenIntrospection(rp, refreshed.access_token);
      check(at.active === false, `access token after revocation: ${JSON.stringify(at)}`);
    }
    const me = await fetch(new URL('/oauth2/userinfo', issuer), { headers: { authorization: `Bearer ${refreshed.access_token}` } });
    check(me.status === 401, `userinfo after revocation: ${me.status}`);
    return 'grant ended';
  });
}

/** Signs in through `browser` and returns a fresh code for `client` (+ its request). */
async function freshCode(rp, client, browser, user, extra) {
  const request = await authorizationRequest(rp, client, extra);
  const callback = await authorize(browser, request.url, user);
  check(callback.searchParams.get('code'), `no code in ${callback}`);
  return { request, callback };
}

async function negativePaths(issuer, setup, browser, user) {
  const client = setup.clients.confidential;
  const rp = await discover(issuer, client, 'client_secret_basic');

  await runCase('negative: unregistered redirect URI at /oauth2/authorize (error page, no redirect)', async () => {
    const request = await authorizationRequest(rp, client, { redirect_uri: `${config.redirect_base}/elsewhere` });
    const response = await browser.fetch(request.url);
    const body = await response.text();
    check(response.status === 400, `status ${response.status}`);
    check(!response.headers.get('location'), `redirected to ${response.headers.get('location')}`);
    check(/text\/html/.test(response.headers.get('content-type') ?? ''), 'an HTML error page');
    check(!body.includes('elsewhere?'), 'the page does not link to the unregistered URI');
    return '400 page';
  });

  await runCase('negative: wrong redirect URI at the token endpoint (invalid_grant)', async () => {
    const { request, callback } = await freshCode(rp, client, browser, user);
    const wrong = new URL(callback);
    wrong.pathname = '/elsewhere';
    return expectOAuthError(() => exchange(rp, wrong, request), 'invalid_grant', 'code with another redirect_uri');
  });

  await runCase('negative: authorization request without PKCE (invalid_request redirect)', async () => {
    const request = await authorizationRequest(rp, client, { code_challenge: undefined, code_challenge_method: undefined });
    const callback = await authorize(browser, request.url, user);
    return expectOAuthError(() => exchange(rp, callback, request), 'invalid_request', 'no code_challenge');
  });

  await runCase('negative: missing PKCE verifier (invalid_grant)', async () => {
    const { request, callback } = await freshCode(rp, client, browser, user);
    return expectOAuthError(() => exchange(rp, callback, request, { pkceCodeVerifier: undefined }), 'invalid_grant', 'no code_verifier');
  });

  await runCase('negative: wrong PKCE verifier (invalid_grant)', async () => {
    const { request, callback } = await freshCode(rp, client, browser, user);
    return expectOAuthError(
      () => exchange(rp, callback, request, { pkceCodeVerifier: oidc.randomPKCECodeVerifier() }),
      'invalid_grant',
      'another code_verifier',
    );
  });

  await runCase('negative: replayed code (invalid_grant, and its grant is revoked)', async () => {
    const { request, callback } = await freshCode(rp, client, browser, user);
    const first = await exchange(rp, callback, request);
    await expectOAuthError(() => exchange(rp, callback, request), 'invalid_grant', 'the code again');
    const at = await oidc.tokenIntrospection(rp, first.access_token);
    check(at.active === false, `the first exchange's access token: ${JSON.stringify(at)}`);
    await expectOAuthError(() => oidc.refreshTokenGrant(rp, first.refresh_token), 'invalid_grant', "the first exchange's refresh token");
    return 'invalid_grant; grant revoked';
  });

  await runCase('negative: wrong client secret (invalid_client)', async () => {
    const { request, callback } = await freshCode(rp, client, browser, user);
    const wrong = await discover(issuer, client, 'client_secret_basic', 'cs_not-the-secret');
    await expectOAuthError(() => exchange(wrong, callback, request), 'invalid_client', 'basic with a wrong secret');
    const wrongPost = await discover(issuer, client, 'client_secret_post', 'cs_not-the-secret');
    await expectOAuthError(() => exchange(wrongPost, callback, request), 'invalid_client', 'post with a wrong secret');
    // The code was not spent by the refused attempts.
    const tokens = await exchange(rp, callback, request);
    check(tokens.access_token, 'the right secret still redeems the code');
    return 'invalid_client';
  });

  await runCase('negative: scope beyond the allowed set (invalid_scope redirect)', async () => {
    const request = await authorizationRequest(rp, client, { scope: `${SCOPE} admin` });
    const callback = await authorize(browser, request.url, user);
    return expectOAuthError(() => exchange(rp, callback, request), 'invalid_scope', 'scope admin');
  });

  await runCase('negative: prompt=none without a session (login_required)', async () => {
    const stranger = new Browser(issuer);
    const request = await authorizationRequest(rp, client, { prompt: 'none' });
    const callback = await authorize(stranger, request.url, {});
    return expectOAuthError(() => exchange(rp, callback, request), 'login_required', 'prompt=none, no SSO cookie');
  });

  await runCase('negative: tampered state (openid-client refuses the response)', async () => {
    const { request, callback } = await freshCode(rp, client, browser, user);
    const tampered = new URL(callback);
    tampered.searchParams.set('state', `${request.state}x`);
    const e = await mustThrow(() => exchange(rp, tampered, request), 'tampered state');
    const why = `${e.message}: ${e.cause?.message}`;
    check(e.code === 'OAUTH_INVALID_RESPONSE' && /"state"/.test(why), `refused for another reason: ${describe(e)}`);
    return why;
  });

  await runCase('negative: an OAuth access token on the first-party API (401)', async () => {
    const { request, callback } = await freshCode(rp, client, browser, user);
    const tokens = await exchange(rp, callback, request);
    const r = await api(issuer, '/v1/auth/me', { bearer: tokens.access_token });
    check(r.status === 401, `/v1/auth/me answered ${r.status} ${JSON.stringify(r.body)}`);
    const refresh = await api(issuer, '/v1/auth/tokens/refresh', { method: 'POST', body: { refresh_token: tokens.refresh_token } });
    check(refresh.status === 401, `/v1/auth/tokens/refresh with a grant's token answered ${refresh.status}`);
    return '401';
  });

  await runCase('negative: a first-party refresh token at /oauth2/token (invalid_grant)', () =>
    expectOAuthError(() => oidc.refreshTokenGrant(rp, setup.firstParty.refresh_token), 'invalid_grant', 'first-party refresh token'));
}

/** On the second issuer, whose codes live a second: a code redeemed too late. */
async function expiredCode() {
  await runCase('negative: expired code (invalid_grant)', async () => {
    const issuer = config.short_code_issuer;
    const setup = await setUp(issuer);
    const client = setup.clients.confidential;
    const rp = await discover(issuer, client, 'client_secret_basic');
    const browser = new Browser(issuer);
    const user = { email: config.email, password: config.password };
    const { request, callback } = await freshCode(rp, client, browser, user);
    await new Promise((resolve) => setTimeout(resolve, config.short_code_wait_ms));
    return expectOAuthError(() => exchange(rp, callback, request), 'invalid_grant', 'a code past its lifetime');
  });
}

// ------------------------------------------------------------------------------------------

/** Runs a group of cases; an error outside its cases fails the group, not the later ones
 * (the cases it did not reach are missing, which the Rust side reports). */
async function phase(name, body) {
  try {
    await body();
  } catch (e) {
    report(`phase ${name}`, false, describe(e));
  }
}

async function main() {
  const issuer = config.issuer;
  let setup;
  await runCase('setup: user and applications over the first-party API', async () => {
    setup = await setUp(issuer);
    return `${setup.clients.confidential.id}, ${setup.clients.public.id}`;
  });
  if (setup) {
    const user = { email: config.email, password: config.password };
    // One browser for the whole run: the first sign-in sets the SSO cookie, later requests
    // ride on it (and get the consent page or, once consented, a direct redirect).
    const browser = new Browser(issuer);
    await phase('none', () => happyPath(issuer, setup.clients.public, 'none', browser, user));
    for (const method of ['client_secret_basic', 'client_secret_post']) {
      await phase(method, () => happyPath(issuer, setup.clients.confidential, method, browser, user));
    }
    await phase('negative', () => negativePaths(issuer, setup, browser, user));
  }
  await phase('expired code', expiredCode);
  process.exit(failures === 0 ? 0 : 1);
}

main().catch((e) => {
  report('script', false, describe(e));
  process.exit(2);
});
