// Does the limiter admit the configured rate? One anonymous client asks for
// GET /version (route class `public`) at twice the configured rate with a
// constant-arrival-rate executor; 429 is an expected answer here, and every
// 429 must carry Retry-After and the RateLimit headers (k6 thresholds).
// Every request claims another client address in CF-Connecting-IP and
// X-Forwarded-For: neither is believed here (TRUST_PLATFORM_PEER=false, no
// TRUSTED_PROXIES), so the one client still gets one budget; were either
// believed, nothing would be limited and the check below would fail.
//
// What GCRA should admit depends on how long the limiter was asked, not on
// how long k6 meant to ask: a busy machine answers late, and requests that
// queue behind a stall reach the limiter together. So the script records
// when each answer came and writes the span from the first to the last with
// the counts to SUMMARY_FILE; scripts/rate-limit-check.sh judges
// (burst + rate × span, ±10 %) and prints the figure beside the threshold.
//
// Env: BASE_URL, RATE (configured per second), BURST, DURATION_S, TARGET,
// SUMMARY_FILE.
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';

const RATE = Number(__ENV.RATE || 10);
const DURATION_S = Number(__ENV.DURATION_S || 20);

const admitted = new Counter('admitted');
const limited = new Counter('limited');
// Epoch milliseconds of each answer: min and max give the span.
const answeredAt = new Trend('answered_at');

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
    limited: ['count>0'],
    checks: ['rate==1'],
  },
  summaryTrendStats: ['min', 'max', 'p(95)'],
};

export default function () {
  const claimed = `198.51.100.${(__VU * 7 + __ITER) % 254 + 1}`;
  const res = http.get(`${__ENV.BASE_URL}/version`, {
    headers: { 'CF-Connecting-IP': claimed, 'X-Forwarded-For': claimed },
    responseCallback: http.expectedStatuses(200, 429),
  });
  answeredAt.add(Date.now());
  if (res.status === 200) admitted.add(1);
  if (res.status === 429) limited.add(1);
  check(res, {
    'status is 200 or 429': (r) => r.status === 200 || r.status === 429,
    'RateLimit on every answer': (r) => (r.headers['Ratelimit'] || '').startsWith('"public";r='),
    '429 carries Retry-After': (r) => r.status !== 429 || Number(r.headers['Retry-After']) >= 1,
  });
}

export function handleSummary(data) {
  const count = (name) => (data.metrics[name] ? data.metrics[name].values.count : 0);
  const at = data.metrics.answered_at ? data.metrics.answered_at.values : { min: 0, max: 0 };
  const summary = {
    target: __ENV.TARGET || '',
    admitted: count('admitted'),
    limited: count('limited'),
    span_s: (at.max - at.min) / 1000,
    p95_ms: data.metrics.http_req_duration.values['p(95)'],
    dropped: count('dropped_iterations'),
  };
  return { [__ENV.SUMMARY_FILE || 'rate-limit-summary.json']: JSON.stringify(summary) };
}
