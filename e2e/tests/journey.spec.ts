// The operator's journey through the console on the Workers build: the
// dashboard counts real traffic, a seeded baseline is compared, an alert
// fires and resolves, Web Vitals are beaconed, the browser's request id
// reaches the access log, and signing out ends the session.
import { readFileSync } from "node:fs";
import type { Page } from "@playwright/test";
import {
  expect,
  figureValue,
  h1,
  nav,
  parseTraceparent,
  probeAlert,
  screenshot,
  signIn,
  SLOW_BASELINE,
  test,
} from "./support";

/** Opens a page through the header's navigation and waits for its heading. */
async function open(page: Page, link: string, heading = link): Promise<void> {
  await nav(page, link).click();
  await expect(h1(page, heading)).toBeVisible();
}

/** Leaves the page and comes back, so that it renders from fresh data. */
async function revisit(page: Page, link: string): Promise<void> {
  await open(page, "Dashboard");
  await open(page, link);
}

test("the dashboard counts the traffic the API served", async ({ page, api }, info) => {
  const before = await api.requestsServed("/healthz");
  await api.traffic({ healthz: 30, me: 5, missing: 3 });
  // The isolate flushes its counts to the aggregate every second in the gate
  // (METRICS_FLUSH_SECS=1); /metrics answers from the aggregate.
  await expect
    .poll(() => api.requestsServed("/healthz"), { message: "GET /healthz counted in /metrics", timeout: 60_000 })
    .toBeGreaterThanOrEqual(before + 30);

  await signIn(page);
  const requests = page.getByTestId("figure-requests");
  await expect(requests).toBeVisible();
  // The dashboard refreshes every 15 s; a first render may predate the flush.
  await expect
    .poll(async () => figureValue(await requests.textContent()), {
      message: "figure-requests counts the traffic driven above",
      timeout: 60_000,
    })
    .toBeGreaterThanOrEqual(30 + 5 + 3);
  await expect(page.getByTestId("figure-request-rate")).toHaveText(/\d/);
  await expect(page.getByTestId("figure-p95")).toHaveText(/\d/);
  await expect(page.getByRole("table", { name: "Queues" }).getByTestId(/^queue-/).first()).toBeVisible();
  await screenshot(page, "dashboard-traffic", info);
});

test("a seeded baseline is compared with the current figures", async ({ page, api }, info) => {
  await api.traffic({ healthz: 10, me: 2, missing: 0 });
  // A p95 of a minute and half the requests failing: the current figures
  // are below both, whatever this machine's speed.
  const branch = `e2e/journey-${Date.now().toString(36)}-${info.retry}`;
  await api.recordBaseline(branch, SLOW_BASELINE, 2.5);

  await signIn(page);
  await open(page, "Baselines");
  await expect(page).toHaveURL(/#\/baseline/);
  await page.getByLabel("Branch", { exact: true }).selectOption(branch);

  const table = page.getByRole("table", { name: "Current vs baseline" });
  await expect(table).toBeVisible();
  await expect(table.getByRole("columnheader")).toHaveText(["Metric", "Current", "Baseline", "Delta", "Threshold", "Result"]);
  const DELTA = 3;
  const RESULT = 5;
  const cell = (row: string, column: number) => table.getByTestId(row).locator("th, td").nth(column);
  for (const row of ["row-p95", "row-errors", "row-rate"]) await expect(table.getByTestId(row), row).toBeVisible();
  for (const row of ["row-p95", "row-errors"]) {
    // Current minus baseline: faster and fewer errors than the seeded run.
    await expect(cell(row, DELTA), `${row}: a signed delta, below the baseline`).toHaveText(/^\s*[-−]\s*\d/);
    // Judged against the load tests' thresholds, which this machine's speed decides.
    await expect(cell(row, RESULT), `${row}: pass or fail`).toHaveText(/^\s*(pass|fail)\s*$/);
  }
  await screenshot(page, "baseline", info);
});

test("an alert fires, then resolves, in the alert inbox", async ({ page, api }, info) => {
  const alert = probeAlert("E2EProbe", "warning");
  await api.deliverAlert(alert, "firing");
  await signIn(page);
  await open(page, "Alerts");
  await expect(page).toHaveURL(/#\/alerts/);
  const row = (table: string) =>
    page.getByRole("table", { name: table }).getByTestId("alert-E2EProbe").filter({ hasText: alert.summary });
  // Rendered on arrival; else the page's own 15 s refresh brings it.
  await expect(row("Firing")).toBeVisible({ timeout: 45_000 });
  await expect(row("Firing").getByRole("cell", { name: "warning" })).toBeVisible();
  await expect(row("Firing").getByRole("link")).toHaveAttribute("href", alert.runbook);
  await screenshot(page, "alerts", info);

  await api.deliverAlert(alert, "resolved");
  await revisit(page, "Alerts");
  await expect(row("Resolved")).toBeVisible({ timeout: 45_000 });
  await expect(row("Firing")).toHaveCount(0);
  await screenshot(page, "alerts-resolved", info);
});

test("Web Vitals are beaconed to /api/rum", async ({ page }) => {
  await signIn(page);
  await open(page, "Baselines");
  await open(page, "Alerts");
  await page.getByRole("heading", { level: 1 }).click();
  const beacon = page.waitForResponse(
    (r) => new URL(r.url()).pathname === "/api/rum" && r.request().method() === "POST",
  );
  await page.evaluate(() => document.dispatchEvent(new Event("tepi:flush-vitals")));
  const res = await beacon;
  expect(res.status()).toBe(204);
  const sent = JSON.parse(res.request().postData() ?? "null") as unknown;
  const beacons = (Array.isArray(sent) ? sent : [sent]) as { name?: unknown; value?: unknown }[];
  expect(beacons.length).toBeGreaterThan(0);
  for (const b of beacons) {
    expect(["LCP", "INP", "CLS", "TTFB"]).toContain(b.name);
    expect(typeof b.value).toBe("number");
  }
});

test("the browser's request id and trace reach the API's access log", async ({ page, watch }) => {
  const logFile = process.env.E2E_WORKERS_LOG;
  test.skip(!logFile, "E2E_WORKERS_LOG (wrangler dev's log) is not set");
  await signIn(page);
  await open(page, "Alerts");
  const calls = (await watch.apiExchanges()).filter((c) => c.status < 500);
  expect(calls.length, "the console called the API").toBeGreaterThan(0);
  const call = calls[calls.length - 1];
  const requestId = call.requestHeaders["x-request-id"];
  const traceId = parseTraceparent(call.requestHeaders["traceparent"])?.traceId;
  expect(requestId, `${call.method} ${call.path}: X-Request-ID`).toBeTruthy();
  expect(traceId, `${call.method} ${call.path}: traceparent`).toBeTruthy();

  const logged = () => {
    for (const line of readFileSync(logFile!, "utf8").split("\n")) {
      const at = line.indexOf("{");
      if (at < 0 || !line.includes(requestId)) continue;
      try {
        const entry = JSON.parse(line.slice(at)) as Record<string, unknown>;
        if (entry.request_id === requestId) {
          return { request_id: entry.request_id, trace_id: entry.trace_id, route: entry.route, status: entry.status };
        }
      } catch {
        // not one of the API's JSON lines
      }
    }
    return null;
  };
  await expect
    .poll(logged, { message: `an access-log line with request_id ${requestId} in ${logFile}`, timeout: 30_000 })
    .toMatchObject({ request_id: requestId, trace_id: traceId, status: call.status });
});

test("signing out ends the session", async ({ page, context, api }) => {
  await signIn(page);
  const cookie = (await context.cookies()).find((c) => c.name === "tepi_refresh");
  expect(cookie, "a tepi_refresh cookie after signing in").toBeDefined();

  const logout = page.waitForResponse(
    (r) => new URL(r.url()).pathname === "/v1/auth/logout" && r.request().method() === "POST",
  );
  await page.getByRole("button", { name: "Sign out", exact: true }).click();
  expect((await logout).status()).toBe(204);
  await expect(h1(page, "Sign in")).toBeVisible();
  await expect(page).toHaveURL(/#\/login/);
  expect((await context.cookies()).map((c) => c.name), "the refresh cookie is gone").not.toContain("tepi_refresh");

  // A reload finds no session to restore.
  await page.reload();
  await expect(h1(page, "Sign in")).toBeVisible();
  await expect(h1(page, "Dashboard")).toHaveCount(0);
  await expect(page.getByRole("button", { name: "Sign out", exact: true })).toHaveCount(0);

  // From the page, with whatever cookies it still has: refused. The API
  // answers 422 to `{}` without a cookie (no token at all) and 401 to a
  // cookie whose session ended (docs/api.md, POST /v1/auth/refresh).
  const fromPage = await page.evaluate(async () => {
    const res = await fetch("/v1/auth/refresh", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
      credentials: "same-origin",
    });
    return { status: res.status, body: await res.text() };
  });
  expect([401, 422], `POST /v1/auth/refresh from the page after signing out: ${fromPage.body}`).toContain(
    fromPage.status,
  );
  // The signed-out session's own token, presented again: revoked on the server.
  const replay = await api.request.post("/v1/auth/refresh", { data: { refresh_token: cookie!.value } });
  expect(replay.status(), `the signed-out session's refresh token: ${await replay.text()}`).toBe(401);
});
