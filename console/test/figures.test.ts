// The console's arithmetic, run by scripts/build-console.sh (bundled by
// esbuild, run by node): a failure throws and fails the build.

import {
  baselineFigures,
  compare,
  counterDelta,
  histogramDelta,
  intervals,
  quantile,
  queueNames,
  queueStats,
  requestSeries,
  requestStats,
  windowInterval,
  type History,
  type HistoryPoint,
} from "../src/figures";
import { age, delta, ms, percent, rate } from "../src/format";

let failures = 0;
let passed = 0;

function test(name: string, f: () => void): void {
  try {
    f();
    passed++;
  } catch (e) {
    failures++;
    console.error(`FAIL ${name}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function eq(actual: unknown, expected: unknown, what = ""): void {
  const a = JSON.stringify(actual);
  const b = JSON.stringify(expected);
  if (a !== b) throw new Error(`${what} expected ${b}, got ${a}`);
}

function near(actual: number | null, expected: number, what = ""): void {
  if (actual === null || Math.abs(actual - expected) > 1e-9) throw new Error(`${what} expected ${expected}, got ${actual}`);
}

const LE = [1, 2, 5, 10, 25, 50, 100, 250, 300, 500, 1000, 2500, 5000, 10000];

function point(t: number, total: number, c4: number, c5: number, c429: number, latency: number[], extra: Partial<HistoryPoint> = {}): HistoryPoint {
  return { t, requests: { total, "2xx": total - c4 - c5, "3xx": 0, "4xx": c4, "5xx": c5, "429": c429 }, latency_ms: { le: LE, counts: latency }, ...extra };
}

// Cumulative counts with `n` observations in bucket index `b` (bound LE[b]).
function at(b: number, n: number, base: number[] = new Array<number>(LE.length + 1).fill(0)): number[] {
  return base.map((c, i) => (i >= b ? c + n : c));
}

test("counterDelta: increase, reset, first", () => {
  eq(counterDelta(10, 4), 6);
  eq(counterDelta(3, 10), 3);
  eq(counterDelta(7, undefined), 7);
});

test("quantile: Prometheus' linear interpolation", () => {
  // 100 observations, all in (10, 25]: the median is halfway through it.
  const h = { le: LE, counts: at(4, 100) };
  near(quantile(0.5, h), 17.5);
  near(quantile(0.95, h), 10 + 15 * 0.95);
  // The first bucket starts at 0.
  near(quantile(0.5, { le: [4], counts: [10, 10] }), 2);
});

test("quantile: a rank in +Inf answers the largest finite bound", () => {
  near(quantile(0.99, { le: LE, counts: at(LE.length, 5) }), 10000);
});

test("quantile: empty is null", () => {
  eq(quantile(0.5, { le: LE, counts: at(0, 0) }), null);
});

test("quantile: spread over buckets", () => {
  // 50 in (0,1], 50 in (1,2]: p50 is 1, p75 is 1.5.
  const h = { le: [1, 2], counts: [50, 100, 100] };
  near(quantile(0.5, h), 1);
  near(quantile(0.75, h), 1.5);
});

test("histogramDelta: subtracts; a reset or new bounds keeps the later one", () => {
  eq(histogramDelta({ le: [1], counts: [5, 8] }, { le: [1], counts: [2, 3] }).counts, [3, 5]);
  eq(histogramDelta({ le: [1], counts: [1, 1] }, { le: [1], counts: [2, 3] }).counts, [1, 1]);
  eq(histogramDelta({ le: [2], counts: [4, 4] }, { le: [1], counts: [2, 3] }).counts, [4, 4]);
});

test("window: last minus first", () => {
  const h: History = {
    step_secs: 60,
    points: [point(1000, 100, 10, 1, 2, at(4, 100)), point(1060, 150, 12, 1, 2, at(4, 100)), point(1120, 220, 20, 3, 6, at(4, 100, at(6, 20)))],
  };
  const iv = windowInterval(h);
  if (!iv) throw new Error("no window");
  const r = requestStats(iv);
  eq(r.requests, 120);
  eq(r.seconds, 120);
  near(r.rate, 1);
  near(r.share4xx, 10 / 120);
  near(r.share5xx, 2 / 120);
  near(r.share429, 4 / 120);
  // The window's 20 new observations are all in (50, 100].
  near(r.p50, 75);
});

test("window: a single point is no window yet (its counts are all-time)", () => {
  const h: History = { step_secs: 60, points: [point(1000, 30, 3, 0, 0, at(2, 30), { live: true })] };
  eq(windowInterval(h), null);
  eq(intervals(h), []);
});

test("series: a live point seconds after the last snapshot is not charted", () => {
  const h: History = {
    step_secs: 60,
    points: [point(1000, 10, 0, 0, 0, at(0, 10)), point(1060, 70, 0, 0, 0, at(0, 70)), point(1065, 75, 1, 0, 0, at(0, 75), { live: true })],
  };
  eq(requestSeries(h).t, [1060]);
  const iv = windowInterval(h);
  if (!iv) throw new Error("no window");
  eq(requestStats(iv).requests, 65);
});

test("window: none and empty", () => {
  eq(windowInterval({ step_secs: 60, points: [] }), null);
  const iv = windowInterval({ step_secs: 60, points: [point(1000, 5, 0, 0, 0, at(0, 5)), point(1060, 5, 0, 0, 0, at(0, 5))] });
  if (!iv) throw new Error("no window");
  const r = requestStats(iv);
  eq(r.requests, 0);
  eq([r.share4xx, r.p95], [null, null]);
});

test("series: per interval, a reset counts the later value", () => {
  const h: History = {
    step_secs: 60,
    points: [point(1000, 100, 0, 0, 0, at(0, 100)), point(1060, 160, 0, 6, 0, at(0, 160)), point(1180, 12, 0, 0, 0, at(0, 12))],
  };
  const s = requestSeries(h);
  // 1060 → 1180 is two steps: a break in the line at 1120, then the point.
  eq(s.t, [1060, 1120, 1180]);
  near(s.rate[0] ?? null, 1);
  eq(s.rate[1], null);
  near(s.rate[2] ?? null, 0.1);
  near(s.pct5xx[0] ?? null, 10);
  near(s.pct5xx[2] ?? null, 0);
  eq(intervals({ step_secs: 60, points: [] }), []);
});

test("queues: failure rate, lag p95, gauges", () => {
  const lag = { le: [1, 5, 10], counts: [0, 0, 0, 0] };
  const h: History = {
    step_secs: 60,
    points: [
      point(1000, 1, 0, 0, 0, at(0, 1), { queues: { workflows: { depth: 4, active: 1, processed: 10, failed: 1, lag_seconds: lag } } }),
      point(1060, 2, 0, 0, 0, at(0, 2), {
        queues: { workflows: { depth: 2, active: 0, processed: 30, failed: 3, lag_seconds: { le: [1, 5, 10], counts: [0, 20, 20, 20] } }, uploads: { depth: 0, active: 0, processed: 0, failed: 0 } },
      }),
    ],
  };
  eq(queueNames(h), ["uploads", "workflows"]);
  const iv = windowInterval(h);
  if (!iv) throw new Error("no window");
  const q = queueStats(iv, "workflows");
  eq([q.depth, q.active, q.processed, q.failed], [2, 0, 20, 2]);
  near(q.failureRate, 0.1);
  near(q.lagP95, 1 + 4 * 0.95);
  eq(queueStats(iv, "uploads").failureRate, null);
});

test("baseline: ALL route's p95, comparisons", () => {
  const b = baselineFigures({ error_rate: 0.002, rate: 19.5, routes: { ALL: { p95: 150 }, "GET /v1/auth/me": { p95: 9.8 } } });
  eq(b, { p95: 150, errorRate: 0.002, rate: 19.5 });
  eq(baselineFigures({}), { p95: null, errorRate: null, rate: null });
  const c = compare(162.3, 150, 300);
  near(c.delta, 12.3);
  eq(c.pass, true);
  eq(compare(320, 150, 300).pass, false);
  eq(compare(null, 150, 300).pass, null);
  eq(compare(1, 0).relative, null);
});

test("format", () => {
  eq(delta(12.3, 12.3 / 150, "ms"), "+12.3 ms (+8 %)");
  eq(delta(-4.56, -0.5, "req/s"), "-4.56 req/s (-50 %)");
  eq(delta(0.2, null, "pp"), "+0.2 pp");
  eq(ms(1234.5), "1,235 ms");
  eq(ms(null), "—");
  eq(ms(Number.NaN), "—");
  eq(percent(0.0125), "1.25 %");
  eq(rate(2), "2 req/s");
  eq([age(30), age(180), age(3900), age(90000)], ["<1 min", "3 min", "1 h 5 min", "1 d 1 h"]);
});

console.log(`figures: ${passed} passed, ${failures} failed`);
if (failures > 0) throw new Error(`${failures} figures test(s) failed`);
