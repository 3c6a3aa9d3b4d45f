// Seeds over HTTP when `sessiond seed` is not available: registers USERS users, logs each in
// SESSIONS_PER_USER times, and writes the same JSON lines `sessiond seed` writes to OUT.
// Slow with production argon2id parameters (two hashes per login): keep the counts small.
import { seedOverHttp, envInt } from '../../k6/lib/common.js';

export const options = { setupTimeout: '600s', iterations: 1, vus: 1 };

export function setup() {
  return seedOverHttp(__ENV.PREFIX || 'bench', envInt('USERS', 10), envInt('SESSIONS_PER_USER', 10));
}

export default function () {}

export function handleSummary(data) {
  const out = {};
  out[__ENV.OUT] = data.setup_data.map((s) => JSON.stringify(s)).join('\n') + '\n';
  out.stdout = `seeded ${data.setup_data.length} sessions over HTTP into ${__ENV.OUT}\n`;
  return out;
}
