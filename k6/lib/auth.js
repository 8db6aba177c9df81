// Credentials for the load: setup() logs in once and hands the access
// token to every VU; flows that need a session of their own (refresh,
// login) keep one per VU.
//
//   TENANT, EMAIL, PASSWORD  an admin of the tenant under load (workflow
//                            creation and the Meta configuration are admin
//                            routes); the gates use the operator tenant's
//   METRICS_KEY              an API key with metrics:read (setup() and
//                            teardown() read GET /metrics/workers)
//   PUSH_KEY                 an API key with metrics:push (the metric pushes)
//   DRAIN_KEY                optional, jobs:drain: teardown() drains the Spin
//                            outbox with it when the depth stops falling
//
// Refresh tokens rotate on every use, and presenting a rotated one revokes
// its whole family (docs/api.md, "Refresh tokens"). So no refresh token is
// ever shared: a VU that refreshes logs in once itself and from then on
// refreshes only its own token, and forgets it (logging in anew next time)
// when a refresh fails, since a refresh whose answer was lost may have
// rotated it. Access tokens last 15 minutes: between 10 and 3 minutes
// before setup()'s expires (a random moment per VU, so that VUs do not all
// log in at once), a VU switches to a session of its own and refreshes it
// from then on, so soak runs of any length keep working. When a login or
// refresh for that is refused with 429, the VU waits for Retry-After and
// meanwhile keeps using the older token while it is valid.
import { fail } from 'k6';
import { Counter } from 'k6/metrics';
import { request, verify } from './http.js';

export const TENANT = __ENV.TENANT || '';
export const EMAIL = __ENV.EMAIL || '';
const PASSWORD = __ENV.PASSWORD || '';

// Renew an access token this long before it expires, plus up to
// RENEW_SPREAD_MS (drawn once per VU).
const RENEW_MARGIN_MS = 180 * 1000;
const RENEW_SPREAD_MS = 420 * 1000;
const renewAhead = RENEW_MARGIN_MS + Math.random() * RENEW_SPREAD_MS;
const withoutToken = new Counter('flows_without_token');
// No renewal before this (a 429's Retry-After).
let renewBlockedUntil = 0;

function noteRefusal(res) {
  if (res.status === 429) renewBlockedUntil = Date.now() + Math.max(1, Number(res.headers['Retry-After']) || 10) * 1000;
}

export const LOGIN_ROUTE = 'POST /v1/auth/login';
export const REFRESH_ROUTE = 'POST /v1/auth/refresh';
export const LOGOUT_ROUTE = 'POST /v1/auth/logout';

export function requireEnv(names) {
  const missing = names.filter((n) => !__ENV[n]);
  if (missing.length) fail(`set ${missing.join(', ')} (see the header of k6/lib/auth.js)`);
}

const TOKENS = {
  'an EdDSA access token': (b) => b.access_token.split('.').length === 3,
  'a tpr_ refresh token': (b) => b.refresh_token.startsWith('tpr_'),
  'Bearer, expires_in 900': (b) => b.token_type === 'Bearer' && b.expires_in === 900,
};

const sessionFrom = (body) => ({
  access: body.access_token,
  refresh: body.refresh_token,
  expiresAt: Date.now() + body.expires_in * 1000,
});

// One login. Answers the new session, or null (the failure is counted).
export function login(label = 'login', tags = {}) {
  const res = request('POST', '/v1/auth/login', { tenant: TENANT, email: EMAIL, password: PASSWORD }, { name: LOGIN_ROUTE, tags });
  noteRefusal(res);
  const body = verify(res, label, 200, TOKENS);
  return body ? sessionFrom(body) : null;
}

// In setup(): logs in once. The token goes to every VU; nobody refreshes it.
export function setupLogin() {
  requireEnv(['TENANT', 'EMAIL', 'PASSWORD']);
  const res = request('POST', '/v1/auth/login', { tenant: TENANT, email: EMAIL, password: PASSWORD }, { name: LOGIN_ROUTE, tags: { part: 'setup' } });
  const body = verify(res, 'setup login', 200, TOKENS);
  if (!body) {
    fail(`setup: logging in as ${EMAIL} to tenant ${TENANT} answered ${res.status}: ${String(res.body).slice(0, 300)}`);
  }
  const s = sessionFrom(body);
  return { token: s.access, token_expires_at: s.expiresAt };
}

// This VU's own session (never shared): null until it logs in.
let own = null;

export const ownSession = () => own;
export const adopt = (session) => {
  own = session;
};

// Swaps this VU's refresh token for new tokens; true when it worked.
export function refreshOwn(label = 'refresh') {
  const old = own.refresh;
  const res = request('POST', '/v1/auth/refresh', { refresh_token: old }, { name: REFRESH_ROUTE });
  noteRefusal(res);
  const body = verify(res, label, 200, { ...TOKENS, 'a new refresh token': (b) => b.refresh_token !== old });
  // A failed or lost refresh may have spent the token: never present it
  // again. A 429 did not: the limiter answers before the refresh is read.
  if (body) own = sessionFrom(body);
  else if (res.status !== 429) own = null;
  return !!body;
}

// The access token a flow should use now: this VU's own while it is fresh,
// else setup()'s while that is, else this VU's renewed (refreshed, or a new
// login). Null when none could be had: counted in flows_without_token.
export function accessToken(data) {
  const now = Date.now();
  if (own && own.expiresAt - now > renewAhead) return own.access;
  if (!own && data.token_expires_at - now > renewAhead) return data.token;
  // Due for renewal. While renewals are refused, the current token while it lasts.
  const current = own || { access: data.token, expiresAt: data.token_expires_at };
  const fallback = () => {
    if (current.expiresAt - Date.now() > 30 * 1000) return current.access;
    withoutToken.add(1);
    return null;
  };
  if (now < renewBlockedUntil) return fallback();
  if (own && refreshOwn('renew')) return own.access;
  if (Date.now() < renewBlockedUntil) return fallback();
  const session = login('renew login');
  if (session) {
    own = session;
    return own.access;
  }
  return fallback();
}
