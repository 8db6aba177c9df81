// Login latency: a constant-arrival-rate scenario whose iterations take
// turns between three cases — a correct password, a wrong password, and an
// email that does not exist — so each case meets the same load and none
// queues behind another by construction. Thresholds hold every case to
// p95 < 300 ms with no unexpected status; the summary prints p50/p95 per
// case beside the limit and the unknown-user/wrong-password ratio (≈1: no
// timing oracle). A short warm-up first (its own `warmup` case, outside the
// thresholds) lets the runtime compile the Wasm's hot code before
// measuring: the objective is about a serving API, not its first seconds.
//
// Env: BASE_URL, TENANT, EMAIL, PASSWORD, RATE (logins/s in all), DURATION,
// P95_MS (the limit, default 300), NOTE_FILE (one line for the gate table).
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';

const BASE_URL = __ENV.BASE_URL;
const RATE = Number(__ENV.RATE || 3);
const DURATION = __ENV.DURATION || '30s';
const P95_MS = Number(__ENV.P95_MS || 300);
const CASES = ['valid', 'wrong_password', 'unknown_user'];

export const options = {
  scenarios: {
    warmup: {
      executor: 'constant-arrival-rate',
      rate: 2,
      timeUnit: '1s',
      duration: '5s',
      preAllocatedVUs: 5,
      maxVUs: 20,
    },
    logins: {
      executor: 'constant-arrival-rate',
      startTime: '6s',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 10,
      maxVUs: 50,
    },
  },
  thresholds: Object.fromEntries([
    ...CASES.map((c) => [`http_req_duration{case:${c}}`, [`p(95)<${P95_MS}`]]),
    ['checks', ['rate==1']],
  ]),
  summaryTrendStats: ['med', 'p(95)', 'max', 'count'],
};

function login(kase, email, password, want) {
  const name = exec.scenario.name === 'warmup' ? 'warmup' : kase;
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
  const lines = ['', `Login latency (ms) under wrangler dev, ${RATE} logins/s for ${DURATION} after a warm-up`];
  lines.push(`${'case'.padEnd(16)}${'count'.padStart(7)}${'p50'.padStart(9)}${'p95'.padStart(9)}${'max'.padStart(9)}   p95 limit`);
  const worst = { name: '', p95: -1 };
  for (const name of CASES) {
    const v = row(name);
    if (!v) {
      lines.push(`${name.padEnd(16)} no samples: FAIL`);
      continue;
    }
    const p95 = v['p(95)'];
    if (p95 > worst.p95) Object.assign(worst, { name, p95 });
    const verdict = p95 < P95_MS ? 'ok' : 'FAIL';
    lines.push(`${name.padEnd(16)}${String(v.count).padStart(7)}${v.med.toFixed(1).padStart(9)}${p95.toFixed(1).padStart(9)}${v.max.toFixed(1).padStart(9)}   < ${P95_MS}: ${verdict}`);
  }
  const wrong = row('wrong_password');
  const unknown = row('unknown_user');
  let ratio = '';
  if (wrong && unknown) {
    ratio = (unknown.med / wrong.med).toFixed(2);
    lines.push(`unknown_user / wrong_password median ratio: ${ratio}`);
  }
  lines.push('');
  const valid = row('valid');
  const note = valid
    ? `valid p50 ${valid.med.toFixed(0)} / p95 ${valid['p(95)'].toFixed(0)} ms; worst p95 ${worst.p95.toFixed(0)} ms (${worst.name}) < ${P95_MS} ms; unknown/wrong ${ratio}`
    : 'no valid logins measured';
  const out = { stdout: lines.join('\n') };
  if (__ENV.NOTE_FILE) out[__ENV.NOTE_FILE] = `${note}\n`;
  return out;
}
