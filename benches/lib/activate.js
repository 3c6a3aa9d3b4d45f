// Activates every seeded session exactly once (GET /v1/auth/me with its access token), so
// sessiond holds one resident actor per seeded session. Count-bounded: SEED_FILE lines.
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';

const BASE_URL = __ENV.BASE_URL;
const tokens = new SharedArray('tokens', () =>
  open(__ENV.SEED_FILE).split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l).access_token));

export const options = {
  scenarios: {
    activate: {
      executor: 'shared-iterations',
      vus: 32,
      iterations: tokens.length,
      maxDuration: '30m',
    },
  },
  thresholds: { checks: ['rate==1'] },
};

export default function () {
  const res = http.get(`${BASE_URL}/v1/auth/me`, {
    headers: { authorization: `Bearer ${tokens[exec.scenario.iterationInTest]}` },
  });
  check(res, { 'me: 200': (r) => r.status === 200 });
}

export function handleSummary(data) {
  const c = data.metrics.checks ? data.metrics.checks.values : { passes: 0, fails: 0 };
  return { stdout: `activated ${c.passes} sessions (${c.fails} failed)\n` };
}
