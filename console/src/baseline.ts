import { request } from "./api";
import { HISTORY } from "./dashboard";
import { alertRegion, clearProblem, h, heading, showProblem, table } from "./dom";
import { baselineFigures, compare, requestStats, windowInterval, type Comparison, type History } from "./figures";
import * as fmt from "./format";
import type { Mount } from "./page";

interface BaselineItem {
  branch: string;
  scenario: string;
  build: string;
  commit: string | null;
  recorded_at: string;
}

interface Baseline extends BaselineItem {
  summary: unknown;
}

// The k6 thresholds every scenario shares (k6/lib/thresholds.js).
const P95_MS = 300;
const MAX_ERROR_RATE = 0.01;

/** `/v1/ops/baselines/{branch}`: the branch is the rest of the path, its
 * `/` kept as separators. */
function baselineUrl(item: BaselineItem): string {
  const branch = item.branch.split("/").map(encodeURIComponent).join("/");
  const q = new URLSearchParams({ scenario: item.scenario, build: item.build });
  return `/v1/ops/baselines/${branch}?${q.toString()}`;
}

function resultCell(pass: boolean | null): HTMLTableCellElement {
  if (pass === null) return h("td", { class: "result" }, fmt.NONE);
  const word = pass ? "pass" : "fail";
  return h("td", { class: `result ${word}` }, word);
}

function row(testid: string, metric: string, c: Comparison, show: (v: number | null) => string, deltaUnit: string, deltaScale: number, threshold: string) {
  return h(
    "tr",
    { "data-testid": testid },
    h("th", { scope: "row" }, metric),
    h("td", null, show(c.current)),
    h("td", null, show(c.baseline)),
    h("td", null, fmt.delta(c.delta === null ? null : c.delta * deltaScale, c.relative, deltaUnit)),
    h("td", null, threshold),
    resultCell(c.pass),
  );
}

export const baselinePage: Mount = (main) => {
  const problem = alertRegion();
  const body = h("div");
  main.append(heading("Baselines"), problem, body);
  let alive = true;
  let history: History | null = null;

  const branchSelect = h("select", { id: "branch", name: "branch" });
  const runSelect = h("select", { id: "run", name: "run" });
  const runField = h("p", { class: "field", hidden: true }, h("label", { for: "run" }, "Run"), runSelect);
  const meta = h("p", { class: "meta" });
  const comparison = table("Current vs baseline", ["Metric", "Current", "Baseline", "Delta", "Threshold", "Result"], "comparison");
  let items: BaselineItem[] = [];

  const runsOf = (branch: string) => items.filter((i) => i.branch === branch);

  function pickBranch(): void {
    const runs = runsOf(branchSelect.value);
    runSelect.replaceChildren(...runs.map((r, i) => h("option", { value: i }, `${r.scenario} · ${r.build}`)));
    runField.hidden = runs.length < 2;
    void pickRun();
  }

  // Only the latest choice's answer is shown, whatever order answers arrive in.
  let choice = 0;

  async function pickRun(): Promise<void> {
    const item = runsOf(branchSelect.value)[Number(runSelect.value) || 0];
    if (!item) return;
    const mine = ++choice;
    try {
      const baseline = await request<Baseline>(baselineUrl(item));
      if (!alive || !history || mine !== choice) return;
      render(baseline, history);
      clearProblem(problem);
    } catch (err) {
      if (alive && mine === choice) showProblem(problem, err);
    }
  }

  function render(b: Baseline, hist: History): void {
    const iv = windowInterval(hist);
    const now = iv ? requestStats(iv) : null;
    const base = baselineFigures(b.summary);
    const recorded = new Date(b.recorded_at);
    meta.replaceChildren(
      `Scenario ${b.scenario}, build ${b.build}`,
      b.commit ? `, commit ${b.commit}` : "",
      ", recorded ",
      h("time", { datetime: b.recorded_at, title: recorded.toISOString() }, `${fmt.age((Date.now() - recorded.getTime()) / 1000)} ago`),
      ".",
    );
    comparison.body.replaceChildren(
      row("row-p95", "p95 latency", compare(now?.p95 ?? null, base.p95, P95_MS), fmt.ms, "ms", 1, `< ${P95_MS} ms`),
      // Shares shown as percent; their difference in percentage points.
      row("row-errors", "Error rate", compare(now?.share5xx ?? null, base.errorRate, MAX_ERROR_RATE), fmt.percent, "pp", 100, `< ${MAX_ERROR_RATE * 100} %`),
      row("row-rate", "Request rate", compare(now && now.requests > 0 ? now.rate : null, base.rate), fmt.rate, "req/s", 1, fmt.NONE),
    );
  }

  async function load(): Promise<void> {
    try {
      const [list, hist] = await Promise.all([request<{ items: BaselineItem[] }>("/v1/ops/baselines"), request<History>(HISTORY)]);
      if (!alive) return;
      items = list.items;
      history = hist;
      if (items.length === 0) {
        body.replaceChildren(
          h("p", { class: "empty" }, "No baselines recorded yet. A load test records one: scripts/k6-compare.py --record (docs/ops.md)."),
        );
        return;
      }
      // main first: the baseline other branches fall back to.
      const branches = [...new Set(items.map((i) => i.branch))].sort((a, b) => (a === "main" ? -1 : b === "main" ? 1 : a.localeCompare(b)));
      branchSelect.replaceChildren(...branches.map((b) => h("option", { value: b }, b)));
      body.replaceChildren(
        h("div", { class: "pickers" }, h("p", { class: "field" }, h("label", { for: "branch" }, "Branch"), branchSelect), runField),
        meta,
        comparison.table,
        h(
          "p",
          { class: "note" },
          "Current: this deployment's own counts over the last hour (error rate: 5xx answers). " +
            "Baseline: the k6 run's summary (p95 over all its requests; error rate: requests k6 counted as failed). " +
            "Result: the current value against the threshold every load test enforces.",
        ),
      );
      pickBranch();
    } catch (err) {
      if (alive) showProblem(problem, err);
    }
  }

  branchSelect.addEventListener("change", pickBranch);
  runSelect.addEventListener("change", () => void pickRun());
  void load();
  return () => {
    alive = false;
  };
};
