// concurrent_refresh: many VUs present ONE shared refresh token at the same instant.
// All must succeed with the same new token, and exactly one rotation may happen.
//
// Round r uses its own session. Every VU waits for the round's start instant (a wall-clock
// barrier, so the requests overlap), refreshes the shared token, and after a settle time
// presents the shared token once more. That second answer must be 200 with the very token the
// VU got first: the shared token is then still the *previous* generation inside the grace
// window, which holds only if exactly one rotation happened (after two rotations it would be
// an ancestor and answer refresh_token_reused), and the VU's first answer equals the session's
// single current token — so all VUs' answers are identical. When /metrics exposes
// sessiond_refresh_total{outcome="rotated"}, teardown also checks the rotation count equals the
// number of rounds (only valid when nothing else refreshes on that server meanwhile).
//
//   BASE_URL=... k6 run k6/concurrent_refresh.js
//
// Env: VUS (concurrent refreshers, default smoke 10 / full 100), ROUNDS (default smoke 3 /
// full 20), ROUND_MS (time between rounds, default 1500), SETTLE_MS (default 500; must stay well
// under SESSIOND_GRACE_WINDOW), CHECK_METRICS (1 = require the metric, 0 = skip; default: use
// it if present).

import { check, fail, sleep } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import {
  SMOKE, body, checkTokenResponse, envInt, loadSeedFile, pick, readMetric, refresh, seeds,
  SUMMARY_TREND_STATS, summaryWriter,
} from './lib/common.js';

const VUS = envInt('VUS', pick(10, 100));
const ROUNDS = envInt('ROUNDS', pick(3, 20));
const ROUND_MS = envInt('ROUND_MS', 1500);
const SETTLE_MS = envInt('SETTLE_MS', 500);
const fileSeeds = loadSeedFile('concurrent_refresh');
const identical = new Counter('identical_answers');

export const options = {
  setupTimeout: '120s',
  scenarios: {
    concurrent_refresh: {
      executor: 'per-vu-iterations',
      vus: VUS,
      iterations: ROUNDS,
      maxDuration: `${Math.ceil((ROUNDS * ROUND_MS + 30000) / 1000)}s`,
    },
  },
  thresholds: Object.assign(
    {
      checks: ['rate==1'],
      http_req_failed: ['rate==0'],
      identical_answers: [`count==${VUS * ROUNDS}`],
    },
    SMOKE ? {} : { 'http_req_duration{name:concurrent_refresh}': ['p(99)<100'] },
  ),
  summaryTrendStats: SUMMARY_TREND_STATS,
};

const ROTATED = ['sessiond_refresh_total', { outcome: 'rotated' }];

export function setup() {
  const tokens = seeds(fileSeeds, 'concurrent', ROUNDS, ROUNDS).map((s) => s.refresh_token);
  const rotatedBefore = readMetric(...ROTATED);
  // Start the first round once every VU is surely running.
  return { tokens, start: Date.now() + 1000, rotatedBefore };
}

function waitUntil(t) {
  const ms = t - Date.now();
  if (ms > 0) sleep(ms / 1000);
}

export default function (data) {
  const round = exec.vu.iterationInScenario;
  const shared = data.tokens[round];
  const t = data.start + round * ROUND_MS;
  waitUntil(t);
  const first = refresh(shared, { name: 'concurrent_refresh' });
  if (!checkTokenResponse(first, 'concurrent refresh')) return;
  const child = body(first).refresh_token;
  check(first, { 'concurrent refresh: a new token': () => child !== shared });
  waitUntil(t + SETTLE_MS);
  const again = refresh(shared, { name: 'grace_retry' });
  const same = checkTokenResponse(again, 'retry of the shared token after the storm') &&
    check(again, {
      'retry after the storm: the same token as this VU got (one rotation, identical answers)': (r) =>
        body(r).refresh_token === child,
    });
  if (same) identical.add(1);
}

export function teardown(data) {
  const after = readMetric(...ROTATED);
  const want = __ENV.CHECK_METRICS;
  if (data.rotatedBefore === null || after === null) {
    if (want === '1') fail('CHECK_METRICS=1 but sessiond_refresh_total{outcome="rotated"} is not served on /metrics');
    console.log('concurrent_refresh: /metrics has no sessiond_refresh_total{outcome="rotated"}; rotation count not checked');
    return;
  }
  if (want === '0') return;
  check(after - data.rotatedBefore, {
    'exactly one rotation per round (sessiond_refresh_total{outcome="rotated"})': (d) => d === ROUNDS,
  });
}

export const handleSummary = summaryWriter('concurrent_refresh');
