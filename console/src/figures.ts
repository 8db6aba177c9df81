// The dashboard's and the baseline page's arithmetic, as pure functions of
// `GET /v1/ops/metrics/history` and of a stored k6 summary: no DOM, no
// clock, so console/test/figures.test.ts can check every case.
//
// The history holds cumulative counters (one snapshot per minute that had
// traffic, the live value last); everything shown is a difference of two
// snapshots over the seconds between them.

export interface Histogram {
  /** Finite upper bounds, ascending. */
  le: number[];
  /** Cumulative counts, one per bound and a last one for +Inf (the total). */
  counts: number[];
}

export interface RequestCounts {
  total: number;
  "2xx"?: number;
  "3xx"?: number;
  "4xx"?: number;
  "5xx"?: number;
  "429"?: number;
}

export interface QueueSnapshot {
  depth: number;
  active: number;
  processed: number;
  failed: number;
  lag_seconds?: Histogram;
}

export interface HistoryPoint {
  t: number;
  live?: boolean;
  requests: RequestCounts;
  latency_ms?: Histogram;
  queues?: Record<string, QueueSnapshot>;
}

export interface History {
  step_secs: number;
  retention_minutes?: number;
  points: HistoryPoint[];
}

/** Two snapshots and the seconds between them; `from` is absent when the
 * only snapshot is counted from zero. */
export interface Interval {
  t: number;
  seconds: number;
  from?: HistoryPoint;
  to: HistoryPoint;
}

/** A counter's increase; a smaller later value means the counter restarted
 * (a new aggregate), so everything it holds is new. */
export function counterDelta(later: number, earlier: number | undefined): number {
  if (earlier === undefined) return later;
  return later >= earlier ? later - earlier : later;
}

function sameBounds(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Bucket by bucket increase; a histogram whose bounds changed or whose
 * counts shrank restarted, and the later one is all new. */
export function histogramDelta(later: Histogram, earlier?: Histogram): Histogram {
  if (!earlier || !sameBounds(later.le, earlier.le) || later.counts.length !== earlier.counts.length) {
    return { le: later.le, counts: later.counts.slice() };
  }
  const counts = later.counts.map((c, i) => c - (earlier.counts[i] ?? 0));
  if (counts.some((c) => c < 0)) return { le: later.le, counts: later.counts.slice() };
  return { le: later.le, counts };
}

/** Total observations of a histogram (its +Inf count). */
export function histogramCount(h: Histogram): number {
  return h.counts[h.counts.length - 1] ?? 0;
}

/**
 * The q-quantile as Prometheus' `histogram_quantile` estimates it: linear
 * interpolation inside the bucket holding the rank, the first bucket
 * starting at 0; a rank in the +Inf bucket answers the largest finite
 * bound. `null` when the histogram is empty (Prometheus' NaN).
 */
export function quantile(q: number, h: Histogram): number | null {
  const total = histogramCount(h);
  if (!(total > 0) || h.le.length === 0) return null;
  const rank = q * total;
  let b = h.counts.findIndex((c) => c >= rank);
  if (b < 0) b = h.counts.length - 1;
  if (b >= h.le.length) return h.le[h.le.length - 1] ?? null;
  const end = h.le[b] ?? 0;
  if (b === 0 && end <= 0) return end;
  const start = b === 0 ? 0 : (h.le[b - 1] ?? 0);
  const before = b === 0 ? 0 : (h.counts[b - 1] ?? 0);
  const inBucket = (h.counts[b] ?? 0) - before;
  if (inBucket <= 0) return start;
  return start + (end - start) * ((rank - before) / inBucket);
}

/** The whole window: first snapshot to last. Null with a single point:
 * its counts are everything since the aggregate began, not a window (the
 * minute's snapshot is usually a few seconds away). */
export function windowInterval(h: History): Interval | null {
  const first = h.points[0];
  const last = h.points[h.points.length - 1];
  if (!first || !last || first === last) return null;
  const seconds = last.t - first.t;
  return seconds > 0 ? { t: last.t, seconds, from: first, to: last } : null;
}

/** Consecutive snapshots, for the per-minute series. The live point is
 * left out while it is under half a step past the last snapshot: a few
 * seconds of requests would make spikes of their shares and quantiles. */
export function intervals(h: History): Interval[] {
  const p = h.points;
  const out: Interval[] = [];
  for (let i = 1; i < p.length; i++) {
    const from = p[i - 1];
    const to = p[i];
    if (!from || !to || to.t <= from.t) continue;
    if (to.live && to.t - from.t < h.step_secs / 2) continue;
    out.push({ t: to.t, seconds: to.t - from.t, from, to });
  }
  return out;
}

/** Minutes without traffic have no snapshot: an interval longer than one
 * and a half steps is preceded by a break in the chart's line (a null
 * one step after it began), so the gap shows instead of a bridge. */
function gapAt(iv: Interval, step: number): number | null {
  return iv.from && iv.seconds > 1.5 * step ? iv.from.t + step : null;
}

export interface RequestStats {
  requests: number;
  seconds: number;
  /** Requests per second. */
  rate: number | null;
  /** Shares of all requests, 0–1; null without requests. */
  share4xx: number | null;
  share5xx: number | null;
  share429: number | null;
  /** Milliseconds; null without requests. */
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

const share = (part: number, whole: number): number | null => (whole > 0 ? part / whole : null);

export function requestStats(iv: Interval): RequestStats {
  // A total that went down restarted with its classes: count all from zero.
  const from = iv.from && iv.to.requests.total >= iv.from.requests.total ? iv.from : undefined;
  const d = (k: keyof RequestCounts) => counterDelta(iv.to.requests[k] ?? 0, from ? (from.requests[k] ?? 0) : undefined);
  const requests = d("total");
  const latency = iv.to.latency_ms ? histogramDelta(iv.to.latency_ms, from?.latency_ms) : null;
  const q = (p: number) => (latency && requests > 0 ? quantile(p, latency) : null);
  return {
    requests,
    seconds: iv.seconds,
    rate: iv.seconds > 0 ? requests / iv.seconds : null,
    share4xx: share(d("4xx"), requests),
    share5xx: share(d("5xx"), requests),
    share429: share(d("429"), requests),
    p50: q(0.5),
    p95: q(0.95),
    p99: q(0.99),
  };
}

export interface QueueStats {
  name: string;
  /** Gauges at the interval's end. */
  depth: number;
  active: number;
  processed: number;
  failed: number;
  /** failed / processed, 0–1; null when nothing was processed. */
  failureRate: number | null;
  /** Seconds; null when nothing was processed. */
  lagP95: number | null;
}

const EMPTY_QUEUE: QueueSnapshot = { depth: 0, active: 0, processed: 0, failed: 0 };

export function queueStats(iv: Interval, name: string): QueueStats {
  const to = iv.to.queues?.[name] ?? EMPTY_QUEUE;
  const was = iv.from ? (iv.from.queues?.[name] ?? EMPTY_QUEUE) : undefined;
  const from = was && to.processed >= was.processed ? was : undefined;
  const processed = counterDelta(to.processed, from?.processed);
  const failed = counterDelta(to.failed, from?.failed);
  const lag = to.lag_seconds ? histogramDelta(to.lag_seconds, from?.lag_seconds) : null;
  return {
    name,
    depth: to.depth,
    active: to.active,
    processed,
    failed,
    failureRate: share(failed, processed),
    lagP95: lag ? quantile(0.95, lag) : null,
  };
}

/** Every queue any snapshot names, sorted. */
export function queueNames(h: History): string[] {
  const names = new Set<string>();
  for (const p of h.points) for (const n of Object.keys(p.queues ?? {})) names.add(n);
  return [...names].sort();
}

export type Series = (number | null)[];

export interface RequestSeries {
  t: number[];
  rate: Series;
  /** Percent of the interval's requests. */
  pct4xx: Series;
  pct5xx: Series;
  pct429: Series;
  p50: Series;
  p95: Series;
  p99: Series;
}

const pct = (v: number | null) => (v === null ? null : v * 100);

export function requestSeries(h: History): RequestSeries {
  const s: RequestSeries = { t: [], rate: [], pct4xx: [], pct5xx: [], pct429: [], p50: [], p95: [], p99: [] };
  for (const iv of intervals(h)) {
    const gap = gapAt(iv, h.step_secs);
    if (gap !== null) {
      s.t.push(gap);
      for (const k of ["rate", "pct4xx", "pct5xx", "pct429", "p50", "p95", "p99"] as const) s[k].push(null);
    }
    const r = requestStats(iv);
    s.t.push(iv.t);
    s.rate.push(r.rate);
    s.pct4xx.push(pct(r.share4xx));
    s.pct5xx.push(pct(r.share5xx));
    s.pct429.push(pct(r.share429));
    s.p50.push(r.p50);
    s.p95.push(r.p95);
    s.p99.push(r.p99);
  }
  return s;
}

export interface QueueSeries {
  t: number[];
  depth: Record<string, Series>;
  /** Seconds. */
  lagP95: Record<string, Series>;
}

export function queueSeries(h: History, names: string[]): QueueSeries {
  const s: QueueSeries = { t: [], depth: {}, lagP95: {} };
  for (const n of names) {
    s.depth[n] = [];
    s.lagP95[n] = [];
  }
  for (const iv of intervals(h)) {
    const gap = gapAt(iv, h.step_secs);
    if (gap !== null) {
      s.t.push(gap);
      for (const n of names) {
        s.depth[n]?.push(null);
        s.lagP95[n]?.push(null);
      }
    }
    s.t.push(iv.t);
    for (const n of names) {
      const q = queueStats(iv, n);
      s.depth[n]?.push(iv.to.queues?.[n] ? q.depth : null);
      s.lagP95[n]?.push(q.lagP95);
    }
  }
  return s;
}

/** The figures a baseline is compared on, from a stored k6 summary: the
 * load's overall p95 travels as the route "ALL" (scripts/k6-compare.py). */
export interface BaselineFigures {
  p95: number | null;
  errorRate: number | null;
  rate: number | null;
}

const finite = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

export function baselineFigures(summary: unknown): BaselineFigures {
  const s = (summary ?? {}) as { error_rate?: unknown; rate?: unknown; p95?: unknown; routes?: Record<string, { p95?: unknown }> };
  return {
    p95: finite(s.routes?.["ALL"]?.p95) ?? finite(s.p95),
    errorRate: finite(s.error_rate),
    rate: finite(s.rate),
  };
}

export interface Comparison {
  current: number | null;
  baseline: number | null;
  delta: number | null;
  /** delta / baseline; null when the baseline is 0 or unknown. */
  relative: number | null;
  /** current < threshold; null without a threshold or a current value. */
  pass: boolean | null;
}

export function compare(current: number | null, baseline: number | null, threshold?: number): Comparison {
  const delta = current !== null && baseline !== null ? current - baseline : null;
  return {
    current,
    baseline,
    delta,
    relative: delta !== null && baseline ? delta / baseline : null,
    pass: threshold === undefined || current === null ? null : current < threshold,
  };
}
