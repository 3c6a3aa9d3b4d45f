// Shared helpers of the k6 suites: configuration from the environment, the two profiles,
// API calls, seeding (from a `sessiond seed` file or over HTTP), and the JSON summary.
//
// Environment (every script):
//   BASE_URL      sessiond to test (default http://127.0.0.1:8080)
//   PROFILE       smoke | full (default full). smoke: seconds, tiny rates, thresholds on checks
//                 and error rates only. full: the real load, with latency thresholds.
//   RESULTS_DIR   where the JSON summary goes (default k6/results); file <scenario>.json
//   SEED_FILE     JSON lines from `sessiond seed` ({email, password, user_id, session_id,
//                 refresh_token, access_token}); without it the script seeds over HTTP in setup()
//   SEED_OFFSET, SEED_COUNT   use only lines [offset, offset+count) of SEED_FILE, so scenarios
//                 that consume refresh tokens can share one file without replaying each
//                 other's tokens (a refresh token is single-use: replaying it compromises
//                 the session)

import http from 'k6/http';
import { check, fail } from 'k6';
import { SharedArray } from 'k6/data';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const PROFILE = (__ENV.PROFILE || 'full').toLowerCase();
if (PROFILE !== 'smoke' && PROFILE !== 'full') {
  throw new Error(`PROFILE must be smoke or full, not ${PROFILE}`);
}
export const SMOKE = PROFILE === 'smoke';
export const RESULTS_DIR = (__ENV.RESULTS_DIR || 'k6/results').replace(/\/+$/, '');

/** An integer from the environment, or `dflt`. */
export function envInt(name, dflt) {
  const v = __ENV[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, not ${v}`);
  return Math.floor(n);
}

/** A number (possibly fractional) from the environment, or `dflt`. */
export function envNum(name, dflt) {
  const v = __ENV[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, not ${v}`);
  return n;
}

/** `smoke` in the smoke profile, else `full`. */
export function pick(smoke, full) {
  return SMOKE ? smoke : full;
}

const JSON_HEADERS = { 'content-type': 'application/json' };

/** Statuses that are answers, not transport failures, for requests expected to be refused. */
export const EXPECT_401 = http.expectedStatuses(401);

/** The trend statistics every scenario's summary shows. */
export const SUMMARY_TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'];

/**
 * The options of a scenario that offers one request at a constant arrival rate (`me_read`,
 * `refresh_storm`): `scenario` names the scenario, `request` the request's `name` tag. Thresholds:
 * checks pass, few requests fail, the request ran, and the arrival rate was actually offered
 * (few iterations dropped for lack of VUs); in the full profile also p99 below `p99Ms`.
 */
export function constantRateOptions(scenario, request, { rate, duration, maxVus, p99Ms }) {
  return {
    setupTimeout: '300s',
    scenarios: {
      [scenario]: {
        executor: 'constant-arrival-rate',
        rate,
        timeUnit: '1s',
        duration,
        preAllocatedVUs: maxVus,
        maxVUs: maxVus,
        gracefulStop: '10s',
      },
    },
    thresholds: Object.assign(
      {
        checks: ['rate>0.99'],
        http_req_failed: ['rate<0.01'],
        [`http_reqs{name:${request}}`]: ['count>0'],
        dropped_iterations: [SMOKE ? 'count<50' : `count<${Math.max(1, Math.floor(rate * 0.01 * 60))}`],
      },
      SMOKE ? {} : { [`http_req_duration{name:${request}}`]: [`p(99)<${p99Ms}`] },
    ),
    summaryTrendStats: SUMMARY_TREND_STATS,
  };
}

/** A unique-enough id for this run, so emails never collide across runs. */
export const RUN_ID = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;

export const DEFAULT_PASSWORD = 'k6 load-test password';

export function register(email, password, tags) {
  return http.post(`${BASE_URL}/v1/auth/register`, JSON.stringify({ email, password }), {
    headers: JSON_HEADERS,
    tags: Object.assign({ name: 'register' }, tags || {}),
  });
}

export function login(email, password, tags, params) {
  return http.post(
    `${BASE_URL}/v1/auth/sessions`,
    JSON.stringify({ email, password, device_name: 'k6' }),
    Object.assign({ headers: JSON_HEADERS, tags: Object.assign({ name: 'login' }, tags || {}) }, params || {}),
  );
}

export function refresh(refreshToken, tags, params) {
  return http.post(
    `${BASE_URL}/v1/auth/tokens/refresh`,
    JSON.stringify({ refresh_token: refreshToken }),
    Object.assign({ headers: JSON_HEADERS, tags: Object.assign({ name: 'refresh' }, tags || {}) }, params || {}),
  );
}

function bearer(accessToken) {
  return { authorization: `Bearer ${accessToken}` };
}

export function me(accessToken, tags, params) {
  return http.get(
    `${BASE_URL}/v1/auth/me`,
    Object.assign({ headers: bearer(accessToken), tags: Object.assign({ name: 'me' }, tags || {}) }, params || {}),
  );
}

export function listSessions(accessToken, tags) {
  return http.get(`${BASE_URL}/v1/auth/sessions?limit=20`, {
    headers: bearer(accessToken),
    tags: Object.assign({ name: 'list_sessions' }, tags || {}),
  });
}

export function logout(accessToken, tags) {
  return http.post(`${BASE_URL}/v1/auth/sessions/current/revoke`, null, {
    headers: bearer(accessToken),
    tags: Object.assign({ name: 'logout' }, tags || {}),
  });
}

/** The parsed JSON body, or null. */
export function body(res) {
  try {
    return res.json();
  } catch (_) {
    return null;
  }
}

/** The API error code of a response (`error.code`), or null. */
export function errorCode(res) {
  const b = body(res);
  return b && b.error ? b.error.code : null;
}

/** Whether a response is a token response. */
export function isTokenResponse(res) {
  const b = body(res);
  return !!(b && typeof b.access_token === 'string' && typeof b.refresh_token === 'string' && b.session);
}

/**
 * Seeds as `sessiond seed` would, over HTTP: `users` users with `perUser` sessions each.
 * Returns seed entries `{email, password, user_id, session_id, refresh_token, access_token}`.
 * For setup(); fails the run if the server refuses.
 */
export function seedOverHttp(prefix, users, perUser) {
  const out = [];
  for (let u = 0; u < users; u++) {
    const email = `k6-${prefix}-${RUN_ID}-${u}@example.com`;
    const r = register(email, DEFAULT_PASSWORD, { phase: 'seed' });
    if (r.status !== 201) fail(`seeding: register answered ${r.status} ${r.body}`);
    const userId = body(r).user.id;
    for (let s = 0; s < perUser; s++) {
      const l = login(email, DEFAULT_PASSWORD, { phase: 'seed' });
      if (l.status !== 201) fail(`seeding: login answered ${l.status} ${l.body}`);
      const b = body(l);
      out.push({
        email,
        password: DEFAULT_PASSWORD,
        user_id: userId,
        session_id: b.session.id,
        refresh_token: b.refresh_token,
        access_token: b.access_token,
      });
    }
  }
  return out;
}

/**
 * The seed entries of SEED_FILE (sliced by SEED_OFFSET / SEED_COUNT), or an empty array when
 * SEED_FILE is not set. Must be called in the init context (k6's `open` only works there).
 */
export function loadSeedFile(name) {
  if (!__ENV.SEED_FILE) return [];
  return new SharedArray(`seeds-${name}`, () => {
    const offset = envInt('SEED_OFFSET', 0);
    const count = envInt('SEED_COUNT', 0);
    const lines = open(__ENV.SEED_FILE).split('\n').filter((l) => l.trim() !== '');
    const slice = count > 0 ? lines.slice(offset, offset + count) : lines.slice(offset);
    if (slice.length === 0) throw new Error(`SEED_FILE ${__ENV.SEED_FILE} has no lines at offset ${offset}`);
    return slice.map((l) => JSON.parse(l));
  });
}

/** Seeds from the file if one was given, else over HTTP; at least `need` sessions. */
export function seeds(fileSeeds, prefix, need, perUser) {
  if (fileSeeds.length > 0) {
    if (fileSeeds.length < need) {
      fail(`SEED_FILE holds ${fileSeeds.length} sessions; this scenario needs ${need}`);
    }
    // A SharedArray cannot cross into VUs as setup data; copy the part we use.
    const out = [];
    for (let i = 0; i < need; i++) out.push(fileSeeds[i]);
    return out;
  }
  const per = Math.max(1, perUser || 1);
  return seedOverHttp(prefix, Math.ceil(need / per), per).slice(0, need);
}

/** Checks that must hold on a token response. */
export function checkTokenResponse(res, what) {
  return check(res, {
    [`${what}: 2xx token response`]: (r) => (r.status === 200 || r.status === 201) && isTokenResponse(r),
  });
}

/**
 * Reads a counter from /metrics (Prometheus text); null if absent or /metrics is not served.
 * sessiond serves /metrics openly only on a loopback bind; against any other bind set
 * METRICS_TOKEN (sessiond's SESSIOND_METRICS_TOKEN) or METRICS_URL (its SESSIOND_METRICS_ADDR
 * listener, e.g. http://10.0.0.5:9464/metrics).
 */
export function readMetric(name, labels) {
  const url = __ENV.METRICS_URL || `${BASE_URL}/metrics`;
  const headers = __ENV.METRICS_TOKEN ? { Authorization: `Bearer ${__ENV.METRICS_TOKEN}` } : {};
  const res = http.get(url, {
    headers,
    tags: { name: 'metrics' },
    responseCallback: http.expectedStatuses(200, 401, 404),
  });
  if (res.status !== 200 || typeof res.body !== 'string') return null;
  let total = null;
  for (const line of res.body.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    const ok = Object.keys(labels || {}).every((k) => rest.includes(`${k}="${labels[k]}"`));
    if (!ok) continue;
    const v = Number(line.trim().split(/\s+/).pop());
    if (Number.isFinite(v)) total = (total || 0) + v;
  }
  return total;
}

/**
 * handleSummary for every scenario: writes the whole k6 summary (plus what was run) as JSON to
 * RESULTS_DIR/<name>.json and prints a short text summary. k6's exit status still says whether
 * every threshold passed.
 */
export function summaryWriter(name) {
  return function handleSummary(data) {
    data.sessiond = {
      scenario: name,
      profile: PROFILE,
      base_url: BASE_URL,
      finished_at: new Date().toISOString(),
    };
    const out = {};
    out[`${RESULTS_DIR}/${name}.json`] = JSON.stringify(data, null, 2);
    out.stdout = textSummary(name, data);
    return out;
  };
}

function fmt(v) {
  if (typeof v !== 'number') return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
}

function textSummary(name, data) {
  const lines = [`\n${name} (${PROFILE})`];
  const metrics = data.metrics || {};
  for (const key of Object.keys(metrics).sort()) {
    const m = metrics[key];
    const v = m.values || {};
    let desc;
    if (m.type === 'trend') {
      desc = `avg=${fmt(v.avg)} p50=${fmt(v.med)} p90=${fmt(v['p(90)'])} p95=${fmt(v['p(95)'])} p99=${fmt(v['p(99)'])} max=${fmt(v.max)}`;
    } else if (m.type === 'rate') {
      desc = `rate=${fmt(v.rate)} (${v.passes} of ${v.passes + v.fails})`;
    } else if (m.type === 'counter') {
      desc = `count=${fmt(v.count)} rate=${fmt(v.rate)}/s`;
    } else {
      desc = `value=${fmt(v.value)}`;
    }
    lines.push(`  ${key}: ${desc}`);
    for (const [expr, t] of Object.entries(m.thresholds || {})) {
      lines.push(`    threshold ${expr}: ${t.ok ? 'ok' : 'FAILED'}`);
    }
  }
  const failedChecks = [];
  (function walk(group) {
    for (const c of group.checks || []) if (c.fails > 0) failedChecks.push(`${c.name} (${c.fails} failed)`);
    for (const g of group.groups || []) walk(g);
  })(data.root_group || {});
  if (failedChecks.length) lines.push(`  failed checks: ${failedChecks.join('; ')}`);
  return `${lines.join('\n')}\n`;
}
