// Load for the benchmarks (scripts/bench.sh, scripts/bench-seam.sh): one GET
// at a constant arrival rate.
//
//   BASE_URL       the server under test (loopback only), e.g. http://127.0.0.1:18787
//   URL_PATH       the path to GET (default /healthz; not PATH, which would
//                  replace the process's search path)
//   TOKEN          sent as `Authorization: Bearer <TOKEN>` when set
//   EXPECT_STATUS  the status every answer must have (default 200); any other
//                  counts as failed
//   RATE           requests per second (default 500)
//   DURATION       how long to hold the rate (default 10s)
//   SUMMARY_JSON   where handleSummary writes the end-of-test summary
//
// Thresholds make k6 exit 99 when crossed; the bench scripts record that
// instead of stopping, since a saturated server is itself a result.
import http from "k6/http";
import { check } from "k6";

const BASE_URL = __ENV.BASE_URL || "http://127.0.0.1:18787";
const PATH = __ENV.URL_PATH || "/healthz";
const TOKEN = __ENV.TOKEN || "";
const EXPECT_STATUS = Number(__ENV.EXPECT_STATUS || 200);
const RATE = Number(__ENV.RATE || 500);
const DURATION = __ENV.DURATION || "10s";

if (!/^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/.test(BASE_URL)) {
  throw new Error(`BASE_URL must be a loopback origin, got ${BASE_URL}`);
}
if (!/^\/[A-Za-z0-9._~\/-]*$/.test(PATH)) {
  throw new Error(`URL_PATH must be an absolute path without query, got ${PATH}`);
}
if (!(Number.isInteger(EXPECT_STATUS) && EXPECT_STATUS >= 100 && EXPECT_STATUS <= 599)) {
  throw new Error(`EXPECT_STATUS must be an HTTP status, got ${__ENV.EXPECT_STATUS}`);
}
if (!(RATE > 0 && RATE <= 20000)) {
  throw new Error(`RATE must be in 1..20000, got ${__ENV.RATE}`);
}

// The expected status is a success even when it is an error status (the
// no-database variant answers 503 on purpose); anything else is a failure.
http.setResponseCallback(http.expectedStatuses(EXPECT_STATUS));

const params = {
  headers: TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {},
  tags: { name: PATH },
};

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ["avg", "min", "med", "p(90)", "p(95)", "p(99)", "max"],
  scenarios: {
    load: {
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
  const res = http.get(`${BASE_URL}${PATH}`, params);
  check(res, { [`status is ${EXPECT_STATUS}`]: (r) => r.status === EXPECT_STATUS });
}

export function handleSummary(data) {
  const path = __ENV.SUMMARY_JSON || "bench-summary.json";
  const m = data.metrics;
  const line =
    `${BASE_URL}${PATH} rate=${RATE}/s reqs=${m.http_reqs.values.count} ` +
    `achieved=${m.http_reqs.values.rate.toFixed(1)}/s ` +
    `p95=${m.http_req_duration.values["p(95)"].toFixed(2)}ms ` +
    `failed=${(m.http_req_failed.values.rate * 100).toFixed(2)}%\n`;
  return { [path]: JSON.stringify(data, null, 2), stdout: line };
}
