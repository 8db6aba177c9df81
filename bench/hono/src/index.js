// Tepi's hot route written the way a Hono 4 user would, for `make bench`
// (scripts/bench.sh): GET /healthz and GET /v1/auth/me with Tepi's
// semantics — request id and trace context, security headers, EdDSA
// access tokens (hono/jwt over WebCrypto), the `api` rate limit, the D1
// read of the user, problem+json errors — so that the benchmark compares
// runtimes and implementations doing the same work, not different work.
//
// Bindings and variables (all optional): DB (D1, Tepi's schema),
// RATE_LIMITER_API (Rate Limiting), JWKS (Tepi's /.well-known/jwks.json
// body), JWT_ISSUER, JWT_AUDIENCE, RATE_LIMIT_API, ALLOWED_ORIGINS,
// TRUST_PLATFORM_PEER.

import { Hono } from "hono";
import { AuthError, authenticate } from "./auth.js";
import { decorate, requestContext } from "./context.js";
import { LocalTable, limit, parsePolicy } from "./ratelimit.js";

const USER_BY_ID = "SELECT id, email, role, created_at, updated_at FROM users WHERE tenant_id = ?1 AND id = ?2";
const REALM = 'Bearer realm="tepi"';
const TITLES = {
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  429: "Too Many Requests",
  503: "Service Unavailable",
};

// Per isolate, like Tepi's App: the rate-limit table and parsed settings.
const table = new LocalTable();
let settings = { env: undefined };
function config(env) {
  if (settings.env !== env) {
    settings = {
      env,
      policy: parsePolicy(env.RATE_LIMIT_API),
      // Unset: no origin is allowed, as in Tepi.
      allowedOrigins: (env.ALLOWED_ORIGINS ?? "")
        .split(",")
        .map((o) => o.trim())
        .filter((o) => o !== ""),
    };
  }
  return settings;
}

/**
 * An RFC 9457 problem document with Tepi's members (and `extensions`, such
 * as `retry_after`), keys in the alphabetical order Tepi writes them.
 */
function problem(c, status, code, detail, headers = {}, extensions = {}) {
  const members = {
    code,
    detail,
    instance: new URL(c.req.url).pathname,
    request_id: c.get("cx").requestId,
    status,
    title: TITLES[status],
    type: "about:blank",
    ...extensions,
  };
  const sorted = {};
  for (const key of Object.keys(members).sort()) sorted[key] = members[key];
  return new Response(JSON.stringify(sorted), {
    status,
    headers: { "content-type": "application/problem+json", ...headers },
  });
}

function authProblem(c, e) {
  switch (e.kind) {
    case "unauthenticated":
      return problem(c, 401, "unauthenticated", "This resource needs credentials: an access token or an API key.", {
        "www-authenticate": REALM,
      });
    case "invalid_token":
      return problem(c, 401, "invalid_token", `The access token was refused: ${e.reason}.`, {
        "www-authenticate": `${REALM}, error="invalid_token", error_description="${e.reason}"`,
      });
    case "invalid_api_key":
      return problem(c, 401, "invalid_api_key", "The API key is unknown or has been deleted.", {
        "www-authenticate": `${REALM}, error="invalid_token", error_description="unknown API key"`,
      });
    case "auth_unavailable":
      return problem(
        c,
        503,
        "auth_unavailable",
        "Authentication is unavailable: the signing keys are not configured. GET /readyz names the problem.",
      );
    default:
      return storageUnavailable(c);
  }
}

const storageUnavailable = (c) =>
  problem(c, 503, "storage_unavailable", "Storage is unavailable; retry later and quote the request id if it persists.");

/** A strong ETag as Tepi makes it: the first 16 bytes of the body's SHA-256, base64url, quoted. */
async function etag(body) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(body)));
  let binary = "";
  for (const b of digest.subarray(0, 16)) binary += String.fromCharCode(b);
  return `"${btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")}"`;
}

const rfc3339 = (secs) => new Date(secs * 1000).toISOString();

const app = new Hono();

// Context first, headers last, for every answer (404s and errors too).
app.use("*", async (c, next) => {
  c.set("cx", requestContext(c.req.raw.headers));
  await next();
  const { allowedOrigins } = config(c.env);
  decorate(c.res, {
    cx: c.get("cx"),
    rate: c.get("rate"),
    privateCache: c.get("privateCache") === true,
    origin: c.req.header("origin") ?? null,
    allowedOrigins,
  });
});

app.get("/healthz", (c) => c.json({ status: "ok" }));

app.get("/v1/auth/me", async (c) => {
  const env = c.env;
  const { policy } = config(env);
  const now = Date.now();
  let principal = null;
  let refusal = null;
  try {
    principal = await authenticate(c.req.raw, env, Math.floor(now / 1000));
  } catch (e) {
    if (!(e instanceof AuthError)) throw e;
    refusal = e;
  }
  // Limited right after authentication: by tenant and subject when the
  // credentials held, else by client address (not believed when
  // TRUST_PLATFORM_PEER is "false", as under wrangler dev).
  const peer = env.TRUST_PLATFORM_PEER === "false" ? null : c.req.header("cf-connecting-ip");
  const key = principal ? `api:t:${principal.tenant}:${principal.subject}` : `api:ip:${peer ?? "unknown"}`;
  const rate = await limit(table, env.RATE_LIMITER_API, key, policy, now * 1000);
  c.set("rate", rate);
  if (!rate.allowed) {
    return problem(
      c,
      429,
      "rate_limited",
      `Too many requests; retry after ${rate.retryAfterSecs} seconds (see the RateLimit header).`,
      { "retry-after": String(rate.retryAfterSecs) },
      { retry_after: rate.retryAfterSecs },
    );
  }
  if (refusal) return authProblem(c, refusal);
  // Any X-Tenant-ID other than the caller's tenant is refused.
  const claimed = c.req.header("x-tenant-id");
  if (claimed !== undefined && claimed !== principal.tenant) {
    return problem(c, 403, "tenant_mismatch", "X-Tenant-ID names another tenant than your credentials.");
  }
  if (principal.kind !== "user") return problem(c, 403, "forbidden", "Your role does not allow this.");
  c.set("privateCache", true);

  if (!env.DB) return storageUnavailable(c);
  let row;
  try {
    row = await env.DB.prepare(USER_BY_ID).bind(principal.tenant, principal.subject).first();
  } catch (e) {
    console.error(`user lookup failed: ${e}`);
    return storageUnavailable(c);
  }
  if (row === null) {
    return authProblem(c, new AuthError("invalid_token", "the token's user no longer exists"));
  }
  // Keys in Tepi's (alphabetical) order, so both bodies are the same bytes.
  const body = JSON.stringify({
    created_at: rfc3339(row.created_at),
    email: row.email,
    id: row.id,
    role: row.role,
    tenant: principal.tenant,
    updated_at: rfc3339(row.updated_at),
  });
  const tag = await etag(body);
  const headers = { "cache-control": "private, no-cache", etag: tag };
  const ifNoneMatch = c.req.header("if-none-match");
  if (ifNoneMatch && ifNoneMatch.split(",").some((t) => t.trim() === "*" || t.trim().replace(/^W\//, "") === tag)) {
    return new Response(null, { status: 304, headers });
  }
  return new Response(body, { status: 200, headers: { "content-type": "application/json", ...headers } });
});

// Known paths with another method: 405 with Allow; anything else: 404.
app.all("/healthz", (c) => problem(c, 405, "method_not_allowed", "This resource supports GET, HEAD.", { allow: "GET, HEAD" }));
app.all("/v1/auth/me", (c) => problem(c, 405, "method_not_allowed", "This resource supports GET, HEAD.", { allow: "GET, HEAD" }));
app.notFound((c) => problem(c, 404, "not_found", "No resource exists at this path."));

export default app;
