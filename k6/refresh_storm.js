// refresh_storm: many pre-created sessions refreshing at a constant arrival rate.
// Each VU owns a disjoint set of sessions (index ≡ VU-1 mod MAX_VUS) and walks them round-robin,
// keeping each session's newest refresh token, so no token is ever replayed by the test itself.
//
//   sessiond seed --users 1000 --sessions-per-user 10 --out seeds.jsonl --password '...'
//   BASE_URL=... SEED_FILE=seeds.jsonl RATE=2000 k6 run k6/refresh_storm.js
//
// Env: RATE (refreshes/s), DURATION, SESSIONS (sessions used; ≤ seed lines), MAX_VUS,
// P99_MS (full-profile p99 threshold, default 20).

import { check, fail } from 'k6';
import exec from 'k6/execution';
import {
  body, checkTokenResponse, constantRateOptions, envInt, errorCode, loadSeedFile, pick, refresh, seeds,
  summaryWriter,
} from './lib/common.js';

const RATE = envInt('RATE', pick(20, 1000));
const DURATION = __ENV.DURATION || pick('4s', '60s');
const MAX_VUS = envInt('MAX_VUS', pick(4, 200));
const SESSIONS = envInt('SESSIONS', pick(20, 10000));
const P99_MS = envInt('P99_MS', 20);
const fileSeeds = loadSeedFile('refresh_storm');

export const options = constantRateOptions('refresh_storm', 'refresh', {
  rate: RATE,
  duration: DURATION,
  maxVus: MAX_VUS,
  p99Ms: P99_MS,
});

export function setup() {
  if (SESSIONS < MAX_VUS) fail(`SESSIONS (${SESSIONS}) must be at least MAX_VUS (${MAX_VUS})`);
  return { sessions: seeds(fileSeeds, 'storm', SESSIONS, 10).map((s) => s.refresh_token) };
}

// Per-VU state (every VU has its own JavaScript runtime).
let mine = null;
let next = 0;

export default function (data) {
  if (mine === null) {
    const vu = exec.vu.idInTest - 1;
    mine = data.sessions.filter((_, i) => i % MAX_VUS === vu % MAX_VUS);
  }
  if (mine.length === 0) return;
  const i = next++ % mine.length;
  const res = refresh(mine[i]);
  if (checkTokenResponse(res, 'refresh')) {
    mine[i] = body(res).refresh_token;
  } else {
    // Keep the old token: a retry inside the grace window is answered with the same child.
    check(res, { 'refresh: no session ended': () => !/^session_|refresh_token_reused/.test(errorCode(res) || '') });
  }
}

export const handleSummary = summaryWriter('refresh_storm');
