// What the four scenarios share besides their load profile: setup() and
// teardown(), and the k6 options around the profile.
//
//   BUILD  the build's name in the summary and the baselines (workers,
//          spin, …: 1-32 of a-z, 0-9, -); default from GET /version:
//          cloudflare-workers → workers, spin → spin
import { fail } from 'k6';
import { setupLogin, requireEnv } from './auth.js';
import { envNumber } from './config.js';
import { request, verify } from './http.js';
import { drainAndRecord, snapshot } from './jobs.js';
import { thresholds, TREND_STATS } from './thresholds.js';
import { prepare } from './traffic.js';

const BUILDS = { 'cloudflare-workers': 'workers', spin: 'spin' };

export function options(name, profile, windowTag = 'stage') {
  const drainTimeout = envNumber('DRAIN_TIMEOUT', 120, { min: 0, max: 3600 });
  return {
    scenarios: { [name]: profile.scenario },
    thresholds: thresholds(name, profile.windows, windowTag),
    summaryTrendStats: TREND_STATS,
    setupTimeout: '180s',
    teardownTimeout: `${drainTimeout + 120}s`,
  };
}

// setup(): the build, a login, the tenant's Meta secret and workflows, and
// the job counts before the load.
export function setupRun() {
  requireEnv(['METRICS_KEY']);
  const started = new Date().toISOString();
  const res = request('GET', '/version', null, { name: 'GET /version', tags: { part: 'setup' } });
  const version = verify(res, 'setup: version', 200, { target: (b) => typeof b.target === 'string' });
  if (!version) fail(`setup: GET /version answered ${res.status}: is ${__ENV.BASE_URL} a Tepi API?`);
  const build = __ENV.BUILD || BUILDS[version.target] || version.target;
  if (!/^[a-z0-9-]{1,32}$/.test(build)) fail(`BUILD must be 1-32 of a-z, 0-9 and -, got ${build}`);
  const auth = setupLogin();
  const traffic = prepare(auth.token);
  const jobsBefore = snapshot();
  if (!jobsBefore) fail('setup: GET /metrics/workers failed: METRICS_KEY must be a metrics:read key');
  return { ...auth, ...traffic, build, revision: version.git_revision || null, started, jobs_before: jobsBefore };
}

// teardown(): waits for the jobs to drain and records them.
export function teardownRun(data) {
  drainAndRecord(data.jobs_before);
}
