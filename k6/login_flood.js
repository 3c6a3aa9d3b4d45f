// login_flood: logins at a high rate (beyond argon2id capacity in the full profile) while a
// second scenario refreshes seeded sessions at a steady rate and measures refresh latency.
// sessiond caps hashing concurrency below the core count and queues a bounded number of logins,
// answering 503 unavailable (or 429 rate_limited) beyond: logins may be refused, refreshes must
// stay fast.
//
//   BASE_URL=... SEED_FILE=seeds.jsonl LOGIN_RATE=500 REFRESH_RATE=200 k6 run k6/login_flood.js
//
// Env: LOGIN_RATE, REFRESH_RATE (per second), DURATION, SESSIONS (refreshed sessions),
// LOGIN_USERS (accounts the flood logs into), MAX_VUS (per scenario), P99_MS (full-profile
// refresh p99 threshold, default 20).

import { check, fail } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import {
  SMOKE, body, checkTokenResponse, envInt, errorCode, loadSeedFile, login, pick, refresh, seeds,
  SUMMARY_TREND_STATS, summaryWriter,
} from './lib/common.js';
import http from 'k6/http';

const LOGIN_RATE = envInt('LOGIN_RATE', pick(10, 500));
const REFRESH_RATE = envInt('REFRESH_RATE', pick(10, 200));
const DURATION = __ENV.DURATION || pick('4s', '60s');
const SESSIONS = envInt('SESSIONS', pick(16, 2000));
const LOGIN_USERS = envInt('LOGIN_USERS', pick(3, 100));
const MAX_VUS = envInt('MAX_VUS', pick(4, 300));
const REFRESH_VUS = Math.min(MAX_VUS, pick(4, 100));
// VU ids are shared by both scenarios, so sessions are split over every possible VU id:
// whichever VUs end up refreshing, no two of them ever hold the same session.
const TOTAL_VUS = MAX_VUS + REFRESH_VUS;
const P99_MS = envInt('P99_MS', 20);
const fileSeeds = loadSeedFile('login_flood');

const loginOk = new Counter('logins_accepted');
const loginShed = new Counter('logins_shed');
// How long a refused login took: shedding must be fast.
const shedDuration = new Trend('login_shed_duration', true);

export const options = {
  setupTimeout: '300s',
  scenarios: {
    logins: {
      executor: 'constant-arrival-rate',
      exec: 'loginFlood',
      rate: LOGIN_RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: MAX_VUS,
      maxVUs: MAX_VUS,
      gracefulStop: '15s',
    },
    refreshes: {
      executor: 'constant-arrival-rate',
      exec: 'steadyRefresh',
      rate: REFRESH_RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: REFRESH_VUS,
      maxVUs: REFRESH_VUS,
      gracefulStop: '10s',
    },
  },
  thresholds: Object.assign(
    {
      'checks{scenario:refreshes}': ['rate>0.99'],
      'checks{scenario:logins}': ['rate>0.99'],
      'http_req_failed{scenario:refreshes}': ['rate<0.01'],
      logins_accepted: ['count>0'],
      'http_reqs{scenario:refreshes}': ['count>0'],
    },
    SMOKE
      ? {}
      : {
          'http_req_duration{scenario:refreshes}': [`p(99)<${P99_MS}`],
          // A shed login must be refused fast, not after a long wait.
          login_shed_duration: ['p(99)<100'],
        },
  ),
  summaryTrendStats: SUMMARY_TREND_STATS,
};

export function setup() {
  const sessions = seeds(fileSeeds, 'flood', SESSIONS + LOGIN_USERS, 1);
  if (SESSIONS < TOTAL_VUS) fail(`SESSIONS (${SESSIONS}) must be at least the VUs of both scenarios (${TOTAL_VUS})`);
  return {
    refreshTokens: sessions.slice(0, SESSIONS).map((s) => s.refresh_token),
    accounts: sessions.slice(SESSIONS).map((s) => [s.email, s.password]),
    totalVus: TOTAL_VUS,
  };
}

// Statuses a login may answer under a flood: accepted, or shed fast.
const LOGIN_STATUSES = http.expectedStatuses(201, 429, 503);

export function loginFlood(data) {
  const [email, password] = data.accounts[exec.scenario.iterationInTest % data.accounts.length];
  const res = login(email, password, {}, { responseCallback: LOGIN_STATUSES });
  const shed = res.status === 429 || res.status === 503;
  if (shed) {
    loginShed.add(1);
  } else if (res.status === 201) {
    loginOk.add(1);
  }
  check(res, {
    'login: accepted (201) or shed with a documented error (429 rate_limited / 503 unavailable)': (r) =>
      (r.status === 201 && !!body(r).refresh_token) ||
      (r.status === 429 && errorCode(r) === 'rate_limited') ||
      (r.status === 503 && errorCode(r) === 'unavailable'),
  });
  if (shed) shedDuration.add(res.timings.duration);
}

let mine = null;
let next = 0;

export function steadyRefresh(data) {
  if (mine === null) {
    const vu = exec.vu.idInTest - 1;
    mine = data.refreshTokens.filter((_, i) => i % data.totalVus === vu % data.totalVus);
  }
  if (mine.length === 0) return;
  const i = next++ % mine.length;
  const res = refresh(mine[i]);
  if (checkTokenResponse(res, 'refresh during the flood')) mine[i] = body(res).refresh_token;
}

export const handleSummary = summaryWriter('login_flood');
