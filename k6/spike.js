// Spike: the mixed traffic (k6/lib/traffic.js) at a low rate, then a
// sudden burst (reached within 2 s), then the low rate again. Does the API
// absorb the burst, and does latency come back down after it? Requests are
// tagged with their phase (before, spike, after); the summary prints each.
//
// Here, and only here, 429 is an expected answer: a burst is what the rate
// limiter is for. A 429 must carry Retry-After (a check) and ends its flow;
// 429s are counted per phase. SPIKE_ALLOW_429=0 counts them as failures.
//
//   BASE_URL          the origin under test (required); LOOPBACK_ONLY=1
//                     refuses anything but 127.0.0.1, ::1 and localhost
//   TENANT, EMAIL, PASSWORD, METRICS_KEY, PUSH_KEY, DRAIN_KEY (optional),
//   META_APP_SECRET (optional)   see k6/lib/auth.js and k6/lib/traffic.js
//   RATE=2            flows per second before and after (about 1.4 requests each)
//   SPIKE_RATE=10×RATE  flows per second during the spike
//   BEFORE=20s, SPIKE_DURATION=20s, AFTER=30s   the phases
//   PREALLOCATED_VUS=10, MAX_VUS=max(60, 4 × SPIKE_RATE)
//   WEIGHTS           flow weights, e.g. "login=0,refresh=0" (k6/lib/traffic.js)
//   P95_MS=300        the p95 limit; ROUTE_P95_MS (unset) one per route too
//                     (k6/lib/thresholds.js)
//   DRAIN_TIMEOUT=120, DRAIN_STALL=3  the job drain (k6/lib/jobs.js)
//   BUILD             the build's name in the summary (default from GET /version)
//   SUMMARY_DIR=target/k6             where spike.json and spike.txt go
//
// scripts/k6-scenario.sh spike runs it; docs/ops.md, "Load tests (k6)".
import { profiles } from './lib/config.js';
import { allow429 } from './lib/http.js';
import { options as scenarioOptions, setupRun, teardownRun } from './lib/scenario.js';
import { summarize, tagWindow, windowRows, windowTable } from './lib/summary.js';
import { runFlow } from './lib/traffic.js';

const NAME = 'spike';
const TAG = 'phase';
const profile = profiles.spike();
allow429(__ENV.SPIKE_ALLOW_429 !== '0');

export const options = scenarioOptions(NAME, profile, TAG);

export function setup() {
  return setupRun();
}

export default function (data) {
  tagWindow(profile.windows, TAG);
  runFlow(data);
}

export function teardown(data) {
  teardownRun(data);
}

export function handleSummary(data) {
  const rows = windowRows(data.metrics, profile.windows, TAG);
  const text = ['phases (flows/s and req/s achieved)', ...windowTable(rows, TAG)];
  const before = rows.find((r) => r.phase === 'before');
  const after = rows.find((r) => r.phase === 'after');
  if (before && after && before.p95 !== null && after.p95 !== null) {
    text.push(`after the spike p95 is ${after.p95.toFixed(1)} ms against ${before.p95.toFixed(1)} ms before it`);
  }
  return summarize(NAME, data, profile, { json: { phases: rows }, text });
}
