import { request } from "./api";
import { alertRegion, clearProblem, emptyRow, h, heading, showProblem, table } from "./dom";
import * as fmt from "./format";
import { poll, REFRESH_MS, type Mount } from "./page";

interface Alert {
  fingerprint: string;
  alertname: string;
  status: "firing" | "resolved";
  severity?: string | null;
  summary?: string | null;
  runbook_url?: string | null;
  starts_at: string;
  ends_at: string | null;
  changed_at?: string | null;
}

interface Page {
  items: Alert[];
  next_cursor: string | null;
}

const COLUMNS = ["Alert", "Severity", "Summary", "Age", "Runbook"];
const LIMIT = 100;
// Firing alerts are all shown (a bounded number of pages); resolved ones
// only the latest page, the inbox keeps them for weeks.
const MAX_FIRING_PAGES = 10;

async function fetchAlerts(state: "firing" | "resolved", pages: number): Promise<{ items: Alert[]; more: boolean }> {
  const items: Alert[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < pages; i++) {
    const q = new URLSearchParams({ state, limit: String(LIMIT) });
    if (cursor) q.set("cursor", cursor);
    const page: Page = await request<Page>(`/v1/ops/alerts?${q.toString()}`);
    items.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return { items, more: cursor !== null };
}

/** Only http(s) links are followed (the API already drops others). */
function safeUrl(u: string | null | undefined): string | null {
  if (!u) return null;
  try {
    const url = new URL(u);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

function alertRow(a: Alert, now: number): HTMLTableRowElement {
  const since = a.status === "firing" ? a.starts_at : (a.ends_at ?? a.changed_at ?? a.starts_at);
  const at = new Date(since);
  const runbook = safeUrl(a.runbook_url);
  const severity = a.severity ?? "";
  return h(
    "tr",
    { "data-testid": `alert-${a.alertname}` },
    h("th", { scope: "row" }, a.alertname),
    h("td", null, severity ? h("span", { class: `severity severity-${severity.toLowerCase().replace(/[^a-z]/g, "")}` }, severity) : fmt.NONE),
    h("td", null, a.summary ?? ""),
    h("td", null, h("time", { datetime: since, title: Number.isNaN(at.getTime()) ? since : at.toISOString() }, fmt.age((now - at.getTime()) / 1000))),
    h(
      "td",
      null,
      runbook
        ? h("a", { href: runbook, rel: "noopener noreferrer", target: "_blank", "aria-label": `Runbook for ${a.alertname} (opens in a new tab)` }, "Runbook")
        : "",
    ),
  );
}

export const alertsPage: Mount = (main) => {
  const problem = alertRegion();
  const firing = table("Firing", COLUMNS, "alerts");
  const resolved = table("Resolved", COLUMNS, "alerts");
  const more = h("p", { class: "note", hidden: true }, `The ${LIMIT} latest resolved alerts are shown.`);
  const updated = h("span");
  let alive = true;

  main.append(
    heading("Alerts"),
    problem,
    h("p", { class: "meta" }, "From Alertmanager, refreshed every 15 s. Age: since an alert started firing, or since it resolved. ", updated),
    firing.table,
    resolved.table,
    more,
  );

  const stop = poll(async () => {
    try {
      const [f, r] = await Promise.all([fetchAlerts("firing", MAX_FIRING_PAGES), fetchAlerts("resolved", 1)]);
      if (!alive) return;
      const now = Date.now();
      firing.body.replaceChildren(...(f.items.length ? f.items.map((a) => alertRow(a, now)) : [emptyRow(COLUMNS.length, "No firing alerts")]));
      resolved.body.replaceChildren(...(r.items.length ? r.items.map((a) => alertRow(a, now)) : [emptyRow(COLUMNS.length, "No resolved alerts")]));
      more.hidden = !r.more;
      updated.textContent = `Updated ${fmt.clock(new Date())}.`;
      clearProblem(problem);
    } catch (err) {
      if (alive) showProblem(problem, err);
    }
  }, REFRESH_MS);

  return () => {
    alive = false;
    stop();
  };
};
