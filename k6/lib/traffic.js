// The mixed traffic: what a tenant's web frontend, its machines and Meta
// send Tepi, one function per flow. Each iteration of a scenario runs one
// flow, picked at random by weight:
//
//   flow             weight  requests (each tagged name = Tepi's route pattern)
//   me                  22   GET /v1/auth/me
//   inbox               15   GET /v1/notifications
//   web_vitals          15   POST /api/rum (4 beacons, no credentials)
//   inbox_read          10   GET /v1/notifications → POST /v1/notifications/{id}/read
//   upload               8   POST /v1/uploads → PUT /v1/uploads/{id}/content → GET /v1/uploads/{id}
//   workflow_run         8   POST /v1/workflows/{id}/runs → GET /v1/workflows/{id}/runs/{run_id}
//   meta_webhook         8   POST /v1/meta/webhook?tenant=… (signed X-Hub-Signature-256)
//   metrics_push         8   PUT /metrics/job/k6/instance/vu-<n> (PUSH_KEY)
//   workflow_create      3   POST /v1/workflows (→ DELETE /v1/workflows/{id} of this VU's
//                            oldest once it made more than 2)
//   refresh              2   POST /v1/auth/refresh of this VU's own session
//                            (its first time: POST /v1/auth/login to start one)
//   login                1   POST /v1/auth/login → GET /v1/auth/me → POST /v1/auth/logout
//                            (the VU's first login is kept as its own session instead)
//
// A flow makes about 1.4 requests on average. WEIGHTS overrides some or
// all weights: WEIGHTS="login=0,refresh=0,upload=20" (0 turns a flow off);
// they are relative and need not sum to 100. The login and refresh flows
// make about 0.04 requests of the `login` rate-limit class per flow (whose
// default policy admits 10 a minute per address after a burst of 5): more
// than about 4 flows/s against default policies needs login=0,refresh=0.
//
// What the jobs queues get from it: every upload's content is an
// `uploads` job; every run a `workflows` job; every Meta delivery a
// `meta-events` job, which starts a run of the tenant's event workflow (a
// `workflows` job). Every run's notify step writes to the admins' inboxes,
// which the inbox flows read. `notifications` (webhook deliveries) gets
// nothing: its targets must be reachable from the server under test.
//
// setup() (prepare below) configures the tenant's Meta app secret with
// PUT /v1/meta/config — replacing the tenant's Meta configuration, so load
// a tenant of its own — unless META_APP_SECRET gives the secret already
// configured; it reuses or creates the workflows `k6 load: manual` and
// `k6 load: meta.message.*` (one notify step each) and sends the admins one
// notification, so the inbox is never empty.
import crypto from 'k6/crypto';
import { fail } from 'k6';
import { Counter } from 'k6/metrics';
import { accessToken, adopt, EMAIL, login, LOGIN_ROUTE, LOGOUT_ROUTE, ownSession, refreshOwn, REFRESH_ROUTE, TENANT } from './auth.js';
import { request, verify } from './http.js';

export const ROUTES = {
  login: LOGIN_ROUTE,
  refresh: REFRESH_ROUTE,
  logout: LOGOUT_ROUTE,
  me: 'GET /v1/auth/me',
  inbox: 'GET /v1/notifications',
  read: 'POST /v1/notifications/{id}/read',
  workflowCreate: 'POST /v1/workflows',
  workflowDelete: 'DELETE /v1/workflows/{id}',
  runCreate: 'POST /v1/workflows/{id}/runs',
  runGet: 'GET /v1/workflows/{id}/runs/{run_id}',
  uploadDeclare: 'POST /v1/uploads',
  uploadContent: 'PUT /v1/uploads/{id}/content',
  uploadGet: 'GET /v1/uploads/{id}',
  meta: 'POST /v1/meta/webhook',
  push: 'PUT /metrics/{grouping}',
  rum: 'POST /api/rum',
};

export const DEFAULT_WEIGHTS = {
  me: 22,
  inbox: 15,
  web_vitals: 15,
  inbox_read: 10,
  upload: 8,
  workflow_run: 8,
  meta_webhook: 8,
  metrics_push: 8,
  workflow_create: 3,
  refresh: 2,
  login: 1,
};

export const WEIGHTS = (() => {
  const w = { ...DEFAULT_WEIGHTS };
  for (const part of (__ENV.WEIGHTS || '').split(',').filter((p) => p.trim())) {
    const m = /^\s*([a-z_]+)\s*=\s*(\d+(?:\.\d+)?)\s*$/.exec(part);
    if (!m || !(m[1] in DEFAULT_WEIGHTS)) {
      throw new Error(`WEIGHTS: "${part}" is not flow=weight with a flow of ${Object.keys(DEFAULT_WEIGHTS).join(', ')}`);
    }
    w[m[1]] = Number(m[2]);
  }
  if (!Object.values(w).some((v) => v > 0)) throw new Error('WEIGHTS: every flow is off');
  return w;
})();

// Flows that found nothing to act on (an empty inbox): not failures.
const skipped = new Counter('flows_skipped');

const PUSH_GROUPS = 20;
const PUSH_JOB = 'k6';
const WORKFLOW_MANUAL = 'k6 load: manual';
const WORKFLOW_EVENT = 'k6 load: meta.message.*';
const NOTIFY_STEP = { type: 'notify', role: 'admin', message: 'k6 load test run' };

const hex = (n) => crypto.hexEncode(crypto.randomBytes(n));
const VU_TAG = hex(4);
const pick = (list) => list[Math.floor(Math.random() * list.length)];
const between = (lo, hi) => lo + Math.random() * (hi - lo);

// Printable ASCII, so that bytes equal characters for size and sha256.
const FILLER = (() => {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;-\n';
  let s = '';
  for (let i = 0; i < 4096; i += 1) s += alphabet[Math.floor(Math.random() * alphabet.length)];
  return s;
})();

const is = {
  notification: (n) => /^ntf_[0-9a-f]{24}$/.test(n.id) && typeof n.subject === 'string' && 'read_at' in n,
  runStatus: (s) => ['requested', 'running', 'succeeded'].includes(s),
};

// --- setup ------------------------------------------------------------------

function findWorkflow(token, name) {
  let cursor = '';
  for (let page = 0; page < 20; page += 1) {
    const res = request('GET', `/v1/workflows?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, null, {
      name: 'GET /v1/workflows',
      token,
      tags: { part: 'setup' },
    });
    const body = verify(res, 'setup: list workflows', 200, { items: (b) => Array.isArray(b.items) });
    if (!body) fail(`setup: GET /v1/workflows answered ${res.status}`);
    const found = body.items.find((w) => w.name === name);
    if (found) return found.id;
    if (!body.next_cursor) return null;
    cursor = body.next_cursor;
  }
  return null;
}

function ensureWorkflow(token, name, trigger) {
  const id = findWorkflow(token, name);
  if (id) return id;
  const res = request('POST', '/v1/workflows', { name, trigger, steps: [NOTIFY_STEP] }, {
    name: ROUTES.workflowCreate,
    token,
    tags: { part: 'setup' },
  });
  const body = verify(res, 'setup: create workflow', 201, { id: (b) => b.id.startsWith('wf_') });
  if (!body) fail(`setup: POST /v1/workflows answered ${res.status}: ${String(res.body).slice(0, 300)}`);
  return body.id;
}

export function prepare(token) {
  const weightOn = (flow) => WEIGHTS[flow] > 0;
  if (weightOn('metrics_push') && !__ENV.PUSH_KEY) fail('set PUSH_KEY (a metrics:push key), or WEIGHTS=metrics_push=0');
  const tags = { part: 'setup' };

  let signWith = __ENV.META_APP_SECRET || '';
  if (weightOn('meta_webhook') && !signWith) {
    signWith = `k6-${hex(24)}`;
    const res = request('PUT', '/v1/meta/config', { verify_token: `k6-verify-${hex(12)}`, app_secret: signWith }, {
      name: 'PUT /v1/meta/config',
      token,
      tags,
    });
    if (!verify(res, 'setup: Meta config', 204)) fail(`setup: PUT /v1/meta/config answered ${res.status}: ${String(res.body).slice(0, 300)}`);
  }

  const workflow = ensureWorkflow(token, WORKFLOW_MANUAL, { type: 'manual' });
  if (weightOn('meta_webhook')) ensureWorkflow(token, WORKFLOW_EVENT, { type: 'event', event_type: 'meta.message.*' });

  const res = request('POST', '/v1/notifications', { to: { role: 'admin' }, subject: 'k6 load test', body: 'A load test started.' }, {
    name: 'POST /v1/notifications',
    token,
    tags,
  });
  if (!verify(res, 'setup: seed the inbox', 201, { recipients: (b) => b.recipients >= 1 })) {
    fail(`setup: POST /v1/notifications answered ${res.status}: ${String(res.body).slice(0, 300)}`);
  }
  return { app_secret: signWith, workflow, run_id: hex(6) };
}

// --- flows ------------------------------------------------------------------

function me(data, token = accessToken(data), label = 'me') {
  if (!token) return;
  verify(request('GET', '/v1/auth/me', null, { name: ROUTES.me, token }), label, 200, {
    'the caller': (b) => b.email === EMAIL.toLowerCase() && b.tenant === TENANT && /^usr_/.test(b.id),
  });
}

function inboxPage(token, label) {
  const body = verify(request('GET', '/v1/notifications?limit=20', null, { name: ROUTES.inbox, token }), label, 200, {
    'items are notifications': (b) => Array.isArray(b.items) && b.items.every(is.notification),
    'next_cursor member': (b) => 'next_cursor' in b,
  });
  return body ? body.items : null;
}

function inbox(data) {
  const token = accessToken(data);
  if (token) inboxPage(token, 'inbox');
}

function inboxRead(data) {
  const token = accessToken(data);
  if (!token) return;
  const items = inboxPage(token, 'inbox_read: list');
  if (!items) return;
  if (!items.length) {
    skipped.add(1, { flow: 'inbox_read' });
    return;
  }
  const target = items.find((n) => n.read_at === null) || items[0];
  verify(request('POST', `/v1/notifications/${target.id}/read`, null, { name: ROUTES.read, token }), 'inbox_read: mark', 200, {
    'the notification, read': (b) => b.id === target.id && typeof b.read_at === 'string',
  });
}

function webVitals() {
  const beacons = [
    { name: 'LCP', value: Math.round(between(600, 4500)), rating: 'good', id: `v4-${VU_TAG}-lcp` },
    { name: 'INP', value: Math.round(between(40, 600)), id: `v4-${VU_TAG}-inp` },
    { name: 'CLS', value: Number(between(0, 0.3).toFixed(3)), id: `v4-${VU_TAG}-cls` },
    { name: 'TTFB', value: Math.round(between(80, 1500)), navigationType: 'navigate' },
  ];
  const res = request('POST', '/api/rum', JSON.stringify(beacons), {
    name: ROUTES.rum,
    headers: { 'content-type': 'text/plain;charset=UTF-8' },
  });
  verify(res, 'web_vitals', 204, { 'no body': (_, r) => !r.body || r.body.length === 0 });
}

function upload(data) {
  const token = accessToken(data);
  if (!token) return;
  const size = 256 + Math.floor(Math.random() * 3840);
  const head = `k6 ${VU_TAG} ${__ITER} ${Date.now()}\n`;
  const content = (head + FILLER).slice(0, Math.max(size, head.length));
  const sha256 = crypto.sha256(content, 'hex');
  const declared = verify(
    request('POST', '/v1/uploads', { filename: `k6-${VU_TAG}-${__ITER}.txt`, content_type: 'text/plain', size: content.length, sha256 }, {
      name: ROUTES.uploadDeclare,
      token,
    }),
    'upload: declare',
    201,
    { 'pending, as declared': (b) => /^upl_/.test(b.id) && b.status === 'pending' && b.size === content.length && b.sha256 === sha256 },
  );
  if (!declared) return;
  const stored = verify(
    request('PUT', `/v1/uploads/${declared.id}/content`, content, {
      name: ROUTES.uploadContent,
      token,
      headers: { 'content-type': 'text/plain' },
    }),
    'upload: content',
    200,
    { stored: (b) => b.id === declared.id && ['stored', 'ready'].includes(b.status) },
  );
  if (!stored) return;
  verify(request('GET', `/v1/uploads/${declared.id}`, null, { name: ROUTES.uploadGet, token }), 'upload: status', 200, {
    'stored or ready': (b) => b.id === declared.id && ['stored', 'ready'].includes(b.status) && b.sha256 === sha256,
  });
}

// This VU's workflows (workflow_create), newest last.
const mine = [];

function startRun(token, workflow, label) {
  const run = verify(
    request('POST', `/v1/workflows/${workflow}/runs`, { input: { k6: __ITER } }, {
      name: ROUTES.runCreate,
      token,
      headers: { 'idempotency-key': `k6-${VU_TAG}-${__ITER}-${hex(4)}` },
    }),
    `${label}: start`,
    201,
    { 'a new run': (b) => /^run_/.test(b.id) && b.workflow_id === workflow && b.status === 'requested' && b.steps.length === 1 },
  );
  if (!run) return;
  verify(request('GET', `/v1/workflows/${workflow}/runs/${run.id}`, null, { name: ROUTES.runGet, token }), `${label}: read`, 200, {
    'the run': (b) => b.id === run.id && is.runStatus(b.status) && b.steps.length === 1,
  });
}

function workflowRun(data) {
  const token = accessToken(data);
  if (token) startRun(token, mine.length ? pick(mine) : data.workflow, 'workflow_run');
}

function workflowCreate(data) {
  const token = accessToken(data);
  if (!token) return;
  const name = `k6 load ${data.run_id} ${VU_TAG}-${__ITER}`;
  const created = verify(
    request('POST', '/v1/workflows', { name, trigger: { type: 'manual' }, steps: [NOTIFY_STEP] }, { name: ROUTES.workflowCreate, token }),
    'workflow_create',
    201,
    { 'the workflow': (b) => /^wf_/.test(b.id) && b.name === name && b.trigger.type === 'manual' && b.steps.length === 1 },
  );
  if (!created) return;
  mine.push(created.id);
  if (mine.length > 2) {
    const old = mine.shift();
    verify(request('DELETE', `/v1/workflows/${old}`, null, { name: ROUTES.workflowDelete, token }), 'workflow_create: delete the oldest', 204);
  }
}

function metaWebhook(data) {
  const id = `wamid.k6-${data.run_id}-${VU_TAG}-${__ITER}`;
  const body = JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [
      {
        id: 'WABA-K6',
        changes: [
          {
            field: 'messages',
            value: { messages: [{ id, from: '15550001111', timestamp: String(Math.floor(Date.now() / 1000)), type: 'text', text: { body: 'hello from k6' } }] },
          },
        ],
      },
    ],
  });
  const signature = crypto.hmac('sha256', data.app_secret, body, 'hex');
  const res = request('POST', `/v1/meta/webhook?tenant=${encodeURIComponent(TENANT)}`, body, {
    name: ROUTES.meta,
    headers: { 'content-type': 'application/json', 'x-hub-signature-256': `sha256=${signature}` },
  });
  verify(res, 'meta_webhook', 200, { 'one new item': (b) => b.received === 1 && b.new === 1 });
}

// Per VU: how many pushes it made (a counter that only grows).
let pushes = 0;

function metricsPush() {
  pushes += 1;
  const instance = `vu-${((__VU - 1) % PUSH_GROUPS) + 1}`;
  const text =
    '# HELP k6_load_pushes_total Pushes of this k6 VU.\n' +
    '# TYPE k6_load_pushes_total counter\n' +
    `k6_load_pushes_total{vu="${__VU}"} ${pushes}\n` +
    '# HELP k6_load_last_push_timestamp_seconds When this VU last pushed.\n' +
    '# TYPE k6_load_last_push_timestamp_seconds gauge\n' +
    `k6_load_last_push_timestamp_seconds ${Math.floor(Date.now() / 1000)}\n`;
  const res = request('PUT', `/metrics/job/${PUSH_JOB}/instance/${instance}`, text, {
    name: ROUTES.push,
    token: __ENV.PUSH_KEY,
    headers: { 'content-type': 'text/plain; version=0.0.4' },
  });
  verify(res, 'metrics_push', 200, { 'no body': (_, r) => !r.body || r.body.length === 0 });
}

// Whether this VU's first login was kept as its session.
let keptOne = false;

function loginFlow(data) {
  const session = login('login');
  if (!session) return;
  me(data, session.access, 'login: me');
  if (!keptOne && !ownSession()) {
    keptOne = true;
    adopt(session);
    return;
  }
  const res = request('POST', '/v1/auth/logout', { refresh_token: session.refresh }, { name: ROUTES.logout });
  verify(res, 'login: logout', 204);
}

function refresh() {
  if (!ownSession()) {
    const session = login('refresh: first login');
    if (!session) return;
    adopt(session);
  }
  refreshOwn('refresh');
}

export const FLOWS = {
  me: (data) => me(data),
  inbox,
  web_vitals: webVitals,
  inbox_read: inboxRead,
  upload,
  workflow_run: workflowRun,
  meta_webhook: metaWebhook,
  metrics_push: metricsPush,
  workflow_create: workflowCreate,
  refresh,
  login: loginFlow,
};

const CUMULATIVE = (() => {
  let sum = 0;
  return Object.entries(WEIGHTS)
    .filter(([, w]) => w > 0)
    .map(([flow, w]) => {
      sum += w;
      return [flow, sum];
    });
})();
const TOTAL = CUMULATIVE[CUMULATIVE.length - 1][1];

// One iteration: a flow picked by weight.
export function runFlow(data) {
  const r = Math.random() * TOTAL;
  const [flow] = CUMULATIVE.find(([, upto]) => r < upto) || CUMULATIVE[CUMULATIVE.length - 1];
  FLOWS[flow](data);
}
