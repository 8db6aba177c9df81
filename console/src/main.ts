// The console: a hash router over one page load, so moving between pages
// keeps the access token in memory; a reload restores the session from the
// refresh cookie.

import { alertsPage } from "./alerts";
import { logout, newTrace, onSessionLost, refresh, request, session } from "./api";
import { baselinePage } from "./baseline";
import { dashboardPage } from "./dashboard";
import { loginPage } from "./login";
import type { Context, Mount } from "./page";
import { startVitals } from "./vitals";

const PAGES: Record<string, { title: string; mount: Mount }> = {
  login: { title: "Sign in", mount: loginPage },
  dashboard: { title: "Dashboard", mount: dashboardPage },
  baseline: { title: "Baselines", mount: baselinePage },
  alerts: { title: "Alerts", mount: alertsPage },
};

const byId = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const main = byId<HTMLElement>("main");
const nav = byId<HTMLElement>("nav");
const user = byId<HTMLElement>("user");
const email = byId<HTMLElement>("user-email");
const signOut = byId<HTMLButtonElement>("sign-out");

let unmount: (() => void) | null = null;
let ready = false;

const ctx: Context = {
  notice: null,
  problem: null,
  signedIn() {
    newTrace();
    void showUser();
    go("dashboard");
  },
};

function go(name: string): void {
  if (location.hash === `#/${name}`) render();
  else location.hash = `#/${name}`;
}

/** Another page than the one asked for: replaces the history entry, so Back
 * does not return to a page that only redirects. */
function redirect(name: string): void {
  history.replaceState(null, "", `#/${name}`);
  render();
}

function render(): void {
  if (!ready) return;
  const name = /^#\/([a-z]+)$/.exec(location.hash)?.[1] ?? "";
  if (!session.signedIn && name !== "login") return redirect("login");
  const page = PAGES[name];
  if (session.signedIn && (name === "login" || !page)) return redirect("dashboard");
  if (!page) return;

  unmount?.();
  unmount = null;
  newTrace();
  nav.hidden = user.hidden = !session.signedIn;
  for (const a of nav.querySelectorAll("a")) {
    if (a.getAttribute("href") === `#/${name}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `Tepi console — ${page.title}`;
  main.replaceChildren();
  unmount = page.mount(main, ctx);
  ctx.notice = null;
  ctx.problem = null;
  // Screen readers and keyboards start at the new page's heading.
  main.querySelector<HTMLElement>("h1")?.focus();
}

async function showUser(): Promise<void> {
  email.textContent = session.claims?.sub ?? "";
  try {
    const me = await request<{ email?: string }>("/v1/auth/me");
    if (me.email) email.textContent = me.email;
  } catch {
    // The subject stays shown; the page's own requests report problems.
  }
}

function backToLogin(notice: string): void {
  ctx.notice = notice;
  email.textContent = "";
  redirect("login");
}

signOut.addEventListener("click", () => {
  signOut.disabled = true;
  logout()
    .then(
      () => backToLogin("You have signed out."),
      () => backToLogin("Signed out of this page; the server could not be told, so the session may stay valid until it expires."),
    )
    .finally(() => {
      signOut.disabled = false;
    });
});

onSessionLost(backToLogin);
addEventListener("hashchange", render);
startVitals();

refresh()
  .then((signedIn) => {
    if (signedIn) void showUser();
  })
  .catch((err: unknown) => {
    ctx.problem = err;
  })
  .finally(() => {
    ready = true;
    render();
  });
