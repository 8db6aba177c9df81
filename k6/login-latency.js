// Login latency: one constant-arrival-rate scenario whose iterations take
// turns between three cases — a correct password, a wrong password, and an
// email that does not exist — so each case meets the same load and none
// queues behind another by construction. Thresholds hold every case to
// p95 < 300 ms with no unexpected status; the summary prints p50/p95 per
// case and the unknown-user/wrong-password ratio (≈1: no timing oracle).
//
// Env: BASE_URL, TENANT, EMAIL, PASSWORD, RATE (logins/s in all), DURATION.
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';

const BASE_URL = __ENV.BASE_URL;
const RATE = Number(__ENV.RATE || 3);
const DURATION = __ENV.DURATION || '20s';

export const options = {
  scenarios: {
    logins: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 10,
      maxVUs: 50,
    },
  },
  thresholds: {
    'http_req_duration{case:valid}': ['p(95)<300'],
    'http_req_duration{case:wrong_password}': ['p(95)<300'],
    'http_req_duration{case:unknown_user}': ['p(95)<300'],
    checks: ['rate==1'],
  },
  summaryTrendStats: ['med', 'p(95)', 'max', 'count'],
};

function login(name, email, password, want) {
  const res = http.post(
    `${BASE_URL}/v1/auth/login`,
    JSON.stringify({ tenant: __ENV.TENANT, email, password }),
    {
      headers: { 'content-type': 'application/json' },
      responseCallback: http.expectedStatuses(200, 401),
      tags: { case: name },
    },
  );
  check(res, { [`${name}: status ${want}`]: (r) => r.status === want });
}

export default function () {
  const i = exec.scenario.iterationInTest;
  switch (i % 3) {
    case 0:
      return login('valid', __ENV.EMAIL, __ENV.PASSWORD, 200);
    case 1:
      return login('wrong_password', __ENV.EMAIL, `${__ENV.PASSWORD}-wrong`, 401);
    default:
      return login('unknown_user', `nobody-${i}@example.invalid`, __ENV.PASSWORD, 401);
  }
}

export function handleSummary(data) {
  const row = (name) => {
    const m = data.metrics[`http_req_duration{case:${name}}`];
    return m ? m.values : null;
  };
  const lines = ['', 'Login latency (ms) under wrangler dev'];
  lines.push(`${'case'.padEnd(16)}${'count'.padStart(7)}${'p50'.padStart(9)}${'p95'.padStart(9)}${'max'.padStart(9)}`);
  for (const name of ['valid', 'wrong_password', 'unknown_user']) {
    const v = row(name);
    if (!v) continue;
    lines.push(`${name.padEnd(16)}${String(v.count).padStart(7)}${v.med.toFixed(1).padStart(9)}${v['p(95)'].toFixed(1).padStart(9)}${v.max.toFixed(1).padStart(9)}`);
  }
  const wrong = row('wrong_password');
  const unknown = row('unknown_user');
  if (wrong && unknown) {
    lines.push(`unknown_user / wrong_password median ratio: ${(unknown.med / wrong.med).toFixed(2)}`);
  }
  lines.push('');
  return { stdout: lines.join('\n') };
}
