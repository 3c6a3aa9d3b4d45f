// replay: consume a refresh token, replay it, and check the theft response end to end:
//   t0 → t1 → t2 by two rotations; replaying t0 (an ancestor: no grace window applies) must be
//   401 refresh_token_reused; from then on the session is compromised: the newest token t2 is
//   401 session_compromised, and so is the access token on GET /v1/auth/me.
// Correctness, not speed: every check must pass, in both profiles.
//
//   BASE_URL=... k6 run k6/replay.js            (seeds its own sessions over HTTP)
//   BASE_URL=... SEED_FILE=seeds.jsonl SEED_OFFSET=... k6 run k6/replay.js
//
// Env: ITERATIONS (sessions compromised, default smoke 10 / full 500), VUS.

import { check } from 'k6';
import exec from 'k6/execution';
import {
  EXPECT_401, SMOKE, body, checkTokenResponse, envInt, errorCode, loadSeedFile, me, pick, refresh,
  seeds, SUMMARY_TREND_STATS, summaryWriter,
} from './lib/common.js';

const ITERATIONS = envInt('ITERATIONS', pick(10, 500));
const VUS = Math.min(envInt('VUS', pick(2, 20)), ITERATIONS);
const fileSeeds = loadSeedFile('replay');

export const options = {
  setupTimeout: '300s',
  scenarios: {
    replay: {
      executor: 'shared-iterations',
      vus: VUS,
      iterations: ITERATIONS,
      maxDuration: pick('30s', '5m'),
    },
  },
  thresholds: Object.assign(
    {
      // Every step of every replay must behave: this is a security property.
      checks: ['rate==1'],
      http_req_failed: ['rate==0'],
      replays_detected: [`count==${ITERATIONS}`],
    },
    SMOKE ? {} : { 'http_req_duration{name:replay}': ['p(99)<50'] },
  ),
  summaryTrendStats: SUMMARY_TREND_STATS,
};

import { Counter } from 'k6/metrics';
const replaysDetected = new Counter('replays_detected');

export function setup() {
  return { sessions: seeds(fileSeeds, 'replay', ITERATIONS, 5) };
}

export default function (data) {
  const s = data.sessions[exec.scenario.iterationInTest];
  const t0 = s.refresh_token;
  const r1 = refresh(t0);
  if (!checkTokenResponse(r1, 'rotate t0')) return;
  const t1 = body(r1).refresh_token;
  const r2 = refresh(t1);
  if (!checkTokenResponse(r2, 'rotate t1')) return;
  const { refresh_token: t2, access_token: at } = body(r2);

  const replay = refresh(t0, { name: 'replay' }, { responseCallback: EXPECT_401 });
  const detected = check(replay, {
    'replayed ancestor: 401 refresh_token_reused': (r) => r.status === 401 && errorCode(r) === 'refresh_token_reused',
    'replay answer carries no tokens': (r) => !isTokenLike(r),
  });
  if (detected) replaysDetected.add(1);

  const newest = refresh(t2, { name: 'after_replay' }, { responseCallback: EXPECT_401 });
  check(newest, {
    'newest token after replay: 401 session_compromised': (r) => r.status === 401 && errorCode(r) === 'session_compromised',
  });
  const again = refresh(t1, { name: 'after_replay' }, { responseCallback: EXPECT_401 });
  check(again, {
    'previous token after replay: 401 (reused or compromised)': (r) =>
      r.status === 401 && ['session_compromised', 'refresh_token_reused'].includes(errorCode(r)),
  });
  const read = me(at, { name: 'me_after_replay' }, { responseCallback: EXPECT_401 });
  check(read, {
    'access token after replay: 401 session_compromised': (r) => r.status === 401 && errorCode(r) === 'session_compromised',
  });
}

function isTokenLike(res) {
  const b = body(res);
  return !!(b && (b.refresh_token || b.access_token));
}

export const handleSummary = summaryWriter('replay');
