#!/usr/bin/env bash
# Shows that the rate limiter admits the configured rate: both builds run
# with RATE_LIMIT_PUBLIC=<rate>/1s;burst=<burst>, and k6/rate-limit.js offers
# twice that rate from one client for a while, each request claiming another
# address in CF-Connecting-IP and X-Forwarded-For (believed by neither build
# here, so they buy no budget). k6 fails the run when a 429 lacks its
# headers or none is refused; this script then judges the count:
# GCRA admits the burst plus the rate for as long as it was asked (the span
# from the first answer to the last, measured, so a slow machine's late
# answers do not count against it), and the admitted rate over that span
# must be within ±10 % of the configured one. The line per build prints the
# figure beside the threshold.
#
#   RL_RATE=10 RL_BURST=5 RL_DURATION=20   (requests/s, requests, seconds)
source "$(dirname "$0")/lib.sh"
source "$TEPI_ROOT/scripts/serve.sh"
trap cleanup_services EXIT

RATE=${RL_RATE:-10} BURST=${RL_BURST:-5} DURATION=${RL_DURATION:-20}
[[ -f $WORKER_WASM && -f $SPIN_WASM ]] || die "build first (make build)"
[[ -x $K6_BIN ]] || die "k6 missing at $K6_BIN (run scripts/tools.sh)"

export TEPI_TEST_RATE_LIMITS="RATE_LIMIT_PUBLIC=$RATE/1s;burst=$BURST RATE_LIMIT_LOGIN=1000/1s RATE_LIMIT_API=1000/1s RATE_LIMIT_ADMIN=1000/1s"
start_workers "${TEPI_RL_WORKERS_PORT:-18789}"
start_spin "${TEPI_RL_SPIN_PORT:-18792}"
failed=0
for target in "cloudflare-workers ${TEPI_RL_WORKERS_PORT:-18789}" "spin ${TEPI_RL_SPIN_PORT:-18792}"; do
  set -- $target
  summary="$TEPI_RUN_DIR/rate-limit-$1.json"
  BASE_URL="http://127.0.0.1:$2" TARGET=$1 RATE=$RATE DURATION_S=$DURATION SUMMARY_FILE=$summary \
    "$K6_BIN" run --quiet --no-color --no-usage-report "$TEPI_ROOT/k6/rate-limit.js" || failed=1
  verdict=$(python3 - "$summary" "$RATE" "$BURST" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
rate, burst = float(sys.argv[2]), int(sys.argv[3])
span = s["span_s"]
offered = (s["admitted"] + s["limited"]) / span if span > 0 else 0
admitted_rate = (s["admitted"] - burst) / span if span > 0 else 0
deviation = (admitted_rate - rate) / rate * 100
# The limiter is only measured while asked faster than it admits.
ok = span > 0 and offered >= 1.5 * rate and abs(deviation) <= 10
print(f"{'ok' if ok else 'FAIL'} {s['target']}: admitted {s['admitted']} in {span:.1f} s = burst {burst} + "
      f"{admitted_rate:.2f}/s vs configured {rate:g}/s ({deviation:+.1f} %, limit ±10 %); "
      f"offered {offered:.1f}/s (needs ≥ {1.5 * rate:g}/s), refused {s['limited']}, "
      f"p95 {s['p95_ms']:.0f} ms, dropped {s['dropped']}")
PY
  )
  echo "$verdict"
  [[ $verdict == ok* ]] || failed=1
  gate_note "${verdict#ok }"
done
((failed == 0)) || die "the rate limiter did not admit the configured rate on every build (see above)"
log "rate limiter admits the configured rate on both builds"
