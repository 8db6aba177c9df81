#!/usr/bin/env bash
# Shows that the rate limiter admits the configured rate: both builds run
# with RATE_LIMIT_PUBLIC=<rate>/1s;burst=<burst>, and k6/rate-limit.js offers
# twice that rate from one client for a while. k6 fails the run when the
# admitted rate is more than 10 % off or a 429 lacks its headers; the line
# per build prints admitted vs configured.
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
for target in "cloudflare-workers ${TEPI_RL_WORKERS_PORT:-18789}" "spin ${TEPI_RL_SPIN_PORT:-18792}"; do
  set -- $target
  BASE_URL="http://127.0.0.1:$2" TARGET=$1 RATE=$RATE BURST=$BURST DURATION_S=$DURATION \
    "$K6_BIN" run --quiet --no-color --no-usage-report "$TEPI_ROOT/k6/rate-limit.js"
done
log "rate limiter admits the configured rate on both builds"
