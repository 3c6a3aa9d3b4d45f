// The authorization endpoint's pages in real Chromium (issue #12): an application sends the
// browser to /oauth2/authorize; the user signs in on sessiond's login page, allows the
// application on the consent page, and the browser lands on the application's callback (a tiny
// loopback page served here) with a code, the state and `iss` — under the pages' real CSP
// (form-action to the client's origin) and with the __Host-sessiond_sso cookie. The test then
// redeems the code like the application would. Run by tests/browser/run.sh.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';

import { DESKTOP, launch, screenshots } from './lib/browser.mjs';
import { freePort, startSessiond } from './lib/sessiond.mjs';

const BACKEND = process.env.BROWSER_DB || 'sqlite';
const PASSWORD = 'correct horse battery staple';
const WAIT = { timeout: 15000 };

let server;
let browser;
let callback;

/** The application's redirect target: a page that shows what it was given. */
async function startCallback() {
  const port = await freePort();
  const http = createServer((req, res) => {
    const url = new URL(req.url, `http://127.0.0.1:${port}`);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>callback</title><p id="code">${url.searchParams.get('code') || ''}</p>`
      + `<p id="state">${url.searchParams.get('state') || ''}</p>`);
  });
  await new Promise((resolve) => http.listen(port, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${port}/cb`, close: () => new Promise((r) => http.close(r)) };
}

before(async () => {
  server = await startSessiond({ backend: BACKEND });
  callback = await startCallback();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await callback?.close();
  await server?.stop();
});

test('login → consent → redirect to the application with a code', async () => {
  // An account with a verified address (application creators must have one) and its app.
  const email = `oauth-${Date.now()}@example.com`;
  const registered = await server.api('POST', '/v1/auth/register', { body: { email, password: PASSWORD, name: 'Ada' } });
  assert.equal(registered.status, 201);
  const mailed = await server.api('GET', `/demo/dev/last-code?email=${encodeURIComponent(email)}`);
  const verified = await server.api('POST', '/v1/auth/email/verify', {
    body: { verification_id: registered.body.verification_id, code: mailed.body.code },
  });
  assert.equal(verified.status, 200, JSON.stringify(verified.body));
  const login = await server.api('POST', '/v1/auth/sessions', { body: { email, password: PASSWORD } });
  assert.equal(login.status, 201);
  const created = await server.api('POST', '/v1/applications', {
    token: login.body.access_token,
    body: { name: 'Acme Dashboard', description: 'Invoices and reports', client_type: 'public',
            redirect_uris: [callback.url], allowed_scopes: ['openid', 'email'] },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const clientId = created.body.application.client_id;

  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const state = randomBytes(8).toString('hex');
  const authorize = new URL(`${server.base}/oauth2/authorize`);
  for (const [k, v] of Object.entries({
    response_type: 'code', client_id: clientId, redirect_uri: callback.url, scope: 'openid email',
    state, nonce: 'n-0S6', code_challenge: challenge, code_challenge_method: 'S256',
  })) authorize.searchParams.set(k, v);

  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const violations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
  try {
    await page.goto(authorize.href);
    await page.locator('#email').waitFor(WAIT);
    assert.match(await page.locator('h1').textContent(), /Acme Dashboard/);
    await page.fill('#email', email);
    await page.fill('#password', PASSWORD);
    await screenshots(page, 'oauth-login');
    await page.click('#login-submit');

    await page.locator('#consent-allow').waitFor(WAIT);
    assert.match(await page.locator('main').textContent(), /See your email address/);
    const cookies = await context.cookies(server.base);
    assert.ok(cookies.some((c) => c.name === '__Host-sessiond_sso' && c.httpOnly && c.sameSite === 'Lax'),
      JSON.stringify(cookies));
    await screenshots(page, 'oauth-consent');
    await page.click('#consent-allow');

    await page.waitForURL((u) => u.href.startsWith(callback.url), WAIT);
    const back = new URL(page.url());
    assert.equal(back.searchParams.get('state'), state);
    assert.equal(back.searchParams.get('iss'), server.base);
    const code = back.searchParams.get('code');
    assert.ok(code && code === (await page.locator('#code').textContent()));
    assert.deepEqual(violations, []);

    // The application redeems the code (a public client: client_id and the PKCE verifier).
    const token = await fetch(`${server.base}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', client_id: clientId, code,
                                  redirect_uri: callback.url, code_verifier: verifier }),
    });
    const tokens = await token.json();
    assert.equal(token.status, 200, JSON.stringify(tokens));
    assert.equal(tokens.scope, 'openid email');
    assert.ok(tokens.access_token && tokens.refresh_token);
  } catch (e) {
    await screenshots(page, 'oauth-failure').catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
});
