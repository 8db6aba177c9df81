// Tepi's edge rate limiting for the `api` route class (core/src/ratelimit):
// GCRA per key in a bounded per-isolate table, then the Workers Rate
// Limiting binding when one is bound. Keys are `api:t:<tenant>:<subject>`
// for verified callers, `api:ip:<address>` otherwise.

/**
 * The class's policy from `RATE_LIMIT_API` (`<limit>/<period>[;burst=<n>]`).
 * Unset or invalid: Tepi's default, 1200/1m;burst=120.
 */
export function parsePolicy(raw) {
  const fallback = { limit: 1200, periodSecs: 60, burst: 120 };
  const m = raw ? /^\s*(\d+)\s*\/\s*(\d+)([smh])\s*(?:;\s*burst=(\d+)\s*)?$/.exec(raw) : null;
  if (!m) {
    if (raw) console.warn(`RATE_LIMIT_API ${JSON.stringify(raw)} is not <limit>/<period>[;burst=<n>]; using the default`);
    return fallback;
  }
  const limit = Number(m[1]);
  const periodSecs = Number(m[2]) * { s: 1, m: 60, h: 3600 }[m[3]];
  const burst = m[4] === undefined ? limit : Number(m[4]);
  const burstOk = m[4] === undefined || (burst >= 1 && burst <= 100_000);
  const valid = limit >= 1 && limit <= 1_000_000 && periodSecs >= 1 && periodSecs <= 86_400 && burstOk;
  return valid ? { limit, periodSecs, burst } : fallback;
}

/** One GCRA decision at `now` (Unix µs) given the stored TAT; ported from core/src/ratelimit/gcra.rs. */
function decide(stored, now, policy) {
  const interval = Math.floor((policy.periodSecs * 1_000_000) / Math.max(policy.limit, 1));
  const tolerance = interval * (Math.max(policy.burst, 1) - 1);
  const ceiling = now + tolerance + interval;
  const tat = Math.min(Math.max(stored ?? now, now), ceiling);
  if (tat - now > tolerance) {
    return { allowed: false, tat, remaining: 0, retryAfterMicros: tat - now - tolerance, resetMicros: tat - now };
  }
  const next = tat + interval;
  const headroom = Math.max(tolerance + interval - (next - now), 0);
  return {
    allowed: true,
    tat: next,
    remaining: Math.floor(headroom / Math.max(interval, 1)),
    retryAfterMicros: 0,
    resetMicros: next - now,
  };
}

const CAPACITY = 10_000;

/** The isolate's table: at most CAPACITY keys, forgetting refilled ones first, then the least recently used. */
export class LocalTable {
  #entries = new Map(); // key -> TAT, in order of last use

  decide(key, now, policy) {
    const stored = this.#entries.get(key);
    const decision = decide(stored, now, policy);
    if (stored !== undefined) this.#entries.delete(key);
    else if (decision.allowed && this.#entries.size >= CAPACITY) this.#evict(now);
    if (decision.allowed) this.#entries.set(key, decision.tat);
    else if (stored !== undefined) this.#entries.set(key, stored);
    return decision;
  }

  #evict(now) {
    for (const [key, tat] of this.#entries) if (tat <= now) this.#entries.delete(key);
    if (this.#entries.size >= CAPACITY) this.#entries.delete(this.#entries.keys().next().value);
  }
}

/**
 * Decides one request of the `api` class: the local table, then the binding
 * (which counts per fixed window, so a refusal waits out the period). A
 * failing binding admits, as in Tepi.
 */
export async function limit(table, binding, key, policy, nowMicros) {
  const decision = table.decide(key, nowMicros, policy);
  if (decision.allowed && binding) {
    try {
      const { success } = await binding.limit({ key });
      if (!success) {
        decision.allowed = false;
        decision.remaining = 0;
        decision.retryAfterMicros = policy.periodSecs * 1_000_000;
      }
    } catch (e) {
      console.warn(`rate-limit binding failed; admitting: ${e}`);
    }
  }
  return {
    allowed: decision.allowed,
    retryAfterSecs: Math.max(Math.ceil(decision.retryAfterMicros / 1_000_000), 1),
    policyHeader: `"api";q=${policy.limit};w=${policy.periodSecs}`,
    stateHeader: `"api";r=${decision.remaining};t=${Math.ceil(decision.resetMicros / 1_000_000)}`,
  };
}
