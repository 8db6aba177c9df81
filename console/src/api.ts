// The API client: one fetch wrapper that carries the session's access token
// and the request's ids, and the session itself.
//
// The access token lives in this module only (never in storage a script
// injected elsewhere could read); the refresh token is an HttpOnly cookie
// scoped to /v1/auth, so a reload restores the session by refreshing.

export interface Problem {
  status: number;
  title: string;
  detail?: string;
  code?: string;
  request_id?: string;
  errors?: { field: string; code?: string; message: string }[];
  /** Seconds, from `Retry-After` on a 429. */
  retryAfter?: number;
}

export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail ? `${problem.title}: ${problem.detail}` : problem.title);
  }
}

interface Claims {
  sub: string;
  tenant: string;
  role: string;
  exp: number;
}

interface TokenAnswer {
  access_token: string;
  expires_in: number;
}

// --- ids -----------------------------------------------------------------

function hex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// W3C Trace Context forbids all-zero ids.
function traceHex(bytes: number): string {
  for (;;) {
    const id = hex(bytes);
    if (/[^0]/.test(id)) return id;
  }
}

let traceId = traceHex(16);

/** One trace per page view: the router calls this on each route change,
 * the login page after signing in. */
export function newTrace(): void {
  traceId = traceHex(16);
}

/** Ids for one request: a new X-Request-ID and a new span of the page's
 * trace. The last ones are left on <body> for whoever debugs a page. */
export function requestIds(): { "X-Request-ID": string; traceparent: string } {
  const requestId = hex(16);
  document.body.dataset["requestId"] = requestId;
  document.body.dataset["traceId"] = traceId;
  return { "X-Request-ID": requestId, traceparent: `00-${traceId}-${traceHex(8)}-01` };
}

// --- session ---------------------------------------------------------------

let token: string | null = null;
let claims: Claims | null = null;
let refreshTimer: ReturnType<typeof setTimeout> | undefined;
/** The tenant typed at login, until a token names it. */
let loginTenant: string | null = null;
let lost: (reason: string) => void = () => {};

export const session = {
  get signedIn(): boolean {
    return token !== null;
  },
  get claims(): Claims | null {
    return claims;
  },
};

/** Called when the session ends by itself (its refresh failed). */
export function onSessionLost(f: (reason: string) => void): void {
  lost = f;
}

function decodeClaims(jwt: string): Claims | null {
  const part = jwt.split(".")[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, "=")), (c) => c.charCodeAt(0));
    const c = JSON.parse(new TextDecoder().decode(bytes)) as Partial<Claims>;
    if (typeof c.sub !== "string" || typeof c.tenant !== "string" || typeof c.exp !== "number") return null;
    return { sub: c.sub, tenant: c.tenant, role: typeof c.role === "string" ? c.role : "", exp: c.exp };
  } catch {
    return null;
  }
}

/** Bumped whenever the session ends here: an exchange that started
 * before (a refresh racing a sign-out) must not bring it back. */
let generation = 0;

function forget(): void {
  generation++;
  token = null;
  claims = null;
  clearTimeout(refreshTimer);
}

function adopt(answer: TokenAnswer, since: number): void {
  if (since !== generation) return;
  const c = decodeClaims(answer.access_token);
  if (!c) throw new ApiError({ status: 0, title: "Unexpected answer", detail: "The access token could not be read." });
  token = answer.access_token;
  claims = c;
  loginTenant = null;
  // Refresh a minute before expiry (a fifth of the lifetime when shorter):
  // timers in a background tab can fire late, and a 401 still recovers.
  const life = Math.max(answer.expires_in, 10);
  schedule((life - Math.min(60, life / 5)) * 1000);
}

function schedule(delayMs: number): void {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    refresh().then(
      (ok) => {
        if (!ok) lost("Your session has ended. Sign in again.");
      },
      // Unreachable or failing: keep the token while it lasts, try again.
      () => schedule(30_000),
    );
  }, delayMs);
}

let inflight: Promise<boolean> | null = null;

/** Swaps the refresh cookie for a new access token: true when signed in,
 * false when there is no session (no cookie, or a spent one); throws when
 * the API cannot answer. Concurrent callers share one exchange, and tabs
 * take turns (Web Locks): a refresh token is spent by its first use, and
 * presenting it twice revokes the whole session. */
export function refresh(): Promise<boolean> {
  inflight ??= exclusive(async () => {
    const since = generation;
    try {
      adopt(await request<TokenAnswer>("/v1/auth/refresh", { method: "POST", body: {}, auth: false }), since);
      return since === generation;
    } catch (e) {
      if (e instanceof ApiError && e.problem.status >= 400 && e.problem.status < 500 && e.problem.status !== 429) {
        forget();
        return false;
      }
      throw e;
    }
  }).finally(() => {
    inflight = null;
  });
  return inflight;
}

function exclusive<T>(f: () => Promise<T>): Promise<T> {
  // The lock resolves with the callback's promise, typed one level too deep.
  return "locks" in navigator ? navigator.locks.request("tepi.refresh", f).then((p) => p) : f();
}

export async function login(tenant: string, email: string, password: string): Promise<void> {
  loginTenant = tenant;
  const since = generation;
  adopt(
    await request<TokenAnswer>("/v1/auth/login", {
      method: "POST",
      body: { tenant, email, password, session: "cookie" },
      auth: false,
    }),
    since,
  );
}

/** Ends the session on the server (the cookie's family) and here, whatever
 * the server answers: the user asked to leave. Forgotten here first, so a
 * refresh answering meanwhile is ignored; the logout itself waits its
 * turn behind any refresh in flight (the same lock), so the cookie it
 * clears is the latest one. */
export async function logout(): Promise<void> {
  forget();
  await exclusive(() => request<void>("/v1/auth/logout", { method: "POST", body: {}, auth: false }));
}

// --- requests ----------------------------------------------------------------

export interface RequestOptions {
  method?: string;
  body?: unknown;
  /** Send the access token, and refresh once on a 401 (default true). */
  auth?: boolean;
}

function send(path: string, o: RequestOptions, bearer: string | null): Promise<Response> {
  const headers: Record<string, string> = { Accept: "application/json", ...requestIds() };
  if (bearer) headers["Authorization"] = `Bearer ${bearer}`;
  const tenant = claims?.tenant ?? loginTenant;
  if (tenant) headers["X-Tenant-ID"] = tenant;
  if (o.body !== undefined) headers["Content-Type"] = "application/json";
  return fetch(path, {
    method: o.method ?? "GET",
    headers,
    body: o.body === undefined ? null : JSON.stringify(o.body),
    credentials: "same-origin",
    cache: "no-store",
  }).catch(() => {
    // The reason (offline, DNS, a refused connection) is the browser's to log.
    throw new ApiError({ status: 0, title: "Network error", detail: "The API could not be reached. Check the connection and try again." });
  });
}

/** A JSON request to the API; answers the parsed body (undefined for 204)
 * or throws an ApiError holding the problem document. */
export async function request<T>(path: string, o: RequestOptions = {}): Promise<T> {
  const auth = o.auth ?? true;
  const used = auth ? token : null;
  let res = await send(path, o, used);
  if (res.status === 401 && auth && used !== null) {
    // Another call may have refreshed meanwhile; else refresh now. Retry once.
    const again = token !== used || (await refresh().catch(() => false));
    if (again && token) {
      res = await send(path, o, token);
    } else {
      lost("Your session has ended. Sign in again.");
    }
  }
  if (res.ok) return (res.status === 204 ? undefined : await res.json()) as T;
  throw new ApiError(await problemOf(res));
}

async function problemOf(res: Response): Promise<Problem> {
  let body: Record<string, unknown> = {};
  try {
    const parsed: unknown = await res.json();
    if (parsed && typeof parsed === "object") body = parsed as Record<string, unknown>;
  } catch {
    // Not JSON (a proxy's page): the status says enough.
  }
  const str = (v: unknown) => (typeof v === "string" && v ? v : undefined);
  const problem: Problem = {
    status: res.status,
    title: str(body["title"]) ?? (res.statusText || `HTTP ${res.status}`),
  };
  const detail = str(body["detail"]);
  if (detail) problem.detail = detail;
  const code = str(body["code"]);
  if (code) problem.code = code;
  const requestId = str(body["request_id"]) ?? res.headers.get("X-Request-ID") ?? undefined;
  if (requestId) problem.request_id = requestId;
  if (Array.isArray(body["errors"])) {
    problem.errors = (body["errors"] as unknown[]).flatMap((e) => {
      const o = (e ?? {}) as Record<string, unknown>;
      const message = str(o["message"]);
      return message ? [{ field: str(o["field"]) ?? "", message }] : [];
    });
  }
  const retry = Number(res.headers.get("Retry-After"));
  if (res.status === 429 && retry > 0) problem.retryAfter = retry;
  return problem;
}
