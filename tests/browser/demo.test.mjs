// End to end through the demo page in real Chromium (Debian's), driven by playwright-core:
// registration with the mailed code, TOTP, passkeys (a DevTools virtual authenticator) for
// step-up, passwordless and second-factor login, and four tabs refreshing together.
//
// One sessiond (debug binary, free loopback port, own database) and one browser for the file;
// every test uses its own account and browser context. Run by tests/browser/run.sh.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { addAuthenticator, DESKTOP, launch, screenshots } from './lib/browser.mjs';
import { startSessiond } from './lib/sessiond.mjs';
import { currentStep, totp } from './lib/totp.mjs';

const BACKEND = process.env.BROWSER_DB || 'sqlite';
const PASSWORD = 'correct horse battery staple';
const WAIT = { timeout: 15000 };

let server;
let browser;
let n = 0;

function email(what) {
  n += 1;
  return `${what}-${n}-${Date.now()}@example.com`;
}

async function newContext() {
  const context = await browser.newContext({ viewport: DESKTOP });
  // Rename asks with prompt(), deleting the last second factor with confirm().
  context.on('page', (page) => page.on('dialog', (d) => d.accept(d.type() === 'prompt' ? 'Work laptop' : undefined)));
  return context;
}

async function openDemo(page) {
  await page.goto(`${server.base}/demo`);
  await see(page, page.locator('#signed-out:not([hidden]), #signed-in:not([hidden])').first());
}

/** Waits for `locator`; on a timeout the error says what the page's notice and log showed. */
async function see(page, locator, state = 'visible') {
  try {
    await locator.waitFor({ state, ...WAIT });
  } catch (e) {
    const notice = await page.locator('#notice').textContent().catch(() => '?');
    const log = await page.locator('#log').innerText().catch(() => '?');
    e.message += `\npage notice: ${notice}\nrequests:\n${log}`;
    throw e;
  }
}

async function signedIn(page) {
  await see(page, page.locator('#signed-in'));
}

async function expectAal(page, aal) {
  await see(page, page.locator('#me-aal', { hasText: String(aal) }));
  assert.equal(await page.locator('#who-aal').textContent(), `aal ${aal}`);
}

async function amr(page) {
  return (await page.locator('#me-amr').textContent()).split(',').map((s) => s.trim());
}

/** Registers through the page, reading the mailed code from the dev-only endpoint. */
async function registerThroughPage(page, address, { shots = false } = {}) {
  await openDemo(page);
  await page.getByRole('tab', { name: 'Create account' }).click();
  await page.fill('#register-name', 'Ada');
  await page.fill('#register-email', address);
  await page.fill('#register-password', PASSWORD);
  if (shots) await screenshots(page, 'register');
  await page.click('#register-submit');
  await see(page, page.locator('#verify-form'));
  await see(page, page.locator('#dev-code'));
  const code = (await page.locator('#dev-code-value').textContent()).trim();
  assert.match(code, /^\d{6}$/);
  // The page shows what the server mailed.
  const mailed = await server.api('GET', `/demo/dev/last-code?email=${encodeURIComponent(address)}`);
  assert.equal(mailed.body.code, code);
  if (shots) await screenshots(page, 'verify-email');
  await page.click('#dev-code-use');
  await page.click('#verify-submit');
  await signedIn(page);
}

async function logOut(page) {
  await page.click('#logout');
  await see(page, page.locator('#signed-out'));
}

async function passwordLogin(page, address) {
  await page.fill('#login-email', address);
  await page.fill('#login-password', PASSWORD);
  await page.click('#login-submit');
}

before(async () => {
  server = await startSessiond({ backend: BACKEND });
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

describe(`demo page in Chromium (${BACKEND})`, () => {
  test('register with the mailed code, turn on TOTP, log in with password then TOTP', async () => {
    const context = await newContext();
    const page = await context.newPage();
    const address = email('totp');
    await openDemo(page);
    await screenshots(page, 'login');
    await registerThroughPage(page, address, { shots: true });
    await expectAal(page, 1);
    assert.deepEqual(await amr(page), ['pwd']);
    assert.equal(await page.locator('#me-user').textContent(), `Ada · ${address}`);

    // This session is listed and marked.
    await see(page, page.locator('#sessions li.current', { hasText: 'this session' }));

    // TOTP enrolment: the secret is shown, a code from it turns MFA on, recovery codes shown.
    await page.click('#totp-start');
    await see(page, page.locator('#totp-enrol'));
    const secret = (await page.locator('#totp-secret').textContent()).trim();
    const step = currentStep();
    await page.fill('#totp-code', totp(secret, step));
    await page.click('#totp-confirm');
    await see(page, page.locator('#recovery-codes li').first());
    assert.equal(await page.locator('#recovery-codes li').count(), 10);
    await see(page, page.locator('#totp-status', { hasText: 'On since' }));

    await logOut(page);
    await passwordLogin(page, address);
    await see(page, page.locator('#mfa-form'));
    assert.ok(await page.locator('#mfa-totp').isVisible());
    assert.ok(!(await page.locator('#mfa-passkey').isVisible()), 'no passkey on this account');
    await screenshots(page, 'second-factor');
    // A code of the next step: the step used at enrolment is spent.
    await page.fill('#mfa-code', totp(secret, step + 1));
    await page.click('#mfa-submit');
    await signedIn(page);
    await expectAal(page, 2);
    assert.deepEqual(await amr(page), ['pwd', 'otp']);
    await context.close();
  });

  test('passkeys: add, step up, passwordless login, password then passkey, rename, delete', async () => {
    const context = await newContext();
    const page = await context.newPage();
    const authenticator = await addAuthenticator(context, page);
    const address = email('passkey');
    await registerThroughPage(page, address);
    await expectAal(page, 1);

    // Add a passkey: a discoverable credential, and recovery codes (first second factor).
    await page.fill('#passkey-name', 'Laptop');
    await page.click('#passkey-add-submit');
    await see(page, page.locator('#passkeys li', { hasText: 'Laptop' }));
    await see(page, page.locator('#recovery-codes li').first());
    const credentials = await authenticator.credentials();
    assert.equal(credentials.length, 1);
    assert.equal(credentials[0].isResidentCredential, true, 'a resident (discoverable) credential');

    // Step up this password session: aal 1 → 2.
    await page.click('#step-up');
    await expectAal(page, 2);
    assert.ok((await amr(page)).includes('mfa') || (await amr(page)).some((m) => m === 'hwk' || m === 'swk'));
    await page.click('#recovery-done');
    await see(page, page.locator('#sessions li.current'));
    await screenshots(page, 'account');

    // Passwordless: no email, no password.
    await logOut(page);
    await page.click('#passkey-login');
    await signedIn(page);
    await expectAal(page, 2);
    assert.equal(await page.locator('#who-email').textContent(), address);

    // Conditional UI: a page that starts signed out asks for passkeys in the email field's
    // autofill (autocomplete="username webauthn"); Chromium's virtual authenticator answers
    // such a request at once (a person would pick the passkey from the autofill list).
    await logOut(page);
    const conditional = page.waitForRequest((r) => r.url().endsWith('/v1/auth/passkeys/login/start')
      && JSON.parse(r.postData()).conditional === true);
    await page.reload();
    await conditional;
    await signedIn(page);
    assert.match(await page.locator('#notice').textContent(), /passkey/);
    await expectAal(page, 2);

    // Password, then the passkey as second factor.
    await logOut(page);
    await passwordLogin(page, address);
    await see(page, page.locator('#mfa-passkey'));
    await page.click('#mfa-passkey');
    await signedIn(page);
    await expectAal(page, 2);
    assert.ok((await amr(page)).includes('pwd'));

    // Rename (prompt answered "Work laptop"), then delete: the last second factor, confirmed.
    await page.locator('#passkeys li', { hasText: 'Laptop' }).getByRole('button', { name: 'Rename' }).click();
    await see(page, page.locator('#passkeys li', { hasText: 'Work laptop' }));
    await page.locator('#passkeys li', { hasText: 'Work laptop' }).getByRole('button', { name: 'Delete' }).click();
    await see(page, page.locator('#passkeys li.empty', { hasText: 'No passkeys yet.' }));

    // The server agrees: a password login needs no second factor any more.
    const login = await server.api('POST', '/v1/auth/sessions', { body: { email: address, password: PASSWORD } });
    assert.equal(login.status, 201, JSON.stringify(login.body));
    await context.close();
  });

  test('opened on 127.0.0.1 the page says to use localhost (passkeys need a domain)', async () => {
    const context = await newContext();
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${server.port}/demo`);
    await see(page, page.locator('#signed-out'));
    assert.equal(
      await page.locator('#notice').textContent(),
      `Passkeys need a domain: open http://localhost:${server.port}/demo instead of an IP address.`,
    );
    await context.close();
  });

  test('many tabs: four tabs refresh together twenty times, nobody is logged out', async () => {
    const context = await newContext();
    const first = await context.newPage();
    const address = email('tabs');
    await registerThroughPage(first, address);
    // From here on every refresh must succeed (before, the first tab's start found no cookie).
    const refreshes = [];
    context.on('response', (r) => {
      if (new URL(r.url()).pathname === '/v1/auth/browser/refresh') refreshes.push(r.status());
    });
    const sessionId = await first.evaluate(() => window.sessiondDemo.sessionId());
    assert.ok(sessionId);
    const tabs = [first];
    for (let i = 0; i < 3; i++) {
      const page = await context.newPage();
      await openDemo(page);
      await signedIn(page);
      tabs.push(page);
    }
    for (const page of tabs) assert.equal(await page.evaluate(() => window.sessiondDemo.sessionId()), sessionId);

    for (let round = 0; round < 20; round++) {
      const results = await Promise.all(tabs.map((p) => p.evaluate(() => window.sessiondDemo.refresh())));
      for (const r of results) assert.equal(r.status, 200, `round ${round}: ${JSON.stringify(results)}`);
      assert.ok(results.some((r) => !r.shared) || round > 0, 'somebody refreshed');
    }

    // Every refresh the server answered was a success: no replay, no session ended.
    assert.ok(refreshes.length >= 20 + 3, `refreshes seen: ${refreshes.length}`);
    assert.deepEqual(refreshes.filter((s) => s !== 200), [], `statuses: ${refreshes}`);
    const stats = await Promise.all(tabs.map((p) => p.evaluate(() => ({ ...window.sessiondDemo.stats }))));
    const refreshed = stats.reduce((a, s) => a + s.refreshed, 0);
    const shared = stats.reduce((a, s) => a + s.shared, 0);
    assert.equal(refreshed, refreshes.length, JSON.stringify(stats));
    assert.equal(stats.reduce((a, s) => a + s.refreshFailures, 0), 0);
    console.log(`many tabs: ${refreshes.length} refreshes hit the server, ${shared} tab refreshes used another tab's token`);

    // Every tab is still signed in, on the same session, and its access token works.
    for (const page of tabs) {
      assert.ok(await page.locator('#signed-in').isVisible());
      assert.deepEqual(await page.evaluate(() => window.sessiondDemo.whoami()), { status: 200, session: sessionId });
    }
    // The server lists the session as alive.
    const login = await server.api('POST', '/v1/auth/sessions', { body: { email: address, password: PASSWORD } });
    assert.equal(login.status, 201);
    const sessions = await server.api('GET', '/v1/auth/sessions?limit=100', { token: login.body.access_token });
    assert.ok(sessions.body.sessions.some((s) => s.id === sessionId), JSON.stringify(sessions.body));
    await context.close();
  });
});
