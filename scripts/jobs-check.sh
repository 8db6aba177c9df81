#!/usr/bin/env bash
# Background jobs end to end, through the real local queues: the Workers
# build under wrangler dev (producer → Cloudflare Queue → consumer → DLQ →
# parking consumer, all simulated by Miniflare) and the Spin build under
# spin-test-host (SQLite outbox drained through POST /v1/jobs/drain).
#
#   scripts/jobs-check.sh no-loss   1,000 jobs with injected transient and
#                                   permanent failures: every job applied
#                                   exactly once or parked as a dead letter,
#                                   and /metrics/workers reconciles exactly
#   scripts/jobs-check.sh bench     throughput (jobs/s) and lag p95 with
#                                   batches of 10 and of 100 (Workers), and
#                                   drains of 100 (Spin); BENCH_JOBS=2000
#
# Retries run on a fast schedule here (backoff 1 s, cap 2 s, 4 attempts) so
# that the run takes minutes, not hours. The time budget per attempt is 8 s:
# it also covers the attempt's bookkeeping write, and a busy two-core
# machine must never push a clean delivery past it (that would be a second
# delivery, which the check counts as a failure). The slow jobs' receiver
# answers 10 s after the budget, so their first attempt is always a timeout.
source "$(dirname "$0")/lib.sh"
source "$TEPI_ROOT/scripts/serve.sh"
trap cleanup_services EXIT

MODE=${1:-no-loss}
WORKERS_PORT=${TEPI_JOBS_WORKERS_PORT:-18794}
SPIN_PORT=${TEPI_JOBS_SPIN_PORT:-18795}
RECEIVER_PORT=${TEPI_JOBS_RECEIVER_PORT:-18796}
[[ -f $WORKER_WASM && -f $SPIN_WASM ]] || die "build first (make build)"

export JOB_MAX_ATTEMPTS=4 JOB_TIMEOUT_MS=8000
export TEPI_TEST_JOB_VARS="WEBHOOK_HTTP_HOSTS=127.0.0.1 WEBHOOK_ALLOWED_HOSTS=127.0.0.1 JOB_MAX_ATTEMPTS=$JOB_MAX_ATTEMPTS JOB_RETRY_BASE_SECS=1 JOB_RETRY_CAP_SECS=2 JOB_TIMEOUT_MS=$JOB_TIMEOUT_MS"
# Enqueuing 1,000 jobs from one address is an admin burst.
export TEPI_TEST_RATE_LIMITS="RATE_LIMIT_LOGIN=1000/1s RATE_LIMIT_PUBLIC=1000/1s RATE_LIMIT_API=1000/1s RATE_LIMIT_ADMIN=5000/1s RATE_LIMIT_PUSH=1000/1s"
load_test_secrets

# The gates' wrangler.toml with the consumers' batch size set to $1.
batch_config() {
  local size=$1 config
  config=$(gates_wrangler_config)
  # Only the job queues' consumers (max_batch_timeout = 1), not the DLQs'.
  python3 - "$config" "$size" <<'PY'
import re, sys
path, size = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r"max_batch_size = 10\nmax_batch_timeout = 1\n", f"max_batch_size = {size}\nmax_batch_timeout = 1\n", text)
open(path, "w").write(text)
PY
}

receiver() {
  start_service "webhook receiver" "$TEPI_RUN_DIR/receiver-$1.log" \
    env TEPI_WEBHOOK_SECRET="$TEPI_TEST_WEBHOOK_SIGNING_SECRET" python3 "$TEPI_ROOT/scripts/webhook-receiver.py" "$1"
  wait_ready "webhook receiver" "http://127.0.0.1:$1/stats" "$TEPI_RUN_DIR/receiver-$1.log" 60
}

admin() {
  export TEPI_TENANT=jobs TEPI_ADMIN_EMAIL=root@jobs.test TEPI_ADMIN_PASSWORD="op-${TEPI_TEST_BOOTSTRAP_TOKEN:0:24}" # pragma: allowlist secret
  BOOTSTRAP_TOKEN=$TEPI_TEST_BOOTSTRAP_TOKEN TEPI_BOOTSTRAP_PASSWORD=$TEPI_ADMIN_PASSWORD \
    bash "$TEPI_ROOT/scripts/bootstrap.sh" "$1" "$TEPI_TENANT" "$TEPI_ADMIN_EMAIL" Jobs >/dev/null || true
}

check() {
  python3 "$TEPI_ROOT/scripts/jobs-check.py" "$@"
}

case $MODE in
  no-loss)
    receiver "$RECEIVER_PORT"
    start_workers "$WORKERS_PORT"
    admin "http://127.0.0.1:$WORKERS_PORT"
    log "no-loss: Workers (wrangler dev, local Queues)"
    check no-loss "http://127.0.0.1:$WORKERS_PORT" "http://127.0.0.1:$RECEIVER_PORT" workers
    [[ ${TEPI_JOBS_ONLY:-} == workers ]] && exit 0
    stop_services
    receiver "$RECEIVER_PORT"
    start_spin "$SPIN_PORT"
    admin "http://127.0.0.1:$SPIN_PORT"
    log "no-loss: Spin (SQLite outbox, drain endpoint)"
    check no-loss "http://127.0.0.1:$SPIN_PORT" "http://127.0.0.1:$RECEIVER_PORT" spin
    ;;
  bench)
    jobs=${BENCH_JOBS:-2000}
    receiver "$RECEIVER_PORT"
    for size in 10 100; do
      TEPI_WRANGLER_CONFIG=$(batch_config "$size") start_workers "$WORKERS_PORT"
      admin "http://127.0.0.1:$WORKERS_PORT"
      check bench "http://127.0.0.1:$WORKERS_PORT" "http://127.0.0.1:$RECEIVER_PORT" workers "$jobs" "batch-$size"
      kill -TERM -- "-${TEPI_PIDS[-1]}" 2>/dev/null || true
      unset 'TEPI_PIDS[-1]'
      sleep 1
    done
    start_spin "$SPIN_PORT"
    admin "http://127.0.0.1:$SPIN_PORT"
    check bench "http://127.0.0.1:$SPIN_PORT" "http://127.0.0.1:$RECEIVER_PORT" spin "$jobs" "drain-100"
    ;;
  *) die "usage: scripts/jobs-check.sh no-loss|bench" ;;
esac
