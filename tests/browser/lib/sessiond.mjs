// Starts the debug sessiond for a browser test: a free loopback port, its own database (a SQLite
// file in a temporary directory, or a fresh PostgreSQL database), development mail mode, and the
// demo on. Stopped by PID.
import { spawn, execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PG_ADMIN = process.env.SESSIOND_TEST_PG || 'postgres://postgres@127.0.0.1:5432/postgres';

/** A port nothing listens on now (bound then released on 127.0.0.1). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function psql(sql) {
  execFileSync('psql', [PG_ADMIN, '-v', 'ON_ERROR_STOP=1', '-q', '-c', sql], { stdio: ['ignore', 'ignore', 'inherit'] });
}

/**
 * Starts sessiond. `backend` is `sqlite` (the demo default: generated development keys, so
 * the demo and passkeys are on by default) or `postgres` (keys and the demo configured, as
 * PostgreSQL never generates keys).
 */
export async function startSessiond({ backend = 'sqlite' } = {}) {
  const bin = process.env.SESSIOND_BIN
    || join(process.env.CARGO_TARGET_DIR || join(process.env.HOME, '.cache/sessiond-target'), 'debug/sessiond');
  const dir = mkdtempSync(join(tmpdir(), 'sessiond-browser-'));
  const port = await freePort();
  // WebAuthn needs a domain: the page is opened on localhost, never 127.0.0.1.
  const origin = `http://localhost:${port}`;
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    SESSIOND_BIND: `127.0.0.1:${port}`,
    SESSIOND_ISSUER: origin,
    SESSIOND_ARGON2_MEMORY_KIB: '1024',
    SESSIOND_ARGON2_ITERATIONS: '1',
    SESSIOND_RATE_LIMITS: 'off',
    SESSIOND_LOG_FORMAT: 'json',
    RUST_LOG: process.env.BROWSER_RUST_LOG || 'info',
  };
  let dropDatabase = null;
  if (backend === 'sqlite') {
    env.DATABASE_URL = `sqlite://${join(dir, 'sessiond.db')}?mode=rwc`;
  } else if (backend === 'postgres') {
    const name = `sessiond_browser_${randomBytes(6).toString('hex')}`;
    psql(`CREATE DATABASE ${name}`);
    dropDatabase = () => psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    env.DATABASE_URL = PG_ADMIN.replace(/\/[^/]*$/, `/${name}`);
    const { privateKey } = generateKeyPairSync('ed25519');
    writeFileSync(join(dir, 'signing.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    env.SESSIOND_SIGNING_KEY_FILE = join(dir, 'signing.pem');
    env.SESSIOND_REFRESH_KEY = randomBytes(32).toString('base64');
    env.SESSIOND_DEMO = 'on';
    env.SESSIOND_WEBAUTHN_RP_ID = 'localhost';
    env.SESSIOND_WEBAUTHN_ORIGINS = origin;
    env.SESSIOND_WEBAUTHN_RP_NAME = 'sessiond demo';
  } else {
    throw new Error(`unknown backend ${backend}`);
  }
  const logPath = join(dir, 'sessiond.log');
  const log = openSync(logPath, 'a');
  const child = spawn(bin, ['serve'], { env, cwd: dir, stdio: ['ignore', log, log] });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let gone = false;
  exited.then(() => { gone = true; });

  const base = origin;
  const deadline = Date.now() + 30000;
  for (;;) {
    if (gone) throw new Error(`sessiond exited during start-up:\n${readFileSync(logPath, 'utf8').slice(-4000)}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/ready`);
      if (r.ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`sessiond not ready on ${base}:\n${readFileSync(logPath, 'utf8').slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    base,
    port,
    pid: child.pid,
    backend,
    logPath,
    log: () => readFileSync(logPath, 'utf8'),
    /** A JSON call to sessiond from the test itself (not through a page): `{status, body}`. */
    async api(method, path, { body, token } = {}) {
      const headers = {};
      if (body) headers['content-type'] = 'application/json';
      if (token) headers.authorization = `Bearer ${token}`;
      const r = await fetch(`${base}${path}`, { method, headers, body: body && JSON.stringify(body) });
      const text = await r.text();
      return { status: r.status, body: text ? JSON.parse(text) : null };
    },
    /** Stops sessiond by its PID (SIGTERM, then SIGKILL after 10 s) and removes its data. */
    async stop() {
      if (!gone) {
        process.kill(child.pid, 'SIGTERM');
        const timer = setTimeout(() => { if (!gone) process.kill(child.pid, 'SIGKILL'); }, 10000);
        await exited;
        clearTimeout(timer);
      }
      if (dropDatabase) dropDatabase();
      if (!process.env.BROWSER_KEEP_DATA) rmSync(dir, { recursive: true, force: true });
    },
  };
}
