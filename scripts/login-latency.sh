#!/usr/bin/env bash
# Measures login latency under `wrangler dev` (the release Workers build):
# bootstraps a tenant with scripts/bootstrap.sh, then k6/login-latency.js
# drives correct, wrong-password and unknown-user logins in turn at a
# constant rate after a short warm-up, and fails when any case's p95 reaches
# 300 ms (the product's objective). Prints p50/p95 per case beside the limit
# and the unknown-user/wrong-password ratio. Each login is an Argon2id hash
# (about 50 ms of CPU on one core): 3 per second leaves a busy two-core
# machine, where k6, wrangler and the runtime share the cores with other
# work, room to answer without queueing.
#
#   LOGIN_RATE=3        logins per second, all cases together
#   LOGIN_DURATION=30s  length of the measured run
#   TEPI_LOGIN_PORT=18788
source "$(dirname "$0")/lib.sh"
source "$TEPI_ROOT/scripts/serve.sh"
trap cleanup_services EXIT

PORT=${TEPI_LOGIN_PORT:-18788}
[[ -f $WORKER_WASM ]] || die "no Workers build at $WORKER_WASM (run make build)"
[[ -x $K6_BIN ]] || die "k6 missing at $K6_BIN (run scripts/tools.sh)"

start_workers "$PORT"
url="http://127.0.0.1:$PORT"
password="bench-${TEPI_TEST_BOOTSTRAP_TOKEN:0:20}" # pragma: allowlist secret (derived from this run's random token)
export BOOTSTRAP_TOKEN=$TEPI_TEST_BOOTSTRAP_TOKEN
TEPI_BOOTSTRAP_PASSWORD=$password \
  bash "$TEPI_ROOT/scripts/bootstrap.sh" "$url" bench admin@bench.test "Bench" >/dev/null

log "k6: ${LOGIN_RATE:-3} logins/s for ${LOGIN_DURATION:-30s} (load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores)"
note="$TEPI_RUN_DIR/login-latency.note"
rc=0
BASE_URL=$url TENANT=bench EMAIL=admin@bench.test PASSWORD=$password \
  RATE=${LOGIN_RATE:-3} DURATION=${LOGIN_DURATION:-30s} NOTE_FILE=$note \
  "$K6_BIN" run --quiet --no-color --no-usage-report "$TEPI_ROOT/k6/login-latency.js" || rc=$?
[[ -f $note ]] && gate_note "$(cat "$note")"
exit "$rc"
