// me_read: authenticated reads (GET /v1/auth/me) at a constant arrival rate over many sessions.
//
//   BASE_URL=... SEED_FILE=seeds.jsonl RATE=5000 k6 run k6/me_read.js
//
// Env: RATE (reads/s), DURATION, SESSIONS, MAX_VUS, P99_MS (full-profile p99 threshold, default 5).
// The read never consumes a token, so one seed file can be reused by many runs.

import { check } from 'k6';
import {
  body, constantRateOptions, envInt, loadSeedFile, me, pick, seeds, summaryWriter,
} from './lib/common.js';

const RATE = envInt('RATE', pick(30, 2000));
const DURATION = __ENV.DURATION || pick('4s', '60s');
const MAX_VUS = envInt('MAX_VUS', pick(4, 200));
const SESSIONS = envInt('SESSIONS', pick(10, 10000));
const P99_MS = envInt('P99_MS', 5);
const fileSeeds = loadSeedFile('me_read');

export const options = constantRateOptions('me_read', 'me', {
  rate: RATE,
  duration: DURATION,
  maxVus: MAX_VUS,
  p99Ms: P99_MS,
});

export function setup() {
  return { sessions: seeds(fileSeeds, 'me', SESSIONS, 10).map((s) => [s.access_token, s.session_id]) };
}

export default function (data) {
  const [token, sid] = data.sessions[(__ITER * 7919 + __VU) % data.sessions.length];
  const res = me(token);
  check(res, { 'me: 200 with its session': (r) => r.status === 200 && body(r).session.id === sid });
}

export const handleSummary = summaryWriter('me_read');
