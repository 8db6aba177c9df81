// axe-core on every page of the console (WCAG 2.0 and 2.1, A and AA): a
// serious or critical violation fails; every violation, minor ones too, is
// listed in the test's annotations and attached as JSON. Each page's counts
// go to target/e2e/axe/<page>.json for the gate's summary.
import AxeBuilder from "@axe-core/playwright";
import type { Page, TestInfo } from "@playwright/test";
import { expect, h1, nav, probeAlert, signIn, SLOW_BASELINE, test, writeResult } from "./support";

const TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
const BLOCKING = new Set(["serious", "critical"]);
const AXE_DIR = process.env.E2E_AXE_DIR ?? "target/e2e/axe";

async function audit(page: Page, name: string, info: TestInfo): Promise<void> {
  const { violations } = await new AxeBuilder({ page }).withTags(TAGS).analyze();
  const lines = violations.map((v) => {
    const nodes = v.nodes.map((n) => n.target.join(" ")).slice(0, 5);
    const more = v.nodes.length > nodes.length ? ` and ${v.nodes.length - nodes.length} more` : "";
    return `[${v.impact ?? "unknown"}] ${v.id}: ${v.help} at ${nodes.join(", ")}${more} (${v.helpUrl})`;
  });
  for (const line of lines) info.annotations.push({ type: "axe", description: `${name}: ${line}` });
  await info.attach(`axe-${name}.json`, {
    body: JSON.stringify(violations, null, 2),
    contentType: "application/json",
  });
  const byImpact: Record<string, number> = {};
  for (const v of violations) byImpact[v.impact ?? "unknown"] = (byImpact[v.impact ?? "unknown"] ?? 0) + 1;
  const blocking = violations.filter((v) => BLOCKING.has(v.impact ?? ""));
  writeResult(AXE_DIR, name, { page: name, project: info.project.name, violations: byImpact, blocking: blocking.length });
  expect(
    blocking.length,
    `axe on the ${name} page: ${blocking.length} serious or critical violation(s); all of them:\n${lines.join("\n")}`,
  ).toBe(0);
}

test("sign-in page", async ({ page }, info) => {
  await page.goto("/console/#/login");
  await expect(h1(page, "Sign in")).toBeVisible();
  await expect(page.getByRole("button", { name: "Sign in", exact: true })).toBeEnabled();
  await audit(page, "login", info);
});

test("dashboard", async ({ page }, info) => {
  await signIn(page);
  await expect(page.getByTestId("figure-requests")).toBeVisible();
  await expect(page.getByRole("table", { name: "Queues" })).toBeVisible();
  await audit(page, "dashboard", info);
});

test("baselines page", async ({ page, api }, info) => {
  // A baseline to compare with, so that the comparison table is audited too.
  const branch = `e2e/a11y-${Date.now().toString(36)}`;
  await api.recordBaseline(branch, SLOW_BASELINE, 2.5);
  await signIn(page);
  await nav(page, "Baselines").click();
  await expect(h1(page, "Baselines")).toBeVisible();
  await page.getByLabel("Branch", { exact: true }).selectOption(branch);
  await expect(page.getByRole("table", { name: "Current vs baseline" }).getByTestId("row-p95")).toBeVisible();
  await audit(page, "baseline", info);
});

test("alerts page", async ({ page, api }, info) => {
  // One firing alert with a runbook link, resolved afterwards.
  const alert = probeAlert("E2EA11y", "critical");
  await api.deliverAlert(alert, "firing");
  try {
    await signIn(page);
    await nav(page, "Alerts").click();
    await expect(h1(page, "Alerts")).toBeVisible();
    await expect(page.getByRole("table", { name: "Firing" }).getByTestId("alert-E2EA11y")).toBeVisible({
      timeout: 45_000,
    });
    await expect(page.getByRole("table", { name: "Resolved" })).toBeVisible();
    await audit(page, "alerts", info);
  } finally {
    await api.deliverAlert(alert, "resolved");
  }
});
