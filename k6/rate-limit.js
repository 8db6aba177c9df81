// Does the limiter admit the configured rate? One anonymous client asks for
// GET /version (route class `public`) at twice the configured rate with a
// constant-arrival-rate executor; 429 is an expected answer here. The
// admitted rate must be within ±10 % of the configured one (the burst is
// admitted on top at the start), and every 429 must carry Retry-After and
// the RateLimit headers.
//
// Env: BASE_URL, RATE (configured per second), BURST, DURATION_S, TARGET.
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

const RATE = Number(__ENV.RATE || 10);
const BURST = Number(__ENV.BURST || 5);
const DURATION_S = Number(__ENV.DURATION_S || 20);
const expected = RATE * DURATION_S + BURST;
const slack = 0.1 * RATE * DURATION_S;

const admitted = new Counter('admitted');
const limited = new Counter('limited');

export const options = {
  scenarios: {
    twice_the_rate: {
      executor: 'constant-arrival-rate',
      rate: 2 * RATE,
      timeUnit: '1s',
      duration: `${DURATION_S}s`,
      preAllocatedVUs: 10,
      maxVUs: 40,
    },
  },
  thresholds: {
    admitted: [`count>=${Math.floor(expected - slack)}`, `count<=${Math.ceil(expected + slack)}`],
    limited: ['count>0'],
    checks: ['rate==1'],
  },
};

export default function () {
  const res = http.get(`${__ENV.BASE_URL}/version`, {
    responseCallback: http.expectedStatuses(200, 429),
  });
  if (res.status === 200) admitted.add(1);
  if (res.status === 429) limited.add(1);
  check(res, {
    'status is 200 or 429': (r) => r.status === 200 || r.status === 429,
    'RateLimit on every answer': (r) => (r.headers['Ratelimit'] || '').startsWith('"public";r='),
    '429 carries Retry-After': (r) => r.status !== 429 || Number(r.headers['Retry-After']) >= 1,
  });
}

export function handleSummary(data) {
  const ok = data.metrics.admitted ? data.metrics.admitted.values.count : 0;
  const refused = data.metrics.limited ? data.metrics.limited.values.count : 0;
  const rate = (ok - BURST) / DURATION_S;
  const deviation = ((rate - RATE) / RATE) * 100;
  const line =
    `${(__ENV.TARGET || '').padEnd(20)} offered ${2 * RATE}/s for ${DURATION_S}s: ` +
    `admitted ${ok} (burst ${BURST} + ${rate.toFixed(2)}/s vs configured ${RATE}/s, ` +
    `${deviation >= 0 ? '+' : ''}${deviation.toFixed(1)} %), refused ${refused}\n`;
  return { stdout: line };
}
