// The request context and the headers every answer carries, as Tepi's core
// sets them (core/src/api/context.rs, security.rs, cors.rs and the
// pipeline's decoration step), so that both servers do the same work and
// send the same bytes.

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;
const LOWER_HEX = /^[0-9a-f]*$/;

export const SECURITY_HEADERS = [
  ["strict-transport-security", "max-age=63072000; includeSubDomains"],
  ["x-content-type-options", "nosniff"],
  ["referrer-policy", "no-referrer"],
  ["content-security-policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"],
  ["x-frame-options", "DENY"],
  ["cross-origin-opener-policy", "same-origin"],
  ["permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()"],
];

const EXPOSED_HEADERS =
  "X-Request-ID, traceparent, ETag, Retry-After, RateLimit, RateLimit-Policy, " +
  "WWW-Authenticate, Location, Idempotent-Replayed, Content-Disposition";

function hex(bytes) {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

/** `n` random bytes as lowercase hex, never all zeros (W3C ids must not be). */
function randomHex(n) {
  const bytes = new Uint8Array(n);
  do crypto.getRandomValues(bytes);
  while (bytes.every((b) => b === 0));
  return hex(bytes);
}

/**
 * W3C `traceparent`: the trace id and flags of a valid parent, else null.
 * Versions other than 00 are read by their first four fields; `ff` is
 * invalid; all-zero ids are invalid.
 */
function parseTraceparent(raw) {
  const parts = raw.replace(/^[ \t]+|[ \t]+$/g, "").split("-");
  if (parts.length < 4) return null;
  const [version, trace, span, flags] = parts;
  if (version === "ff" || version.length !== 2 || !LOWER_HEX.test(version)) return null;
  if (version === "00" && parts.length !== 4) return null;
  if (trace.length !== 32 || span.length !== 16 || flags.length !== 2) return null;
  if (!LOWER_HEX.test(trace) || !LOWER_HEX.test(span) || !LOWER_HEX.test(flags)) return null;
  if (/^0+$/.test(trace) || /^0+$/.test(span)) return null;
  return { traceId: trace, flags: parseInt(flags, 16) };
}

/** The request id and this hop's `traceparent`, from the request's headers. */
export function requestContext(headers) {
  const incomingId = headers.get("x-request-id");
  const requestId = incomingId !== null && REQUEST_ID.test(incomingId) ? incomingId : randomHex(16);
  // Several traceparent headers arrive joined with ", ", which no valid
  // value contains: invalid, as in Tepi.
  const raw = headers.get("traceparent");
  const parent = raw === null ? null : parseTraceparent(raw);
  const traceId = parent ? parent.traceId : randomHex(16);
  const flags = parent ? parent.flags & 0x01 : 0x01;
  const traceparent = `00-${traceId}-${randomHex(8)}-0${flags}`;
  return { requestId, traceparent };
}

/**
 * Every answer's headers: rate-limit state, security headers, ids, `Vary`
 * (with Authorization once a per-caller cache policy applies), the CORS
 * grant for an allowed origin, and `Cache-Control: no-store` unless the
 * handler chose one.
 */
export function decorate(res, { cx, rate, privateCache, origin, allowedOrigins }) {
  const h = res.headers;
  if (rate) {
    h.set("ratelimit-policy", rate.policyHeader);
    h.set("ratelimit", rate.stateHeader);
  }
  for (const [name, value] of SECURITY_HEADERS) h.set(name, value);
  h.set("x-request-id", cx.requestId);
  h.set("traceparent", cx.traceparent);
  h.set("vary", privateCache ? "Origin, Authorization" : "Origin");
  if (origin !== null && allowedOrigins.includes(origin)) {
    h.set("access-control-allow-origin", origin);
    h.set("access-control-expose-headers", EXPOSED_HEADERS);
  }
  if (!h.has("cache-control")) h.set("cache-control", "no-store");
}
