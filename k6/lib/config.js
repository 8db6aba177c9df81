// Settings shared by the load scenarios (k6/smoke.js, stress.js, soak.js,
// spike.js): the server under test and the named load profiles. Every
// value comes from the environment (k6 reads the process's variables);
// each scenario's header lists the ones it reads.
//
//   BASE_URL       required: the origin under test, e.g. http://127.0.0.1:8787
//                  (make dev) or https://tepi.<account>.workers.dev; no path
//   LOOPBACK_ONLY  1: refuse any BASE_URL whose host is not 127.0.0.1, ::1
//                  or localhost (the gates set it)
//   RATE, DURATION, MAX_RATE, STEP, STAGE, RAMP, SPIKE_RATE, SPIKE_DURATION,
//   BEFORE, AFTER, PREALLOCATED_VUS, MAX_VUS: the profiles below
//
// Rates are arrivals of flows (iterations of k6/lib/traffic.js) per
// second, whole numbers; a flow makes one to three requests, so the
// request rate is about 1.4 times the flow rate.

const num = (name, fallback, { min = 0, max = 1e6, integer = false } = {}) => {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    throw new Error(`${name} must be a${integer ? ' whole' : ''} number from ${min} to ${max}, got ${raw}`);
  }
  return n;
};

// k6 durations as the scenarios take them: 30s, 5m, 1h30m, 1500ms.
const DURATION_RE = /^(\d+h)?(\d+m(?!s))?(\d+s)?(\d+ms)?$/;

export function seconds(duration) {
  const m = DURATION_RE.exec(duration);
  if (!m || duration === '') throw new Error(`not a duration: ${duration}`);
  const part = (s, unit) => (s ? Number(s.slice(0, -unit.length)) : 0);
  return part(m[1], 'h') * 3600 + part(m[2], 'm') * 60 + part(m[3], 's') + part(m[4], 'ms') / 1000;
}

const dur = (name, fallback) => {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  if (!DURATION_RE.test(raw) || seconds(raw) <= 0) {
    throw new Error(`${name} must be a k6 duration such as 30s, 5m or 1h30m, got ${raw}`);
  }
  return raw;
};

export const envNumber = num;
export const envDuration = dur;

// The origin under test, without a trailing slash.
export const BASE_URL = (() => {
  const raw = (__ENV.BASE_URL || '').replace(/\/+$/, '');
  const m = /^(https?):\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/.exec(raw);
  if (!m) {
    throw new Error(`BASE_URL must be an http(s) origin without a path, e.g. http://127.0.0.1:8787, got "${__ENV.BASE_URL || ''}"`);
  }
  if (__ENV.LOOPBACK_ONLY === '1') {
    const host = m[2].toLowerCase();
    if (!['127.0.0.1', '[::1]', 'localhost'].includes(host)) {
      throw new Error(`LOOPBACK_ONLY=1: BASE_URL must be on 127.0.0.1, ::1 or localhost, got ${raw}`);
    }
  }
  return raw;
})();

const vus = (pre, max) => ({
  preAllocatedVUs: num('PREALLOCATED_VUS', pre, { min: 1, max: 5000, integer: true }),
  maxVUs: num('MAX_VUS', max, { min: 1, max: 5000, integer: true }),
});

const rate = (name, fallback) => num(name, fallback, { min: 1, max: 10000, integer: true });

// Each profile returns { scenario: <k6 scenario>, seconds: its length,
// describe: one line, windows: [{tag, from, to, target}] } where windows
// are the spans (seconds from the scenario's start) that scripts tag their
// requests with (stress: stages, spike: phases).
export const profiles = {
  // A few VUs at a low constant arrival rate: does every flow work?
  smoke() {
    const r = rate('RATE', 3);
    const d = dur('DURATION', '30s');
    return {
      scenario: { executor: 'constant-arrival-rate', rate: r, timeUnit: '1s', duration: d, ...vus(5, 20), gracefulStop: '10s' },
      seconds: seconds(d),
      describe: `${r} flows/s for ${d}`,
      windows: [],
    };
  },

  // Constant arrival rate for a long time: leaks, growing queues, slow drift.
  soak() {
    const r = rate('RATE', 5);
    const d = dur('DURATION', '30m');
    return {
      scenario: { executor: 'constant-arrival-rate', rate: r, timeUnit: '1s', duration: d, ...vus(10, 60), gracefulStop: '10s' },
      seconds: seconds(d),
      describe: `${r} flows/s for ${d}`,
      windows: [],
    };
  },

  // Up in steps from RATE by STEP to MAX_RATE: each step ramps for RAMP and
  // holds for STAGE; the holds are the stages the summary measures.
  stress() {
    const start = rate('RATE', 5);
    const step = rate('STEP', start);
    const max = rate('MAX_RATE', Math.max(start, 40));
    const stage = dur('STAGE', '30s');
    const ramp = dur('RAMP', '5s');
    if (max < start) throw new Error(`MAX_RATE (${max}) must be at least RATE (${start})`);
    const stages = [];
    const windows = [];
    let t = 0;
    let level = 0;
    for (let target = start; target <= max; target += step) {
      level += 1;
      stages.push({ target, duration: ramp });
      t += seconds(ramp);
      stages.push({ target, duration: stage });
      windows.push({ tag: String(level), from: t, to: t + seconds(stage), target });
      t += seconds(stage);
      if (level >= 50) throw new Error('stress: more than 50 stages; raise STEP or lower MAX_RATE');
    }
    stages.push({ target: 0, duration: '5s' });
    t += 5;
    return {
      scenario: {
        executor: 'ramping-arrival-rate',
        startRate: Math.max(1, Math.floor(start / 2)),
        timeUnit: '1s',
        stages,
        ...vus(10, Math.max(50, max * 4)),
        gracefulStop: '10s',
      },
      seconds: t,
      describe: `${start} to ${max} flows/s in steps of ${step}, each ramped for ${ramp} and held for ${stage}`,
      windows,
    };
  },

  // Low, then a sudden high, then low again: does it absorb the burst and
  // recover? RATE for BEFORE, SPIKE_RATE for SPIKE_DURATION (reached within
  // 2 s), RATE again for AFTER.
  spike() {
    const low = rate('RATE', 2);
    const high = rate('SPIKE_RATE', low * 10);
    const before = dur('BEFORE', '20s');
    const spike = dur('SPIKE_DURATION', '20s');
    const after = dur('AFTER', '30s');
    const b = seconds(before);
    const s = seconds(spike);
    const a = seconds(after);
    return {
      scenario: {
        executor: 'ramping-arrival-rate',
        startRate: low,
        timeUnit: '1s',
        stages: [
          { target: low, duration: before },
          { target: high, duration: '2s' },
          { target: high, duration: spike },
          { target: low, duration: '2s' },
          { target: low, duration: after },
        ],
        ...vus(10, Math.max(60, high * 4)),
        gracefulStop: '10s',
      },
      seconds: b + s + a + 4,
      describe: `${low} flows/s for ${before}, ${high} flows/s for ${spike}, ${low} flows/s for ${after}`,
      // The 2 s ramps between the phases are tagged `ramp`.
      windows: [
        { tag: 'before', from: 0, to: b, target: low },
        { tag: 'spike', from: b + 2, to: b + 2 + s, target: high },
        { tag: 'after', from: b + s + 4, to: b + s + a + 4, target: low },
      ],
    };
  },
};

// Where handleSummary writes <scenario>.json and <scenario>.txt.
export const SUMMARY_DIR = (__ENV.SUMMARY_DIR || 'target/k6').replace(/\/+$/, '');
