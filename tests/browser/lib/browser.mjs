// Debian's Chromium driven by playwright-core, and the DevTools-protocol virtual authenticator.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

/** The real binary (the `chromium` wrapper on PATH is a shell script). */
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/lib/chromium/chromium';

/** Where screenshots go (gitignored). */
export const ARTEFACTS = process.env.BROWSER_ARTEFACTS
  || join(dirname(fileURLToPath(import.meta.url)), '..', 'artefacts');

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

export async function launch() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // As root Chromium needs --no-sandbox; the rest keeps it off the (closed) network.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-features=Translate,MediaRouter,OptimizationHints',
    ],
  });
}

/**
 * A virtual platform authenticator on `page` (ctap2, internal, resident keys, user
 * verification, presence simulated): what a laptop's built-in passkey provider is.
 */
export async function addAuthenticator(context, page) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return {
    cdp,
    authenticatorId,
    /** The credentials the authenticator holds (ids in padded standard base64). */
    async credentials() {
      const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
      return credentials;
    },
  };
}

/** Saves `page` at both widths as `<name>-<w>x<h>.png` in the artefacts directory. */
export async function screenshots(page, name) {
  mkdirSync(ARTEFACTS, { recursive: true });
  const before = page.viewportSize();
  for (const size of [DESKTOP, PHONE]) {
    await page.setViewportSize(size);
    // The phone screenshot shows the whole page (it scrolls there); the desktop one the window.
    await page.screenshot({
      path: join(ARTEFACTS, `${name}-${size.width}x${size.height}.png`),
      fullPage: size === PHONE,
    });
  }
  await page.setViewportSize(before);
}
