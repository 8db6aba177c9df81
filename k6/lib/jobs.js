// The background jobs a run leaves behind (workflow runs, Meta events,
// upload checks) must drain, and how long they waited is part of the
// result. setup() takes a snapshot of GET /metrics/workers; teardown()
// polls it until every tepi_worker_queue_depth{queue_name=…} is 0 (at most
// DRAIN_TIMEOUT seconds, default 120), then records per queue, as the
// difference from the snapshot (so other traffic before the run does not
// count):
//
//   processed  jobs settled: tepi_worker_jobs_processed_total outcome ack
//              and dead_letter
//   failed     failed attempts: tepi_worker_job_errors_total
//   lag_p95_s  the 95th percentile of tepi_worker_job_lag_seconds (seconds
//              from a job's publication to the start of each attempt),
//              interpolated within its bucket as Prometheus'
//              histogram_quantile does; null when the queue ran nothing
//   depth      what was left when the wait ended
//
// On Spin the app drains its outbox after the requests that fill it, but
// jobs published by jobs (the runs a Meta event starts) wait for a drain:
// when the depth has not fallen for DRAIN_STALL seconds (default 3) and
// DRAIN_KEY (jobs:drain) is set, teardown() calls POST /v1/jobs/drain. On
// Workers the queues' consumers drain by themselves.
//
// teardown()'s return value never reaches handleSummary(), but metrics
// added in teardown() do: the figures are gauges named
// jobs_<field>_<queue> (meta-events → meta_events), and jobs_undrained
// (the depth left, summed), which a threshold holds to 0.
//
// The depth is Tepi's estimate (docs/api.md, "Worker metrics"), summed
// over every tenant: against a deployment with other traffic it may not
// reach 0 while the run's own jobs are done.
import { sleep } from 'k6';
import { Gauge } from 'k6/metrics';
import { envNumber } from './config.js';
import { request } from './http.js';

export const QUEUES = ['workflows', 'notifications', 'meta-events', 'uploads'];
const FIELDS = ['processed', 'failed', 'lag_p95_s', 'depth'];

const metricName = (field, queue) => `jobs_${field}_${queue.replace(/-/g, '_')}`;
const gauges = {};
for (const q of QUEUES) for (const f of FIELDS) gauges[metricName(f, q)] = new Gauge(metricName(f, q));
const undrained = new Gauge('jobs_undrained');
const drainSeconds = new Gauge('jobs_drain_seconds');
const drainCalls = new Gauge('jobs_drain_calls');

const DRAIN_TIMEOUT = envNumber('DRAIN_TIMEOUT', 120, { min: 0, max: 3600 });
const DRAIN_STALL = envNumber('DRAIN_STALL', 3, { min: 1, max: 600 });
const ROUTE_WORKERS = 'GET /metrics/workers';
const ROUTE_DRAIN = 'POST /v1/jobs/drain';

const bound = (le) => (le === '+Inf' ? Infinity : Number(le));

// Prometheus text 0.0.4 → {queue: {depth, ack, dead_letter, errors, buckets: [[le, count]…]}}.
export function parseWorkers(text) {
  const out = {};
  const q = (name) => (out[name] = out[name] || { depth: 0, ack: 0, dead_letter: 0, retry: 0, errors: 0, buckets: [] });
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}\s+(\S+)$/;
  for (const raw of text.split('\n')) {
    const m = line.exec(raw.trim());
    if (!m) continue;
    const labels = {};
    const pair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (let l = pair.exec(m[2]); l; l = pair.exec(m[2])) labels[l[1]] = l[2];
    const value = Number(m[3]);
    if (!labels.queue_name) continue;
    const entry = q(labels.queue_name);
    switch (m[1]) {
      case 'tepi_worker_queue_depth':
        entry.depth = value;
        break;
      case 'tepi_worker_jobs_processed_total':
        if (labels.outcome in entry) entry[labels.outcome] = value;
        break;
      case 'tepi_worker_job_errors_total':
        entry.errors = value;
        break;
      case 'tepi_worker_job_lag_seconds_bucket':
        // `le` kept as text: setup() data travels as JSON, which has no Infinity.
        entry.buckets.push([labels.le, value]);
        break;
      default:
    }
  }
  for (const e of Object.values(out)) e.buckets.sort((a, b) => bound(a[0]) - bound(b[0]));
  return out;
}

// histogram_quantile(q, …) over cumulative buckets [[le, count]…] (le as
// text), sorted, the last +Inf: linear within the bucket the rank falls in
// (from 0 for the first bucket); in the +Inf bucket, the highest finite
// bound. null without observations.
export function histogramQuantile(q, textBuckets) {
  const buckets = textBuckets.map(([le, c]) => [bound(le), c]);
  if (buckets.length < 2 || buckets[buckets.length - 1][0] !== Infinity) return null;
  const total = buckets[buckets.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  const i = buckets.findIndex(([, count]) => count >= rank);
  if (i === buckets.length - 1) return buckets[buckets.length - 2][0];
  if (i === 0 && buckets[0][0] <= 0) return buckets[0][0];
  const [upper, count] = buckets[i];
  const [lower, below] = i === 0 ? [0, 0] : buckets[i - 1];
  if (count === below) return upper;
  return lower + (upper - lower) * ((rank - below) / (count - below));
}

function read(key) {
  const res = request('GET', '/metrics/workers', null, { name: ROUTE_WORKERS, token: key, tags: { part: 'jobs' } });
  if (res.status !== 200) {
    console.warn(`GET /metrics/workers answered ${res.status}: ${String(res.body).slice(0, 200)}`);
    return null;
  }
  return parseWorkers(String(res.body));
}

// In setup(): the counts before the run (null without METRICS_KEY).
export function snapshot() {
  if (!__ENV.METRICS_KEY) return null;
  return read(__ENV.METRICS_KEY);
}

const totalDepth = (s) => Object.values(s).reduce((n, e) => n + e.depth, 0);

// In teardown(): waits for the queues to drain, then records the gauges.
// Answers the per-queue figures (also logged).
export function drainAndRecord(before) {
  const key = __ENV.METRICS_KEY;
  if (!key || !before) {
    console.warn('jobs: no METRICS_KEY or no snapshot from setup(): the jobs are not measured');
    return null;
  }
  const t0 = Date.now();
  // Counts written just after the last answers (e.g. in waitUntil) land first.
  sleep(1);
  let now = read(key);
  let lastDepth = now ? totalDepth(now) : Infinity;
  let lastFall = Date.now();
  let calls = 0;
  while (now && totalDepth(now) > 0 && Date.now() - t0 < DRAIN_TIMEOUT * 1000) {
    if (__ENV.DRAIN_KEY && Date.now() - lastFall >= DRAIN_STALL * 1000) {
      const res = request('POST', '/v1/jobs/drain?limit=100', null, { name: ROUTE_DRAIN, token: __ENV.DRAIN_KEY, tags: { part: 'jobs' } });
      calls += 1;
      if (res.status !== 200) console.warn(`POST /v1/jobs/drain answered ${res.status}: ${String(res.body).slice(0, 200)}`);
      lastFall = Date.now();
    } else {
      sleep(0.5);
    }
    now = read(key) || now;
    const depth = totalDepth(now);
    if (depth < lastDepth) lastFall = Date.now();
    lastDepth = depth;
  }
  if (!now) return null;
  const waited = (Date.now() - t0) / 1000;
  drainSeconds.add(waited);
  drainCalls.add(calls);
  undrained.add(totalDepth(now));
  const result = {};
  for (const queue of QUEUES) {
    const a = before[queue] || { ack: 0, dead_letter: 0, errors: 0, buckets: [] };
    const b = now[queue];
    if (!b) continue;
    const prior = new Map(a.buckets.map(([le, c]) => [le, c]));
    const delta = b.buckets.map(([le, c]) => [le, Math.max(0, c - (prior.get(le) || 0))]);
    const lag = histogramQuantile(0.95, delta);
    const figures = {
      processed: Math.max(0, b.ack + b.dead_letter - a.ack - a.dead_letter),
      failed: Math.max(0, b.errors - a.errors),
      lag_p95_s: lag,
      depth: b.depth,
    };
    result[queue] = figures;
    for (const f of FIELDS) if (figures[f] !== null) gauges[metricName(f, queue)].add(figures[f]);
  }
  console.log(`jobs: depth ${totalDepth(now)} after ${waited.toFixed(1)} s (${calls} drain calls): ${JSON.stringify(result)}`);
  return result;
}

// For handleSummary(): the recorded figures back from data.metrics.
export function jobsFromSummary(metrics) {
  const out = {};
  const value = (name) => (metrics[name] ? metrics[name].values.value : null);
  for (const queue of QUEUES) {
    if (value(metricName('processed', queue)) === null) continue;
    out[queue] = {
      lag_p95_s: value(metricName('lag_p95_s', queue)),
      failed: value(metricName('failed', queue)),
      processed: value(metricName('processed', queue)),
      depth: value(metricName('depth', queue)),
    };
  }
  return {
    queues: out,
    undrained: value('jobs_undrained'),
    seconds: value('jobs_drain_seconds'),
    drainCalls: value('jobs_drain_calls'),
  };
}
