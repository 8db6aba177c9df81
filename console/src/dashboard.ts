import { request } from "./api";
import { Chart, COLORS, describe, type Line } from "./charts";
import { alertRegion, clearProblem, emptyRow, h, heading, showProblem, table } from "./dom";
import { queueNames, queueSeries, queueStats, requestSeries, requestStats, windowInterval, type History } from "./figures";
import * as fmt from "./format";
import { poll, REFRESH_MS, type Mount } from "./page";

export const HISTORY = "/v1/ops/metrics/history?minutes=60";

// [label, data-testid]; the values are set on each refresh.
const FIGURES = [
  ["Requests", "figure-requests"],
  ["Request rate", "figure-request-rate"],
  ["4xx rate", "figure-error-rate-4xx"],
  ["5xx rate", "figure-error-rate-5xx"],
  ["429 rate", "figure-rate-limited"],
  ["p50", "figure-p50"],
  ["p95", "figure-p95"],
  ["p99", "figure-p99"],
] as const;

type FigureId = (typeof FIGURES)[number][1];

const pctTick = (v: number) => `${fmt.num(v)} %`;
const pctValue = (v: number | null) => (v === null ? fmt.NONE : pctTick(v));

export const dashboardPage: Mount = (main) => {
  const problem = alertRegion();
  const updated = h("span");
  const empty = h("p", { class: "empty", hidden: true }, "No requests in the last hour");
  const values = new Map<FigureId, HTMLElement>();
  const dl = h(
    "dl",
    { class: "figures" },
    ...FIGURES.map(([label, id]) => {
      const dd = h("dd", { "data-testid": id }, fmt.NONE);
      values.set(id, dd);
      return h("div", null, h("dt", null, label), dd);
    }),
  );

  const rateChart = new Chart({
    caption: "Request rate per minute (requests per second)",
    lines: [{ label: "Requests", color: COLORS[0]!, format: fmt.rate }],
    axes: [{ scale: "y", format: (v) => fmt.num(v) }],
  });
  const errorChart = new Chart({
    caption: "Error rates per minute (share of requests: 4xx, 5xx, 429)",
    lines: [
      { label: "4xx", color: COLORS[1]!, format: pctValue },
      { label: "5xx", color: COLORS[2]!, format: pctValue },
      { label: "429", color: COLORS[3]!, dash: [6, 4], format: pctValue },
    ],
    axes: [{ scale: "y", format: pctTick }],
  });
  const latencyChart = new Chart({
    caption: "Latency per minute (p50, p95, p99, milliseconds)",
    lines: [
      { label: "p50", color: COLORS[0]!, format: fmt.ms },
      { label: "p95", color: COLORS[1]!, format: fmt.ms },
      { label: "p99", color: COLORS[2]!, format: fmt.ms },
    ],
    axes: [{ scale: "y", format: (v) => `${fmt.num(v)} ms` }],
  });

  const queues = table("Queues", ["Queue", "Depth", "Failure rate", "Lag p95", "Active"]);
  const queueFigure = h("div", { class: "queue-chart" });
  let queueChart: Chart | null = null;
  let queueKey = "";

  main.append(
    heading("Dashboard"),
    problem,
    h("p", { class: "meta" }, "The last hour, refreshed every 15 s. ", updated),
    h(
      "section",
      { "aria-labelledby": "h-requests" },
      h("h2", { id: "h-requests" }, "Requests"),
      empty,
      dl,
      h("p", { class: "note" }, "4xx, 5xx and 429 rates are shares of all requests in the hour (429: refused by the rate limiter)."),
    ),
    h("section", { "aria-labelledby": "h-trends" }, h("h2", { id: "h-trends" }, "Per minute"), rateChart.figure, errorChart.figure, latencyChart.figure),
    h("section", { "aria-labelledby": "h-jobs" }, h("h2", { id: "h-jobs" }, "Background jobs"), queues.table, queueFigure),
  );

  function show(history: History): void {
    const iv = windowInterval(history);
    const r = iv ? requestStats(iv) : null;
    const set = (id: FigureId, text: string) => {
      const el = values.get(id);
      if (el) el.textContent = text;
    };
    const any = r !== null && r.requests > 0;
    empty.hidden = any;
    empty.textContent = iv
      ? "No requests in the last hour"
      : "Collecting: the figures start with this minute's first snapshot, within a minute.";
    set("figure-requests", fmt.count(r?.requests ?? 0));
    set("figure-request-rate", any ? fmt.rate(r.rate) : fmt.NONE);
    set("figure-error-rate-4xx", fmt.percent(r?.share4xx ?? null));
    set("figure-error-rate-5xx", fmt.percent(r?.share5xx ?? null));
    set("figure-rate-limited", fmt.percent(r?.share429 ?? null));
    set("figure-p50", fmt.ms(r?.p50 ?? null));
    set("figure-p95", fmt.ms(r?.p95 ?? null));
    set("figure-p99", fmt.ms(r?.p99 ?? null));

    const s = requestSeries(history);
    rateChart.update(s.t, [s.rate], `Request rate per minute over the last hour: ${describe(s.rate, fmt.rate)}.`);
    errorChart.update(
      s.t,
      [s.pct4xx, s.pct5xx, s.pct429],
      `Error rates per minute over the last hour. 4xx: ${describe(s.pct4xx, pctValue)}; 5xx: ${describe(s.pct5xx, pctValue)}; 429: ${describe(s.pct429, pctValue)}.`,
    );
    latencyChart.update(
      s.t,
      [s.p50, s.p95, s.p99],
      `Latency per minute over the last hour. p50: ${describe(s.p50, fmt.ms)}; p95: ${describe(s.p95, fmt.ms)}; p99: ${describe(s.p99, fmt.ms)}.`,
    );

    const names = queueNames(history);
    queues.body.replaceChildren(
      ...(names.length === 0
        ? [emptyRow(5, "No queue activity in the last hour")]
        : names.map((n) => {
            const q = iv ? queueStats(iv, n) : null;
            return h(
              "tr",
              { "data-testid": `queue-${n}` },
              h("th", { scope: "row" }, n),
              h("td", null, fmt.count(q?.depth ?? null)),
              h("td", null, fmt.percent(q?.failureRate ?? null)),
              h("td", null, fmt.seconds(q?.lagP95 ?? null)),
              h("td", null, fmt.count(q?.active ?? null)),
            );
          })),
    );
    showQueues(history, names);
    updated.textContent = `Updated ${fmt.clock(new Date())}.`;
  }

  // One chart for every queue: depth (solid, left axis) and lag p95 (dashed,
  // right axis); rebuilt when the set of queues changes.
  function showQueues(history: History, names: string[]): void {
    const key = names.join("\n");
    if (key !== queueKey) {
      queueChart?.destroy();
      queueChart = null;
      queueKey = key;
      if (names.length > 0) {
        const lines: Line[] = names.flatMap((n, i) => [
          { label: `${n} depth`, color: COLORS[i % COLORS.length]!, format: fmt.count },
          { label: `${n} lag p95`, color: COLORS[i % COLORS.length]!, scale: "s", dash: [6, 4], format: fmt.seconds },
        ]);
        queueChart = new Chart({
          caption: "Queue depth (jobs, solid) and lag p95 (seconds, dashed) per minute",
          lines,
          axes: [
            { scale: "y", format: (v) => fmt.num(v) },
            { scale: "s", format: (v) => `${fmt.num(v)} s` },
          ],
        });
      }
      queueFigure.replaceChildren(...(queueChart ? [queueChart.figure] : []));
    }
    if (!queueChart) return;
    const s = queueSeries(history, names);
    const ys = names.flatMap((n) => [s.depth[n] ?? [], s.lagP95[n] ?? []]);
    const summary = names.map((n) => `${n}: depth ${describe(s.depth[n] ?? [], fmt.count)}; lag p95 ${describe(s.lagP95[n] ?? [], fmt.seconds)}`);
    queueChart.update(s.t, ys, `Queue depth and lag p95 per minute over the last hour. ${summary.join(". ")}.`);
  }

  const stop = poll(async () => {
    try {
      show(await request<History>(HISTORY));
      clearProblem(problem);
    } catch (err) {
      showProblem(problem, err);
    }
  }, REFRESH_MS);

  return () => {
    stop();
    for (const c of [rateChart, errorChart, latencyChart, queueChart]) c?.destroy();
  };
};
