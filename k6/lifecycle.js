// lifecycle: register → login → me → refresh ×N → list sessions → logout, with ramping VUs.
// Every step of a user's life, so a regression anywhere in the API shows up here first.
//
//   BASE_URL=http://127.0.0.1:8080 PROFILE=full k6 run k6/lifecycle.js
//
// Env: REFRESHES (refreshes per iteration, default 5), VUS (peak VUs, full profile, default 50).

import { check, group } from 'k6';
import { Counter } from 'k6/metrics';
import {
  DEFAULT_PASSWORD, EXPECT_401, RUN_ID, SMOKE, body, checkTokenResponse, envInt, errorCode, listSessions,
  login, logout, me, pick, refresh, register, SUMMARY_TREND_STATS, summaryWriter,
} from './lib/common.js';

const REFRESHES = envInt('REFRESHES', 5);
const PEAK = envInt('VUS', pick(2, 50));
const lifecycles = new Counter('lifecycles_completed');

export const options = {
  scenarios: {
    lifecycle: {
      executor: 'ramping-vus',
      startVUs: 1,
      stages: SMOKE
        ? [{ duration: '2s', target: PEAK }, { duration: '2s', target: PEAK }]
        : [
            { duration: '30s', target: PEAK },
            { duration: '60s', target: PEAK },
            { duration: '15s', target: 0 },
          ],
      gracefulRampDown: '5s',
      gracefulStop: '10s',
    },
  },
  thresholds: Object.assign(
    {
      checks: ['rate>0.99'],
      http_req_failed: ['rate<0.01'],
      lifecycles_completed: ['count>0'],
    },
    SMOKE
      ? {}
      : {
          // Latency: refresh and me are the hot paths; register/login pay argon2id twice.
          'http_req_duration{name:refresh}': ['p(99)<50'],
          'http_req_duration{name:me}': ['p(99)<50'],
          'http_req_duration{name:list_sessions}': ['p(99)<100'],
          'http_req_duration{name:logout}': ['p(99)<100'],
        },
  ),
  summaryTrendStats: SUMMARY_TREND_STATS,
};

export default function () {
  const email = `k6-life-${RUN_ID}-${__VU}-${__ITER}@example.com`;
  let tokens;
  group('register and login', () => {
    const r = register(email, DEFAULT_PASSWORD);
    check(r, { 'register: 201': (x) => x.status === 201 });
    const l = login(email, DEFAULT_PASSWORD);
    if (checkTokenResponse(l, 'login')) tokens = body(l);
  });
  if (!tokens) return;
  group('me', () => {
    const m = me(tokens.access_token);
    check(m, {
      'me: 200 with the same session': (x) => x.status === 200 && body(x).session.id === tokens.session.id,
    });
  });
  let ok = true;
  group('refresh', () => {
    for (let i = 0; i < REFRESHES && ok; i++) {
      const r = refresh(tokens.refresh_token);
      ok = checkTokenResponse(r, 'refresh') &&
        check(r, { 'refresh: a new refresh token': (x) => body(x).refresh_token !== tokens.refresh_token });
      if (ok) tokens = body(r);
    }
  });
  if (!ok) return;
  group('list and logout', () => {
    const s = listSessions(tokens.access_token);
    check(s, {
      'list: 200, current session listed': (x) =>
        x.status === 200 && body(x).sessions.some((e) => e.id === tokens.session.id && e.current),
    });
    const o = logout(tokens.access_token);
    check(o, { 'logout: 204': (x) => x.status === 204 });
    const after = me(tokens.access_token, {}, { responseCallback: EXPECT_401 });
    check(after, { 'me after logout: 401 session_revoked': (x) => x.status === 401 && errorCode(x) === 'session_revoked' });
  });
  lifecycles.add(1);
}

export const handleSummary = summaryWriter('lifecycle');
