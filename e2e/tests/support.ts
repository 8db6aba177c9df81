// What the specs share: the operator's credentials, API calls for setup
// (an admin's access token, API keys, traffic, alerts, baselines), signing
// in through the console, a watch over the page (console errors, CSP
// violations, the API calls it made with their ids) and screenshots.
import { test as base, expect, type APIRequestContext, type Page, type TestInfo } from "@playwright/test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export { expect };

export const ROOT = resolve(__dirname, "../..");
const env = process.env;

/** X-Request-ID as the API keeps it (docs/api.md, Common headers). */
export const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;
/** W3C traceparent, version 00: trace id, parent (span) id, flags. */
export const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

export interface Credentials {
  tenant: string;
  email: string;
  password: string;
}

export function credentials(): Credentials {
  const { E2E_TENANT: tenant, E2E_EMAIL: email, E2E_PASSWORD: password } = env;
  if (!tenant || !email || !password) {
    throw new Error("set E2E_TENANT, E2E_EMAIL and E2E_PASSWORD (an operator admin; scripts/e2e.sh does)");
  }
  return { tenant, email, password };
}

/** The parts of a traceparent, or null when it is not a valid one. */
export function parseTraceparent(value: string | undefined): { traceId: string; spanId: string } | null {
  const m = value ? TRACEPARENT.exec(value) : null;
  if (!m || /^0+$/.test(m[1]) || /^0+$/.test(m[2])) return null;
  return { traceId: m[1], spanId: m[2] };
}

/** A k6 summary's figures for one route (ms; error_rate 0–1). */
export interface BaselineFigures {
  p50: number;
  p95: number;
  p99: number;
  count: number;
  error_rate: number;
}

/** A baseline far slower and more failing than anything a local run serves. */
export const SLOW_BASELINE: BaselineFigures = { p50: 30_000, p95: 60_000, p99: 90_000, count: 100, error_rate: 0.5 };

export interface ProbeAlert {
  name: string;
  severity: string;
  summary: string;
  runbook: string;
  startsAt: string;
  fingerprint: string;
}

/**
 * A new alert: a fresh fingerprint (so a retried test delivers a new alert,
 * not a late repeat of one already resolved), a summary naming it, started
 * a minute ago.
 */
export function probeAlert(name: string, severity = "warning"): ProbeAlert {
  const fingerprint = Array.from({ length: 16 }, () => Math.floor(Math.random() * 16).toString(16)).join("");
  return {
    name,
    severity,
    summary: `${name} ${fingerprint}`,
    runbook: `https://runbooks.example.com/tepi/${name.toLowerCase()}`,
    startsAt: new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000).toISOString(),
    fingerprint,
  };
}

// ---------------------------------------------------------------------------
// The API, for setup and for checking state behind the console.

export class Api {
  private token: { value: string; until: number } | null = null;
  private keys = new Map<string, string>();

  constructor(readonly request: APIRequestContext) {}

  /** An operator admin's access token: E2E_ADMIN_TOKEN, else a login. */
  async adminToken(): Promise<string> {
    if (env.E2E_ADMIN_TOKEN) return env.E2E_ADMIN_TOKEN;
    if (this.token && Date.now() < this.token.until) return this.token.value;
    const res = await this.request.post("/v1/auth/login", { data: credentials() });
    expect(res.status(), `login through the API: ${await res.text()}`).toBe(200);
    const body = (await res.json()) as { access_token: string; expires_in: number };
    // Renewed a minute before it expires.
    this.token = { value: body.access_token, until: Date.now() + (body.expires_in - 60) * 1000 };
    return body.access_token;
  }

  async headers(): Promise<Record<string, string>> {
    return { authorization: `Bearer ${await this.adminToken()}` };
  }

  /** An API key with one scope, created once per worker and scope. */
  async key(scope: string): Promise<string> {
    const known = this.keys.get(scope);
    if (known) return known;
    const res = await this.request.post("/v1/api-keys", {
      headers: await this.headers(),
      data: { name: `e2e ${scope}`, scopes: [scope] },
    });
    expect(res.status(), `creating a ${scope} key: ${await res.text()}`).toBe(201);
    const { key } = (await res.json()) as { key: string };
    this.keys.set(scope, key);
    return key;
  }

  /**
   * Traffic the dashboard must count: `healthz` GET /healthz, `me`
   * authenticated GET /v1/auth/me and `missing` requests that answer 404.
   */
  async traffic({ healthz = 30, me = 5, missing = 3 } = {}): Promise<void> {
    for (let i = 0; i < healthz; i++) {
      expect((await this.request.get("/healthz")).status()).toBe(200);
    }
    const headers = await this.headers();
    for (let i = 0; i < me; i++) {
      expect((await this.request.get("/v1/auth/me", { headers })).status()).toBe(200);
    }
    for (let i = 0; i < missing; i++) {
      expect((await this.request.get(`/e2e/missing-${i}`)).status()).toBe(404);
    }
  }

  /**
   * Records a baseline the way scripts/k6-compare.py --record does (the
   * whole load's figures as the route "ALL"), with a baselines:write key.
   */
  async recordBaseline(branch: string, overall: BaselineFigures, rate: number): Promise<void> {
    const res = await this.request.put(`/v1/ops/baselines/${branch}`, {
      headers: { authorization: `Bearer ${await this.key("baselines:write")}` },
      data: {
        scenario: "smoke",
        build: "workers",
        summary: { error_rate: overall.error_rate, rate, routes: { ALL: overall, "GET /healthz": overall } },
      },
    });
    expect(res.status(), `PUT /v1/ops/baselines/${branch}: ${await res.text()}`).toBe(200);
  }

  /**
   * Delivers one alert as Alertmanager's webhook does (payload version 4),
   * with an alerts:write key, and expects the inbox to take the change.
   */
  async deliverAlert(alert: ProbeAlert, status: "firing" | "resolved"): Promise<void> {
    const labels = { alertname: alert.name, severity: alert.severity };
    const res = await this.request.post("/v1/ops/alerts", {
      headers: { authorization: `Bearer ${await this.key("alerts:write")}` },
      data: {
        version: "4",
        status,
        receiver: "tepi",
        groupKey: `{}:{alertname="${alert.name}"}`,
        groupLabels: { alertname: alert.name },
        commonLabels: labels,
        commonAnnotations: {},
        externalURL: "http://127.0.0.1:9093",
        truncatedAlerts: 0,
        alerts: [
          {
            status,
            labels,
            annotations: { summary: alert.summary, runbook_url: alert.runbook },
            startsAt: alert.startsAt,
            endsAt: status === "firing" ? "0001-01-01T00:00:00Z" : new Date().toISOString(),
            generatorURL: "http://127.0.0.1:9090/graph?g0.expr=vector%281%29",
            fingerprint: alert.fingerprint,
          },
        ],
      },
    });
    expect(res.status(), `POST /v1/ops/alerts (${status}): ${await res.text()}`).toBe(200);
    const body = (await res.json()) as { changed: { fingerprint: string; status: string }[] };
    expect(body.changed, "the inbox took the change").toContainEqual(
      expect.objectContaining({ fingerprint: alert.fingerprint, status }),
    );
  }

  /** The requests GET /metrics counts for one route, over every status. */
  async requestsServed(route: string): Promise<number> {
    const res = await this.request.get("/metrics", { headers: await this.headers() });
    if (res.status() !== 200) return -1;
    let total = 0;
    for (const line of (await res.text()).split("\n")) {
      if (line.startsWith("http_requests_total{") && line.includes(`route="${route}"`)) {
        total += Number(line.slice(line.lastIndexOf(" ") + 1));
      }
    }
    return total;
  }
}

// ---------------------------------------------------------------------------
// The page: what it logged, what CSP refused, the API calls it made.

export interface Exchange {
  method: string;
  path: string;
  status: number;
  requestHeaders: Record<string, string>;
  responseHeaders: Record<string, string>;
}

/**
 * Failed loads the console causes on purpose: on every load it asks for a
 * session, and without a cookie the API refuses (422 with no cookie at all,
 * 401 for a spent or revoked one; docs/api.md, POST /v1/auth/refresh).
 */
function expectedConsoleError(text: string, url: string): boolean {
  let path = "";
  try {
    path = new URL(url).pathname;
  } catch {
    return false;
  }
  return path === "/v1/auth/refresh" && /status of (401|422)\b/.test(text);
}

export class PageWatch {
  readonly consoleErrors: string[] = [];
  readonly pageErrors: string[] = [];
  readonly cspViolations: string[] = [];
  private readonly exchanges: Promise<Exchange | null>[] = [];

  private constructor(readonly page: Page) {}

  /** Starts watching; call before the first navigation. */
  static async attach(page: Page): Promise<PageWatch> {
    const watch = new PageWatch(page);
    await page.exposeFunction("__e2eCspViolation", (text: string) => {
      watch.cspViolations.push(text);
    });
    await page.addInitScript(() => {
      document.addEventListener(
        "securitypolicyviolation",
        (e) => {
          const report = (window as unknown as { __e2eCspViolation?: (t: string) => void }).__e2eCspViolation;
          report?.(`${e.effectiveDirective} refused ${e.blockedURI || "inline code"} (${e.sourceFile}:${e.lineNumber})`);
        },
        true,
      );
    });
    page.on("console", (msg) => {
      if (msg.type() !== "error") return;
      const where = msg.location().url;
      if (!expectedConsoleError(msg.text(), where)) watch.consoleErrors.push(`${msg.text()} (${where})`);
    });
    page.on("pageerror", (err) => watch.pageErrors.push(`${err.name}: ${err.message}`));
    page.on("response", (response) => {
      const request = response.request();
      const url = new URL(request.url());
      if (!url.pathname.startsWith("/v1/") && !url.pathname.startsWith("/api/")) return;
      watch.exchanges.push(
        Promise.all([request.allHeaders(), response.allHeaders()]).then(
          ([requestHeaders, responseHeaders]) => ({
            method: request.method(),
            path: url.pathname,
            status: response.status(),
            requestHeaders,
            responseHeaders,
          }),
          () => null, // the page went away first
        ),
      );
    });
    return watch;
  }

  /** The API calls (/v1/…, /api/…) the page made so far, with both sides' headers. */
  async apiExchanges(): Promise<Exchange[]> {
    return (await Promise.all(this.exchanges)).filter((e): e is Exchange => e !== null);
  }

  /** Fails on console errors, uncaught exceptions and CSP violations. */
  expectClean(): void {
    expect(this.cspViolations, "Content-Security-Policy violations").toEqual([]);
    expect(this.pageErrors, "uncaught exceptions in the page").toEqual([]);
    expect(this.consoleErrors, "console errors").toEqual([]);
  }
}

// ---------------------------------------------------------------------------
// The console.

export const h1 = (page: Page, name: string) => page.getByRole("heading", { level: 1, name, exact: true });
export const nav = (page: Page, name: string) =>
  page.getByRole("navigation").getByRole("link", { name, exact: true });

/** Fills the sign-in form (the console must already show it) and submits it. */
export async function submitSignIn(page: Page): Promise<void> {
  const { tenant, email, password } = credentials();
  await expect(h1(page, "Sign in")).toBeVisible();
  await page.getByLabel("Tenant", { exact: true }).fill(tenant);
  await page.getByLabel("Email", { exact: true }).fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await expect(h1(page, "Dashboard")).toBeVisible();
}

/** Opens the console's sign-in page and signs in as the operator admin. */
export async function signIn(page: Page): Promise<void> {
  await page.goto("/console/#/login");
  await submitSignIn(page);
}

/** A dashboard figure's value: the first number in its text (separators dropped). */
export function figureValue(text: string | null): number {
  const m = /-?\d+(?:\.\d+)?/.exec((text ?? "").replace(/(\d)[,\u202f\u00a0 ](?=\d{3}\b)/g, "$1"));
  return m ? Number(m[0]) : Number.NaN;
}

const SCREENSHOTS = resolve(ROOT, env.E2E_SCREENSHOT_DIR ?? "target/e2e/screenshots");

/** A full-page screenshot: target/e2e/screenshots/<name>-<project>.png. */
export async function screenshot(page: Page, name: string, info: TestInfo): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}-${info.project.name}.png`);
  await page.screenshot({ path, fullPage: true });
  await info.attach(`${name}.png`, { path, contentType: "image/png" });
}

/** Writes a small JSON result next to the report, for the gate's summary. */
export function writeResult(dir: string, name: string, value: unknown): void {
  const at = resolve(ROOT, dir);
  if (!existsSync(at)) mkdirSync(at, { recursive: true });
  writeFileSync(join(at, `${name}.json`), JSON.stringify(value, null, 2));
}

// ---------------------------------------------------------------------------
// Fixtures: `api` (one per worker, against the project's base URL) and
// `watch` (every test's page, watched from its first navigation).

export const test = base.extend<{ watch: PageWatch }, { api: Api }>({
  api: [
    async ({ playwright }, use, workerInfo) => {
      const baseURL = workerInfo.project.use.baseURL;
      if (!baseURL) throw new Error(`no base URL for project ${workerInfo.project.name} (set E2E_WORKERS_URL / E2E_SPIN_URL)`);
      const request = await playwright.request.newContext({ baseURL });
      await use(new Api(request));
      await request.dispose();
    },
    { scope: "worker" },
  ],
  watch: async ({ page }, use) => {
    await use(await PageWatch.attach(page));
  },
});
