// Building DOM without HTML strings: text is always a text node, so nothing
// from the API is ever parsed as markup. No `style` attributes either: the
// Content-Security-Policy has no 'unsafe-inline' for styles.

import { ApiError, type Problem } from "./api";

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === false || v === null || v === undefined) continue;
    el.setAttribute(k, v === true ? "" : String(v));
  }
  el.append(...children.filter((c): c is Node | string => c !== null && c !== undefined && c !== false));
  return el;
}

/** A region that announces problems: hidden while empty, so it is not in
 * the accessibility tree until there is something to say. */
export function alertRegion(): HTMLDivElement {
  return h("div", { role: "alert", class: "problem", hidden: true });
}

/** Shows an error in an alert region: a problem document's title and
 * detail, the fields at fault, the request id to quote; never a stack. */
export function showProblem(region: HTMLElement, error: unknown): void {
  const p: Problem =
    error instanceof ApiError ? error.problem : { status: 0, title: "Something went wrong", detail: "The page hit an unexpected error. Reload to try again." };
  if (!(error instanceof ApiError)) console.error(error);
  const retry = p.retryAfter ? `Try again in ${p.retryAfter} s.` : null;
  region.replaceChildren(h("p", null, h("strong", null, p.title), p.detail ? ` ${p.detail}` : null, retry ? ` ${retry}` : null));
  if (p.errors?.length) region.append(h("ul", null, ...p.errors.map((e) => h("li", null, e.field ? `${e.field}: ${e.message}` : e.message))));
  if (p.request_id) region.append(h("p", { class: "request-id" }, "Request ID: ", h("code", null, p.request_id)));
  region.hidden = false;
}

export function clearProblem(region: HTMLElement): void {
  region.hidden = true;
  region.replaceChildren();
}

/** The page's one h1, focusable so the router can move focus to it. */
export const heading = (text: string) => h("h1", { tabindex: -1 }, text);

/** A table with a caption and column headers; rows go into its tbody. */
export function table(caption: string, columns: string[], cls = ""): { table: HTMLTableElement; body: HTMLTableSectionElement } {
  const body = h("tbody");
  const t = h(
    "table",
    { class: cls || null },
    h("caption", null, caption),
    h("thead", null, h("tr", null, ...columns.map((c) => h("th", { scope: "col" }, c)))),
    body,
  );
  return { table: t, body };
}

/** A single row saying there is nothing to list. */
export const emptyRow = (columns: number, text: string) => h("tr", { class: "nothing" }, h("td", { colspan: columns }, text));
