// The thresholds every scenario shares. k6 exits 99 when one is crossed.
//
//   http_req_duration p(95) < P95_MS (300)   the latency objective (docs/ops.md,
//                                             "Service level objectives"): 95 % of
//                                             requests answered within 300 ms
//   http_req_failed   rate < 0.01            at most 1 % of answers unexpected
//                                             (a status other than 2xx/3xx, or
//                                             429 where a scenario allows it)
//   checks            rate >= 0.99           the bodies say what docs/api.md says
//   per route: http_req_duration{name:<route>} p(95) < ROUTE_P95_MS, when
//              set (e.g. ROUTE_P95_MS=300). Off by default: in a short run a
//              route with few requests (logins: an Argon2id hash each, a
//              few per minute) has a p95 that is nearly its slowest answer,
//              and would fail the run on one slow moment of a busy machine.
//              The objective is over all requests; per route, compare with
//              a baseline (scripts/k6-compare.py)
//   jobs_undrained    value == 0             the background jobs the run
//                                             started drained within
//                                             DRAIN_TIMEOUT (k6/lib/jobs.js)
//
// The other entries only make k6 keep a sub-metric for the summary (a
// route's error rate, a stage's requests): their conditions always hold.
import { envNumber } from './config.js';
import { ROUTES } from './traffic.js';

export const P95_MS = envNumber('P95_MS', 300, { min: 1, max: 600000 });
export const ROUTE_P95_MS = envNumber('ROUTE_P95_MS', 0, { min: 0, max: 600000 });
export const MAX_ERROR_RATE = 0.01;
export const MIN_CHECKS_RATE = 0.99;

// scenario: the k6 scenario's name (requests of setup() and teardown() are
// outside it); windows: the stage or phase tags of the profile.
export function thresholds(scenario, windows = [], windowTag = 'stage') {
  const t = {
    http_req_duration: [`p(95)<${P95_MS}`],
    http_req_failed: [`rate<${MAX_ERROR_RATE}`],
    checks: [`rate>=${MIN_CHECKS_RATE}`],
    jobs_undrained: ['value==0'],
    // The load itself, without setup() and teardown(): the summary's totals.
    [`http_reqs{scenario:${scenario}}`]: ['count>=0'],
    [`http_req_duration{scenario:${scenario}}`]: ['max>=0'],
    [`http_req_failed{scenario:${scenario}}`]: ['rate>=0'],
    [`iterations{scenario:${scenario}}`]: ['count>=0'],
  };
  for (const route of Object.values(ROUTES)) {
    t[`http_req_duration{name:${route}}`] = [ROUTE_P95_MS > 0 ? `p(95)<${ROUTE_P95_MS}` : 'max>=0'];
    t[`http_req_failed{name:${route}}`] = ['rate>=0'];
  }
  for (const w of windows) {
    t[`http_reqs{${windowTag}:${w.tag}}`] = ['count>=0'];
    t[`http_req_duration{${windowTag}:${w.tag}}`] = ['max>=0'];
    t[`http_req_failed{${windowTag}:${w.tag}}`] = ['rate>=0'];
    t[`iterations{${windowTag}:${w.tag}}`] = ['count>=0'];
    t[`rate_limited{${windowTag}:${w.tag}}`] = ['count>=0'];
  }
  return t;
}

// What the summary's trends keep.
export const TREND_STATS = ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'];
