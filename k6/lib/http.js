// Requests and their checks, shared by the flows (traffic.js), the
// sessions (auth.js) and the job drain (jobs.js).
//
// Every request is tagged with `name` = Tepi's route pattern
// (`GET /v1/uploads/{id}`), so k6's per-route figures line up with
// http_requests_total{route=…} on GET /metrics, and carries an
// X-Request-ID (`k6-<vu prefix>-<iteration>-<n>`) to find it in the logs.
//
// 429 is never expected by default: it counts as a failed request and a
// failed check. A scenario that means to meet the rate limiter (spike.js)
// calls allow429(true) at init; then a 429 is an expected answer of that
// request (responseCallback), its check is that it carries Retry-After, and
// the flow stops there. Either way every 429 is counted in `rate_limited`.
import http from 'k6/http';
import crypto from 'k6/crypto';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { BASE_URL } from './config.js';

export const rateLimited = new Counter('rate_limited');

const WITH_429 = http.expectedStatuses({ min: 200, max: 399 }, 429);
let tolerate429 = false;

export function allow429(on) {
  tolerate429 = !!on;
}

export function allowing429() {
  return tolerate429;
}

// A per-VU prefix: each VU runs this module's init code itself.
const PREFIX = crypto.hexEncode(crypto.randomBytes(4));
let serial = 0;
// The route of the latest request, for verify().
let lastName = '';

// request(method, path, body, {name, token, headers, tags}) → response.
// body: a string is sent as is; an object as JSON.
export function request(method, path, body, opts) {
  const headers = { 'x-request-id': `k6-${PREFIX}-${typeof __ITER === 'undefined' ? 's' : __ITER}-${(serial += 1)}`, ...(opts.headers || {}) };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let payload = body;
  if (body !== null && body !== undefined && typeof body !== 'string') {
    payload = JSON.stringify(body);
    if (!headers['content-type']) headers['content-type'] = 'application/json';
  }
  lastName = opts.name;
  const params = { headers, tags: { ...(opts.tags || {}), name: opts.name } };
  if (tolerate429) params.responseCallback = WITH_429;
  return http.request(method, `${BASE_URL}${path}`, payload === undefined ? null : payload, params);
}

const parse = (res) => {
  try {
    return res.json();
  } catch (_) {
    return null;
  }
};

// verify(res, label, status, {what: (body, res) => bool}) → the parsed body
// (or {} for an answer without one) when the status and every body check
// hold, else null. A tolerated 429 is checked for Retry-After and answers
// null too, so the flow stops. Call it right after the request.
export function verify(res, label, status, bodyChecks = {}) {
  if (res.status === 429) {
    rateLimited.add(1, { name: lastName });
    if (tolerate429) {
      check(res, { [`${label}: 429 carries Retry-After`]: (r) => Number(r.headers['Retry-After']) >= 1 });
      return null;
    }
  }
  const body = res.body && res.body.length ? parse(res) : null;
  const checks = { [`${label}: status ${status}`]: (r) => r.status === status };
  for (const [what, fn] of Object.entries(bodyChecks)) {
    checks[`${label}: ${what}`] = (r) => {
      try {
        return !!fn(body, r);
      } catch (_) {
        return false;
      }
    };
  }
  return check(res, checks) ? body || {} : null;
}
