// Load for scripts/bench-seam.sh: GET /healthz at a constant arrival rate.
//
//   BASE_URL      the server under test (loopback only), e.g. http://127.0.0.1:18787
//   RATE          requests per second (default 500)
//   DURATION      how long to hold the rate (default 10s)
//   SUMMARY_JSON  where handleSummary writes the end-of-test summary
//
// Thresholds make k6 exit 99 when crossed; the bench script records that
// instead of stopping, since a saturated server is itself a result.
import http from "k6/http";
import { check } from "k6";

const BASE_URL = __ENV.BASE_URL || "http://127.0.0.1:18787";
const RATE = Number(__ENV.RATE || 500);
const DURATION = __ENV.DURATION || "10s";

if (!/^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/.test(BASE_URL)) {
  throw new Error(`BASE_URL must be a loopback origin, got ${BASE_URL}`);
}
if (!(RATE > 0 && RATE <= 20000)) {
  throw new Error(`RATE must be in 1..20000, got ${__ENV.RATE}`);
}

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ["avg", "min", "med", "p(90)", "p(95)", "p(99)", "max"],
  scenarios: {
    healthz: {
      executor: "constant-arrival-rate",
      rate: RATE,
      timeUnit: "1s",
      duration: DURATION,
      // Enough VUs up front for ~100 ms of latency at this rate, so k6 does
      // not have to start VUs mid-run.
      preAllocatedVUs: Math.max(20, Math.ceil(RATE / 10)),
      maxVUs: Math.max(100, RATE),
      gracefulStop: "5s",
    },
  },
  thresholds: {
    http_req_failed: ["rate<0.01"],
    checks: ["rate>0.99"],
    http_req_duration: ["p(95)<50"],
    // Arrivals k6 could not start because every VU was busy: the server fell behind.
    dropped_iterations: [`count<${Math.ceil(RATE * 0.01)}`],
  },
};

export default function () {
  const res = http.get(`${BASE_URL}/healthz`, { tags: { name: "healthz" } });
  check(res, { "status is 200": (r) => r.status === 200 });
}

export function handleSummary(data) {
  const path = __ENV.SUMMARY_JSON || "bench-seam-summary.json";
  const m = data.metrics;
  const line =
    `${BASE_URL} rate=${RATE}/s reqs=${m.http_reqs.values.count} ` +
    `achieved=${m.http_reqs.values.rate.toFixed(1)}/s ` +
    `p95=${m.http_req_duration.values["p(95)"].toFixed(2)}ms ` +
    `failed=${(m.http_req_failed.values.rate * 100).toFixed(2)}%\n`;
  return { [path]: JSON.stringify(data, null, 2), stdout: line };
}
