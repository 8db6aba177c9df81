#!/usr/bin/env bash
# The smoke gate: k6/smoke.js (the mixed traffic of k6/lib/traffic.js, with
# the thresholds p95 < 300 ms and errors < 1 %, and every job drained) on
# both builds, each run compared with a baseline through the API that keeps
# them, the way a branch's CI run is:
#
#  1. a first smoke run is recorded as `main`'s baseline
#     (scripts/k6-compare.py --record, PUT /v1/ops/baselines/main);
#  2. a second run, on a branch that has no baseline of its own, is
#     compared with it: the API answers 404 for the branch and the
#     comparison falls back to main's;
#  3. the comparison must also fail a regression: the second run against a
#     copy of the baseline whose p95s are a tenth of the real ones.
#
# Both runs are on this machine in this run, so the comparison is real.
# The gate's tolerance is wider than the default (SMOKE_TOLERANCE=100 %
# and SMOKE_MIN_MS=50 ms of p95 growth): two runs a minute apart on a busy
# two-core machine differ for reasons that are not the code, and the gate
# guards the thresholds and the comparison's logic, not the machine's
# speed. Users compare with the defaults (20 %, 5 ms; docs/ops.md). For
# the same reason a route's p95 is judged only when both runs sent it at
# least SMOKE_MIN_COUNT=50 requests (the load as a whole always is): the
# p95 of a route with twenty requests is its second-slowest answer, and one
# slow moment of a busy machine doubles it (seen: GET /v1/auth/me 47 ->
# 141 ms on 21 requests, every other route and the whole load unchanged).
#
#   TEPI_SMOKE_WORKERS_PORT=18840  TEPI_SMOKE_SPIN_PORT=18841
#   SMOKE_TOLERANCE=100  SMOKE_MIN_MS=50  SMOKE_MIN_COUNT=50   the gate's comparison
#   RATE, DURATION: k6/smoke.js's own (its defaults are the gate's)
#
# Each build's second run, once all three steps passed, is kept as
# target/k6/smoke-<build>.json (and .txt): what make smoke-compare
# compares with an earlier run's (scripts/k6-ci-compare.sh).
source "$(dirname "$0")/lib.sh"
source "$TEPI_ROOT/scripts/serve.sh"
trap cleanup_services EXIT

WORKERS_PORT=${TEPI_SMOKE_WORKERS_PORT:-18840}
SPIN_PORT=${TEPI_SMOKE_SPIN_PORT:-18841}
[[ -f $WORKER_WASM ]] || die "no Workers build at $WORKER_WASM (run make build)"
[[ -f $SPIN_WASM ]] || die "no Spin build at $SPIN_WASM (run make build)"
[[ -x $SPIN_HOST_BIN ]] || die "no spin-test-host at $SPIN_HOST_BIN (run make setup)"
[[ -x $K6_BIN ]] || die "k6 missing at $K6_BIN (run make setup)"

# The smoke's own rate is far below these; webhooks reach only loopback.
export TEPI_TEST_RATE_LIMITS="RATE_LIMIT_LOGIN=1000/1s RATE_LIMIT_PUBLIC=1000/1s RATE_LIMIT_API=1000/1s RATE_LIMIT_ADMIN=1000/1s RATE_LIMIT_PUSH=1000/1s RATE_LIMIT_ALERTS=1000/1s"
export TEPI_TEST_JOB_VARS="WEBHOOK_HTTP_HOSTS=127.0.0.1 WEBHOOK_ALLOWED_HOSTS=127.0.0.1"
export LOOPBACK_ONLY=1
TOLERANCE=${SMOKE_TOLERANCE:-100}
MIN_MS=${SMOKE_MIN_MS:-50}
MIN_COUNT=${SMOKE_MIN_COUNT:-50}
KEPT="$TEPI_ROOT/target/k6"
mkdir -p "$KEPT"
rm -f "$KEPT"/smoke-workers.{json,txt} "$KEPT"/smoke-spin.{json,txt}

failures=0
fail() { printf 'FAIL %s\n' "$*" >&2; failures=$((failures + 1)); }
notes=()

# smoke NAME URL — the three steps above against one build.
smoke() {
  local name=$1 url=$2 dir="$TEPI_RUN_DIR/$1" token rc
  mkdir -p "$dir"
  token=$(operator_token "$url")
  export BASE_URL=$url TENANT=ops EMAIL=root@ops.test PASSWORD="op-${TEPI_TEST_BOOTSTRAP_TOKEN:0:24}" # pragma: allowlist secret (derived from this run's random token)
  METRICS_KEY=$(api_key "$url" "$token" "smoke scrape" metrics:read)
  PUSH_KEY=$(api_key "$url" "$token" "smoke push" metrics:push)
  DRAIN_KEY=$(api_key "$url" "$token" "smoke drain" jobs:drain)
  BASELINE_KEY=$(api_key "$url" "$token" "smoke baselines" baselines:write)
  export METRICS_KEY PUSH_KEY DRAIN_KEY BASELINE_KEY

  log "$name: smoke run 1, recorded as main's baseline"
  rc=0
  SUMMARY_DIR="$dir/baseline" bash "$TEPI_ROOT/scripts/k6-scenario.sh" smoke || rc=$?
  ((rc == 0)) || { fail "$name: the first smoke run failed (k6 exit $rc)"; return; }
  python3 "$TEPI_ROOT/scripts/k6-compare.py" "$dir/baseline/smoke.json" --api "$url" --branch main --record ||
    { fail "$name: recording the baseline failed"; return; }

  log "$name: smoke run 2, on a branch without a baseline: compared with main's"
  rc=0
  SUMMARY_DIR="$dir/run" COMPARE=1 BRANCH="gates/$name" TOLERANCE=$TOLERANCE MIN_MS=$MIN_MS MIN_COUNT=$MIN_COUNT \
    bash "$TEPI_ROOT/scripts/k6-scenario.sh" smoke | tee "$dir/compare.txt" || rc=$?
  ((rc == 0)) || { fail "$name: the second smoke run failed or regressed (exit $rc)"; return; }
  grep -q "main" "$dir/compare.txt" || fail "$name: the comparison did not say it fell back to main's baseline"

  log "$name: the comparison fails a regression (a baseline ten times faster)"
  python3 - "$dir/baseline/smoke.json" "$dir/faster.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
for route in run["routes"].values():
    for q in ("p50", "p95", "p99"):
        route[q] = route[q] / 10
json.dump(run, open(sys.argv[2], "w"))
PY
  rc=0
  python3 "$TEPI_ROOT/scripts/k6-compare.py" "$dir/run/smoke.json" --baseline "$dir/faster.json" \
    --tolerance 20 --min-ms 1 >"$dir/regression.txt" 2>&1 || rc=$?
  if ((rc != 1)); then
    cat "$dir/regression.txt" >&2
    fail "$name: a p95 ten times the baseline's was not a regression (exit $rc, want 1)"
    return
  fi
  cp "$dir/run/smoke.json" "$KEPT/smoke-$name.json"
  cp "$dir/run/smoke.txt" "$KEPT/smoke-$name.txt"
  notes+=("$name: $(python3 - "$dir/run/smoke.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("{:.1f} req/s, p95 {:.0f} ms, errors {:.2f} %, {} routes".format(
    s["rate"], s["p95"], 100 * s["error_rate"], len(s["routes"])))
PY
); vs main within ${TOLERANCE} %/${MIN_MS} ms (routes of ${MIN_COUNT}+ requests); a 10x regression caught")
}

start_workers "$WORKERS_PORT"
start_spin "$SPIN_PORT"
smoke workers "http://127.0.0.1:$WORKERS_PORT"
smoke spin "http://127.0.0.1:$SPIN_PORT"
((failures == 0)) || die "$failures smoke check(s) failed (logs and summaries in $TEPI_RUN_DIR)"
gate_note "$(IFS='|'; echo "${notes[*]}" | sed 's/|/ | /g')"
log "smoke: both builds held the thresholds and compared with their baselines"
