// Smoke: every flow of the mixed traffic (k6/lib/traffic.js) at a low
// constant arrival rate for a short while. Does each route answer what
// docs/api.md says, within the objective, and do the jobs drain?
//
//   BASE_URL          the origin under test (required); LOOPBACK_ONLY=1
//                     refuses anything but 127.0.0.1, ::1 and localhost
//   TENANT, EMAIL, PASSWORD, METRICS_KEY, PUSH_KEY, DRAIN_KEY (optional),
//   META_APP_SECRET (optional)   see k6/lib/auth.js and k6/lib/traffic.js
//   RATE=3            flows per second (about 1.4 requests each)
//   DURATION=30s      how long
//   PREALLOCATED_VUS=5, MAX_VUS=20
//   WEIGHTS           flow weights, e.g. "login=0,refresh=0" (k6/lib/traffic.js)
//   P95_MS=300        the p95 limit; ROUTE_P95_MS (unset) one per route too
//                     (k6/lib/thresholds.js)
//   DRAIN_TIMEOUT=120, DRAIN_STALL=3  the job drain (k6/lib/jobs.js)
//   BUILD             the build's name in the summary (default from GET /version)
//   SUMMARY_DIR=target/k6             where smoke.json and smoke.txt go
//
// scripts/k6-scenario.sh smoke runs it; docs/ops.md, "Load tests (k6)".
import { profiles } from './lib/config.js';
import { options as scenarioOptions, setupRun, teardownRun } from './lib/scenario.js';
import { summarize } from './lib/summary.js';
import { runFlow } from './lib/traffic.js';

const NAME = 'smoke';
const profile = profiles.smoke();

export const options = scenarioOptions(NAME, profile);

export function setup() {
  return setupRun();
}

export default function (data) {
  runFlow(data);
}

export function teardown(data) {
  teardownRun(data);
}

export function handleSummary(data) {
  return summarize(NAME, data, profile);
}
