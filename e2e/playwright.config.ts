// Browser tests of the operator console, run by `make e2e` (scripts/e2e.sh)
// against both builds: the `workers` project (the Workers build under
// wrangler dev) runs every spec; the `spin` project (the Spin build under
// tools/spin-test-host) runs the smoke spec. Pick one with --project.
//
// Environment (scripts/e2e.sh sets all of it):
//   E2E_WORKERS_URL, E2E_SPIN_URL   each project's base URL (else E2E_BASE_URL)
//   E2E_TENANT, E2E_EMAIL, E2E_PASSWORD   an operator admin's credentials
//   E2E_ADMIN_TOKEN                 optional: an access token for setup calls
//   E2E_WORKERS_LOG                 wrangler dev's log (the access-log check)
//   E2E_REPORT_DIR, E2E_OUTPUT_DIR, E2E_SCREENSHOT_DIR, E2E_JSON_REPORT
//   CHROMIUM_BIN                    default /usr/bin/chromium (Debian's)
import { defineConfig, type ReporterDescription } from "@playwright/test";
import { resolve } from "node:path";

const root = resolve(__dirname, "..");
const env = process.env;

const reporters: ReporterDescription[] = [
  ["list"],
  ["html", { outputFolder: resolve(root, env.E2E_REPORT_DIR ?? "target/e2e/report"), open: "never" }],
];
if (env.E2E_JSON_REPORT) reporters.push(["json", { outputFile: resolve(root, env.E2E_JSON_REPORT) }]);

export default defineConfig({
  testDir: "tests",
  outputDir: resolve(root, env.E2E_OUTPUT_DIR ?? "target/e2e/results"),
  // Two cores and one wrangler dev: one browser at a time, and waits sized
  // for a busy machine rather than a fast one.
  workers: 1,
  fullyParallel: false,
  retries: 1,
  timeout: 120_000,
  expect: { timeout: 15_000 },
  forbidOnly: true,
  reporter: reporters,
  use: {
    baseURL: env.E2E_BASE_URL,
    headless: true,
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
    actionTimeout: 30_000,
    navigationTimeout: 60_000,
    launchOptions: {
      executablePath: env.CHROMIUM_BIN ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
      ],
    },
  },
  projects: [
    {
      name: "workers",
      testMatch: ["journey.spec.ts", "smoke.spec.ts", "a11y.spec.ts"],
      use: { baseURL: env.E2E_WORKERS_URL ?? env.E2E_BASE_URL },
    },
    {
      name: "spin",
      testMatch: ["smoke.spec.ts"],
      use: { baseURL: env.E2E_SPIN_URL ?? env.E2E_BASE_URL },
    },
  ],
});
