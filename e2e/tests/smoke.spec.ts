// Both builds: the console loads under its Content-Security-Policy, signs
// in, shows the dashboard, and every API call it makes carries a request id
// and a trace context that the API echoes and continues.
import { expect, h1, parseTraceparent, REQUEST_ID, screenshot, submitSignIn, test } from "./support";

const FIGURES = [
  "figure-requests",
  "figure-request-rate",
  "figure-error-rate-4xx",
  "figure-error-rate-5xx",
  "figure-rate-limited",
  "figure-p50",
  "figure-p95",
  "figure-p99",
];

test("sign in, see the dashboard, every API call traced", async ({ page, context, watch }, info) => {
  await test.step("the console's page is served under a strict Content-Security-Policy", async () => {
    const res = await page.goto("/console/");
    expect(res, "an answer for /console/").not.toBeNull();
    expect(res!.status()).toBe(200);
    const headers = await res!.allHeaders();
    expect(headers["content-type"]).toMatch(/^text\/html/);
    const csp = headers["content-security-policy"] ?? "";
    const directives = new Map(
      csp
        .split(";")
        .map((d) => d.trim().split(/\s+/))
        .filter((parts) => parts[0])
        .map((parts) => [parts[0].toLowerCase(), parts.slice(1)] as const),
    );
    expect(directives.get("script-src"), `script-src in ${JSON.stringify(csp)}`).toContain("'self'");
    expect(csp, "no inline code allowed").not.toContain("'unsafe-inline'");
    expect(csp, "no eval allowed").not.toContain("'unsafe-eval'");
  });

  await test.step("without a session the console asks to sign in", async () => {
    await expect(page).toHaveURL(/\/console\/#\/login/);
    await expect(h1(page, "Sign in")).toBeVisible();
    await screenshot(page, "login", info);
  });

  await test.step("signing in leads to the dashboard", async () => {
    await submitSignIn(page);
    await expect(page).toHaveURL(/#\/dashboard/);
    for (const id of FIGURES) await expect(page.getByTestId(id), id).toBeVisible();
    await expect(page.getByRole("table", { name: "Queues" })).toBeVisible();
    await screenshot(page, "dashboard", info);
  });

  await test.step("the session's refresh token is an HttpOnly cookie scripts cannot read", async () => {
    const cookie = (await context.cookies()).find((c) => c.name === "tepi_refresh");
    expect(cookie, "a tepi_refresh cookie after signing in").toBeDefined();
    expect(cookie!.httpOnly).toBe(true);
    expect(cookie!.path).toBe("/v1/auth");
    const visible = await page.evaluate(() => ({
      cookies: document.cookie,
      storage: [...Object.values(localStorage), ...Object.values(sessionStorage)].join("\n"),
    }));
    expect(visible.cookies).not.toContain("tepi_refresh");
    expect(visible.storage).not.toContain(cookie!.value);
  });

  await test.step("a reload keeps the session: one refresh with the cookie, no new sign-in", async () => {
    const refreshed = page.waitForResponse(
      (r) => new URL(r.url()).pathname === "/v1/auth/refresh" && r.request().method() === "POST",
    );
    await page.reload();
    expect((await refreshed).status(), "the refresh cookie is exchanged for a new access token").toBe(200);
    await expect(h1(page, "Dashboard")).toBeVisible();
    await expect(page).toHaveURL(/#\/dashboard/);
  });

  await test.step("every API call carries X-Request-ID and traceparent; the API echoes and continues them", async () => {
    const calls = await watch.apiExchanges();
    expect(calls.map((c) => `${c.method} ${c.path}`)).toContain("POST /v1/auth/login");
    expect(calls.length).toBeGreaterThan(1);
    for (const call of calls) {
      const what = `${call.method} ${call.path}`;
      const id = call.requestHeaders["x-request-id"];
      expect(id, `${what}: X-Request-ID sent`).toMatch(REQUEST_ID);
      const sent = parseTraceparent(call.requestHeaders["traceparent"]);
      expect(sent, `${what}: valid traceparent sent (${call.requestHeaders["traceparent"]})`).not.toBeNull();
      expect(call.responseHeaders["x-request-id"], `${what}: X-Request-ID echoed`).toBe(id);
      const answered = parseTraceparent(call.responseHeaders["traceparent"]);
      expect(answered, `${what}: valid traceparent answered (${call.responseHeaders["traceparent"]})`).not.toBeNull();
      expect(answered!.traceId, `${what}: the API continues the browser's trace`).toBe(sent!.traceId);
      expect(answered!.spanId, `${what}: the API's own span`).not.toBe(sent!.spanId);
    }
    // <body data-request-id data-trace-id>: the ids of the last call made.
    const body = page.locator("body");
    await expect(body).toHaveAttribute("data-request-id", REQUEST_ID);
    await expect(body).toHaveAttribute("data-trace-id", /^[0-9a-f]{32}$/);
    await expect
      .poll(
        async () => {
          const [id, trace] = await Promise.all([body.getAttribute("data-request-id"), body.getAttribute("data-trace-id")]);
          const call = (await watch.apiExchanges()).find((c) => c.requestHeaders["x-request-id"] === id);
          return call ? parseTraceparent(call.requestHeaders["traceparent"])?.traceId === trace : "not one of the page's calls";
        },
        { message: "<body data-request-id data-trace-id> name one of the page's calls" },
      )
      .toBe(true);
  });

  await test.step("no console errors, uncaught exceptions or CSP violations", async () => {
    watch.expectClean();
  });
});
