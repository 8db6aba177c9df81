import { login } from "./api";
import { alertRegion, clearProblem, h, heading, showProblem } from "./dom";
import type { Mount } from "./page";

// The tenant is not a secret; remembering it saves typing it every time.
const TENANT_KEY = "tepi.tenant";

function remembered(): string {
  try {
    return localStorage.getItem(TENANT_KEY) ?? "";
  } catch {
    return ""; // storage disabled
  }
}

function remember(tenant: string): void {
  try {
    localStorage.setItem(TENANT_KEY, tenant);
  } catch {
    // storage disabled: nothing to remember with
  }
}

export const loginPage: Mount = (main, ctx) => {
  const problem = alertRegion();
  const field = (id: string, label: string, attrs: Record<string, string | boolean>) =>
    h("p", { class: "field" }, h("label", { for: id }, label), h("input", { id, name: id, required: true, ...attrs }));
  const tenant = field("tenant", "Tenant", { autocomplete: "off", autocapitalize: "none", spellcheck: "false", value: remembered() });
  const email = field("email", "Email", { type: "email", autocomplete: "username", autocapitalize: "none", spellcheck: "false" });
  const password = field("password", "Password", { type: "password", autocomplete: "current-password" });
  const button = h("button", { type: "submit" }, "Sign in");
  // method="post": should a submit ever escape the handler, the password
  // still never lands in a URL.
  const form = h("form", { method: "post", class: "login" }, tenant, email, password, h("p", null, button));
  const input = (p: HTMLElement) => p.querySelector("input") as HTMLInputElement;

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    clearProblem(problem);
    const t = input(tenant).value.trim();
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    login(t, input(email).value.trim(), input(password).value)
      .then(() => {
        remember(t);
        ctx.signedIn();
      })
      .catch((err: unknown) => {
        showProblem(problem, err);
        input(password).select();
      })
      .finally(() => {
        button.disabled = false;
        form.removeAttribute("aria-busy");
      });
  });

  main.append(heading("Sign in"));
  if (ctx.notice) main.append(h("p", { role: "status", class: "notice" }, ctx.notice));
  main.append(problem, form);
  if (ctx.problem) showProblem(problem, ctx.problem);
  return () => {};
};
