// Stress: the mixed traffic (k6/lib/traffic.js) at an arrival rate that
// climbs in steps, to find the knee: the rate at which p95 crosses P95_MS
// (300 ms) or errors cross 1 %. Each step ramps for RAMP, then holds for
// STAGE; requests are tagged with the stage their iteration started in
// (stage=1, 2, …; `ramp` between), and the summary prints each stage's
// achieved rate, latency and errors, and the knee when the data shows one.
// Past the knee the thresholds fail (k6 exits 99): that is the finding.
//
//   BASE_URL          the origin under test (required); LOOPBACK_ONLY=1
//                     refuses anything but 127.0.0.1, ::1 and localhost
//   TENANT, EMAIL, PASSWORD, METRICS_KEY, PUSH_KEY, DRAIN_KEY (optional),
//   META_APP_SECRET (optional)   see k6/lib/auth.js and k6/lib/traffic.js
//   RATE=5            flows per second of the first stage (about 1.4
//                     requests each)
//   STEP=RATE         added at each stage
//   MAX_RATE=40       the last stage's rate (at most)
//   STAGE=30s         each stage's hold; RAMP=5s each step's ramp
//   PREALLOCATED_VUS=10, MAX_VUS=max(50, 4 × MAX_RATE)
//   WEIGHTS           flow weights, e.g. "login=0,refresh=0" (k6/lib/traffic.js)
//   P95_MS=300        the p95 limit; ROUTE_P95_MS (unset) one per route too
//                     (k6/lib/thresholds.js)
//   DRAIN_TIMEOUT=120, DRAIN_STALL=3  the job drain (k6/lib/jobs.js)
//   BUILD             the build's name in the summary (default from GET /version)
//   SUMMARY_DIR=target/k6             where stress.json and stress.txt go
//
// scripts/k6-scenario.sh stress runs it; docs/ops.md, "Load tests (k6)".
import { profiles } from './lib/config.js';
import { options as scenarioOptions, setupRun, teardownRun } from './lib/scenario.js';
import { MAX_ERROR_RATE, P95_MS, summarize, tagWindow, windowRows, windowTable } from './lib/summary.js';
import { runFlow } from './lib/traffic.js';

const NAME = 'stress';
const TAG = 'stage';
const profile = profiles.stress();

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

const crossed = (r) => r.p95 >= P95_MS || r.error_rate >= MAX_ERROR_RATE;

export function knee(rows) {
  const measured = rows.filter((r) => r.requests > 0);
  const i = measured.findIndex(crossed);
  const pick = (r) => r && { stage: r.stage, target_flows_per_s: r.target_flows_per_s, rate: r.rate, p95: r.p95, error_rate: r.error_rate };
  if (i < 0) return { knee: null, last_good: pick(measured[measured.length - 1]) };
  const r = measured[i];
  const good = measured[i - 1];
  const why = [];
  if (r.p95 >= P95_MS) why.push(`p95 ${r.p95.toFixed(1)} ms >= ${P95_MS} ms`);
  if (r.error_rate >= MAX_ERROR_RATE) why.push(`errors ${(r.error_rate * 100).toFixed(2)} % >= ${MAX_ERROR_RATE * 100} %`);
  // Where the line between the last good stage and this one meets the
  // limit: an estimate of the achieved rate at the knee.
  let estimate = null;
  if (good) {
    const at = (key, limit) =>
      r[key] >= limit && r[key] > good[key] ? good.rate + ((limit - good[key]) / (r[key] - good[key])) * (r.rate - good.rate) : Infinity;
    const x = Math.min(at('p95', P95_MS), at('error_rate', MAX_ERROR_RATE));
    if (Number.isFinite(x)) estimate = Math.round(x * 10) / 10;
  }
  return { knee: { ...pick(r), reason: why.join(' and '), estimated_rate: estimate }, last_good: pick(good) };
}

export function handleSummary(data) {
  const rows = windowRows(data.metrics, profile.windows, TAG);
  const k = knee(rows);
  const text = ['stages (each hold; flows/s and req/s achieved)', ...windowTable(rows, TAG)];
  const behind = rows.filter((r) => r.requests > 0 && r.flows_per_s < 0.9 * r.target_flows_per_s);
  if (behind.length) {
    text.push(`k6 fell behind the target at stage ${behind.map((r) => r.stage).join(', ')} (all VUs busy: the server, or this machine, saturated)`);
  }
  if (k.knee) {
    text.push(
      `knee: stage ${k.knee.stage} (target ${k.knee.target_flows_per_s} flows/s) achieved ${k.knee.rate.toFixed(1)} req/s with ${k.knee.reason}` +
        (k.last_good ? `; the last stage within the limits, ${k.last_good.stage}, achieved ${k.last_good.rate.toFixed(1)} req/s (p95 ${k.last_good.p95.toFixed(1)} ms)` : '; no stage was within the limits'),
    );
    if (k.knee.estimated_rate !== null) {
      text.push(`the limit is crossed at about ${k.knee.estimated_rate.toFixed(1)} req/s (linear between the two stages)`);
    }
  } else if (k.last_good) {
    text.push(
      `no knee up to ${k.last_good.target_flows_per_s} flows/s: every stage kept p95 under ${P95_MS} ms and errors under ${MAX_ERROR_RATE * 100} % ` +
        `(highest stage achieved ${k.last_good.rate.toFixed(1)} req/s, p95 ${k.last_good.p95.toFixed(1)} ms); raise MAX_RATE to find it`,
    );
  }
  return summarize(NAME, data, profile, { json: { stages: rows, knee: k.knee, last_good: k.last_good }, text });
}
