// handleSummary() of every scenario: writes SUMMARY_DIR/<scenario>.json,
// a compact summary, and SUMMARY_DIR/<scenario>.txt, the same as a table
// (also printed to stdout in place of k6's own summary).
//
// The JSON (scripts/k6-compare.py reads it; its `error_rate`, `rate`,
// `routes` and `jobs` are what a baseline keeps):
//
//   scenario, build (BUILD, else from GET /version: workers or spin),
//   revision (GET /version's git_revision), base_url, started (ISO 8601),
//   duration_s (the load, without setup and the drain), run_s (all of it),
//   rate (requests/s achieved over duration_s), error_rate (share of
//   failed requests), requests, p50/p95/p99 (ms, every request of the
//   load), checks (share passed), dropped_iterations, rate_limited (429s),
//   routes: {"<METHOD pattern>": {p50, p95, p99 (ms), count, error_rate}},
//   jobs: {"<queue>": {lag_p95_s, failed, processed, depth}},
//   jobs_drained (the depth reached 0), thresholds_ok, thresholds_failed,
//   and per scenario: stages and knee (stress), phases (spike).
//
// Figures of the load are of the k6 scenario's requests only; the route
// rows also count setup()'s requests on their routes (one login).
import exec from 'k6/execution';
import { BASE_URL, SUMMARY_DIR } from './config.js';
import { jobsFromSummary, QUEUES } from './jobs.js';
import { MAX_ERROR_RATE, P95_MS } from './thresholds.js';
import { ROUTES } from './traffic.js';

// At the start of each iteration: tags its requests with the window (a
// stress stage, a spike phase) the iteration started in; `ramp` between.
export function tagWindow(windows, tagName) {
  if (!windows.length) return;
  const elapsed = (Date.now() - exec.scenario.startTime) / 1000;
  const w = windows.find((x) => elapsed >= x.from && elapsed < x.to);
  exec.vu.metrics.tags[tagName] = w ? w.tag : 'ramp';
}

const round = (x, digits = 2) => (x === null || x === undefined || Number.isNaN(x) ? null : Number(x.toFixed(digits)));
const values = (metrics, name) => (metrics[name] ? metrics[name].values : null);

function routes(metrics) {
  const out = {};
  for (const route of Object.values(ROUTES)) {
    const d = values(metrics, `http_req_duration{name:${route}}`);
    if (!d || !d.count) continue;
    const f = values(metrics, `http_req_failed{name:${route}}`);
    out[route] = {
      p50: round(d.med),
      p95: round(d['p(95)']),
      p99: round(d['p(99)']),
      count: d.count,
      error_rate: round(f ? f.rate : 0, 5),
    };
  }
  return out;
}

function thresholdResults(metrics) {
  const failed = [];
  const all = [];
  for (const [name, m] of Object.entries(metrics)) {
    for (const [expr, t] of Object.entries(m.thresholds || {})) {
      // Conditions that always hold only keep a sub-metric: not shown.
      if (/^(count>=0|max>=0|rate>=0)$/.test(expr)) continue;
      all.push({ name, expr, ok: t.ok, m });
      if (!t.ok) failed.push(`${name} ${expr}`);
    }
  }
  all.sort((a, b) => a.name.localeCompare(b.name));
  return { all, failed };
}

// The observed figure a threshold looked at, for the table.
function observed(m, expr) {
  const v = m.values;
  const stat = /^([a-z]+(?:\(\d+(?:\.\d+)?\))?)/.exec(expr)[1];
  const x = v[stat];
  if (x === undefined) return '';
  if (m.contains === 'time' && v.count === 0) return 'no requests';
  if (m.type === 'rate') return `${(x * 100).toFixed(2)} %`;
  if (m.contains === 'time') return `${x.toFixed(1)} ms`;
  return String(round(x, 3));
}

// The per-window rows (stress stages, spike phases).
export function windowRows(metrics, windows, tagName) {
  return windows.map((w) => {
    const secs = w.to - w.from;
    const reqs = values(metrics, `http_reqs{${tagName}:${w.tag}}`);
    const iters = values(metrics, `iterations{${tagName}:${w.tag}}`);
    const d = values(metrics, `http_req_duration{${tagName}:${w.tag}}`);
    const f = values(metrics, `http_req_failed{${tagName}:${w.tag}}`);
    const l = values(metrics, `rate_limited{${tagName}:${w.tag}}`);
    return {
      [tagName]: w.tag,
      target_flows_per_s: w.target,
      flows_per_s: round((iters ? iters.count : 0) / secs),
      rate: round((reqs ? reqs.count : 0) / secs),
      requests: reqs ? reqs.count : 0,
      p50: d ? round(d.med) : null,
      p95: d ? round(d['p(95)']) : null,
      p99: d ? round(d['p(99)']) : null,
      error_rate: f ? round(f.rate, 5) : null,
      rate_limited: l ? l.count : 0,
    };
  });
}

export function windowTable(rows, tagName) {
  const lines = [
    `${tagName.padEnd(8)}${'target'.padStart(8)}${'flows/s'.padStart(9)}${'req/s'.padStart(9)}${'requests'.padStart(10)}` +
      `${'p50'.padStart(9)}${'p95'.padStart(9)}${'p99'.padStart(9)}${'errors'.padStart(9)}${'429s'.padStart(7)}`,
  ];
  const ms = (x) => (x === null ? '-' : x.toFixed(1));
  for (const r of rows) {
    lines.push(
      `${String(r[tagName]).padEnd(8)}${String(r.target_flows_per_s).padStart(8)}${r.flows_per_s.toFixed(1).padStart(9)}` +
        `${r.rate.toFixed(1).padStart(9)}${String(r.requests).padStart(10)}${ms(r.p50).padStart(9)}${ms(r.p95).padStart(9)}` +
        `${ms(r.p99).padStart(9)}${(r.error_rate === null ? '-' : `${(r.error_rate * 100).toFixed(2)}%`).padStart(9)}${String(r.rate_limited).padStart(7)}`,
    );
  }
  return lines;
}

// summarize(scenario, data, profile, {json, text}) → handleSummary's answer.
// extra.json is merged into the JSON; extra.text lines follow the tables.
export function summarize(scenario, data, profile, extra = {}) {
  const m = data.metrics;
  const setup = data.setup_data || {};
  const reqs = values(m, `http_reqs{scenario:${scenario}}`);
  const dur = values(m, `http_req_duration{scenario:${scenario}}`);
  const failed = values(m, `http_req_failed{scenario:${scenario}}`);
  const checks = values(m, 'checks');
  const dropped = values(m, 'dropped_iterations');
  const limited = values(m, 'rate_limited');
  const jobs = jobsFromSummary(m);
  const { all, failed: failedThresholds } = thresholdResults(m);
  const runS = data.state.testRunDurationMs / 1000;

  const summary = {
    scenario,
    build: setup.build || __ENV.BUILD || 'unknown',
    revision: setup.revision || null,
    base_url: BASE_URL,
    started: setup.started || new Date(Date.now() - data.state.testRunDurationMs).toISOString(),
    duration_s: round(profile.seconds, 1),
    run_s: round(runS, 1),
    rate: round((reqs ? reqs.count : 0) / profile.seconds, 3),
    error_rate: round(failed ? failed.rate : 0, 5),
    requests: reqs ? reqs.count : 0,
    p50: dur ? round(dur.med) : null,
    p95: dur ? round(dur['p(95)']) : null,
    p99: dur ? round(dur['p(99)']) : null,
    checks: round(checks ? checks.rate : 0, 5),
    dropped_iterations: dropped ? dropped.count : 0,
    rate_limited: limited ? limited.count : 0,
    routes: routes(m),
    jobs: Object.fromEntries(Object.entries(jobs.queues).map(([q, j]) => [q, { ...j, lag_p95_s: round(j.lag_p95_s, 3) }])),
    jobs_drained: jobs.undrained === 0,
    thresholds_ok: failedThresholds.length === 0,
    thresholds_failed: failedThresholds,
    ...(extra.json || {}),
  };

  const pct = (x) => (x === null ? '-' : `${(x * 100).toFixed(2)} %`);
  const ms = (x) => (x === null ? '-' : x.toFixed(1));
  const L = [];
  L.push(`Tepi load test: ${scenario} against ${BASE_URL} (build ${summary.build}${summary.revision ? `, revision ${summary.revision}` : ''})`);
  L.push(`started ${summary.started}; load ${profile.describe}; the run took ${runS.toFixed(1)} s with setup and the drain`);
  L.push('');
  L.push(`${'route'.padEnd(38)}${'count'.padStart(7)}${'p50 ms'.padStart(9)}${'p95 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'errors'.padStart(10)}`);
  for (const [route, r] of Object.entries(summary.routes)) {
    L.push(`${route.padEnd(38)}${String(r.count).padStart(7)}${ms(r.p50).padStart(9)}${ms(r.p95).padStart(9)}${ms(r.p99).padStart(9)}${pct(r.error_rate).padStart(10)}`);
  }
  L.push(
    `${'all requests of the load'.padEnd(38)}${String(summary.requests).padStart(7)}${ms(summary.p50).padStart(9)}${ms(summary.p95).padStart(9)}` +
      `${ms(summary.p99).padStart(9)}${pct(summary.error_rate).padStart(10)}`,
  );
  L.push(
    `achieved ${summary.rate.toFixed(1)} requests/s over ${summary.duration_s} s; checks ${pct(summary.checks)} passed; ` +
      `dropped iterations ${summary.dropped_iterations}; 429 answers ${summary.rate_limited}`,
  );
  const count = (name) => (values(m, name) ? values(m, name).count : 0);
  if (count('flows_skipped') || count('flows_without_token')) {
    L.push(`flows that found nothing to act on: ${count('flows_skipped')}; flows without a token (renewal refused): ${count('flows_without_token')}`);
  }
  L.push('');
  if (jobs.undrained === null) {
    L.push('jobs: not measured (no METRICS_KEY, or GET /metrics/workers failed)');
  } else {
    L.push(
      `jobs: ${jobs.undrained === 0 ? 'drained' : `NOT drained (depth ${jobs.undrained} left)`} ` +
        `${jobs.seconds.toFixed(1)} s after the load${jobs.drainCalls ? `, with ${jobs.drainCalls} POST /v1/jobs/drain` : ''}`,
    );
    L.push(`${'queue'.padEnd(16)}${'processed'.padStart(10)}${'failed'.padStart(8)}${'lag p95 s'.padStart(11)}${'depth'.padStart(7)}`);
    for (const q of QUEUES) {
      const j = summary.jobs[q];
      if (!j) continue;
      L.push(
        `${q.padEnd(16)}${String(j.processed).padStart(10)}${String(j.failed).padStart(8)}` +
          `${(j.lag_p95_s === null ? '-' : j.lag_p95_s.toFixed(3)).padStart(11)}${String(j.depth).padStart(7)}`,
      );
    }
  }
  if (extra.text && extra.text.length) {
    L.push('');
    L.push(...extra.text);
  }
  L.push('');
  L.push('thresholds');
  for (const t of all) {
    L.push(`  ${t.ok ? 'ok  ' : 'FAIL'} ${`${t.name} ${t.expr}`.padEnd(66)} ${observed(t.m, t.expr)}`);
  }
  L.push(summary.thresholds_ok ? 'result: every threshold held' : `result: ${failedThresholds.length} threshold(s) crossed`);
  L.push(`summary: ${SUMMARY_DIR}/${scenario}.json, ${SUMMARY_DIR}/${scenario}.txt`);
  const text = `${L.join('\n')}\n`;

  return {
    stdout: `\n${text}`,
    [`${SUMMARY_DIR}/${scenario}.json`]: `${JSON.stringify(summary, null, 2)}\n`,
    [`${SUMMARY_DIR}/${scenario}.txt`]: text,
  };
}

export { MAX_ERROR_RATE, P95_MS };
