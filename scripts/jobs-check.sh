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
#   scripts/jobs-check.sh bench     throughput (jobs/s) and lag p95 while
#                                   jobs are enqueued, with batches of 10
#                                   and of 100 (Workers) and the drain after
#                                   each enqueuing response (Spin); then the
#                                   Spin consumer alone, draining a backlog;
#                                   and what bounds each figure (how busy the
#                                   cores were, how local Queues ran the
#                                   batches); BENCH_JOBS=2000
#
# Retries run on a fast schedule here (backoff 1 s, cap 2 s, 4 attempts) so
# that the run takes minutes, not hours. The time budget per attempt is 8 s:
# it also covers the attempt's bookkeeping write, and a busy two-core
# machine must never push a clean delivery past it (that would be a second
# delivery, which the check counts as a failure). The slow jobs' receiver
# answers 10 s after the budget, so their first attempt is always a timeout.
#
# The receiver verifies as a tenant's receiver does: with the webhook secret
# the bootstrap answer showed for the run's tenant (never the platform's
# WEBHOOK_SIGNING_SECRET), refusing other tenants' deliveries and stale
# timestamps. A delivery it cannot verify is a problem, and jobs-check.py
# fails on problems. So the receiver starts after the API is bootstrapped,
# and again whenever a fresh API state makes a fresh tenant.
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
if f"max_batch_size = {size}\nmax_batch_timeout = 1\n" not in text:
    sys.exit(f"no job queue consumer with max_batch_size = {size} in {path}")
open(path, "w").write(text)
PY
  echo "$config"
}

# The tenant jobs-check.py logs in as and enqueues for.
export TEPI_TENANT=jobs TEPI_ADMIN_EMAIL=root@jobs.test TEPI_ADMIN_PASSWORD="op-${TEPI_TEST_BOOTSTRAP_TOKEN:0:24}" # pragma: allowlist secret
TENANT_SECRET=
FRESH_SECRET=0
RECEIVER_PID=
RECEIVERS=0

# receiver PORT — (re)starts the receiver with the tenant's secret.
receiver() {
  [[ -n $TENANT_SECRET ]] || die "no webhook secret for tenant $TEPI_TENANT"
  [[ -z $RECEIVER_PID ]] || stop_service "$RECEIVER_PID"
  local logfile="$TEPI_RUN_DIR/receiver-$1-$((++RECEIVERS)).log"
  start_service "webhook receiver" "$logfile" env TEPI_WEBHOOK_SECRET="$TENANT_SECRET" \
    TEPI_WEBHOOK_TENANT="$TEPI_TENANT" python3 "$TEPI_ROOT/scripts/webhook-receiver.py" "$1"
  RECEIVER_PID=${TEPI_PIDS[-1]}
  wait_ready "webhook receiver" "http://127.0.0.1:$1/stats" "$logfile" 60
}

# admin URL — bootstraps the tenant with the documented command and keeps
# the webhook secret its answer shows (FRESH_SECRET=1). A state bootstrapped
# before (the second Workers bench run reuses the first's) answers 409:
# same tenant, same salt, same platform key, so the same secret
# (FRESH_SECRET=0).
admin() {
  local answer secret errors="$TEPI_RUN_DIR/bootstrap.err"
  answer=$(BOOTSTRAP_TOKEN=$TEPI_TEST_BOOTSTRAP_TOKEN TEPI_BOOTSTRAP_PASSWORD=$TEPI_ADMIN_PASSWORD \
    bash "$TEPI_ROOT/scripts/bootstrap.sh" "$1" "$TEPI_TENANT" "$TEPI_ADMIN_EMAIL" Jobs 2>"$errors") || true
  secret=$(python3 -c '
import json, sys
try:
    print(json.loads(sys.stdin.read()).get("webhook_secret") or "")
except (ValueError, AttributeError):
    print("")' <<<"$answer")
  if [[ -n $secret ]]; then
    TENANT_SECRET=$secret FRESH_SECRET=1
  else
    [[ -n $TENANT_SECRET ]] || die "bootstrapping $1 showed no webhook secret: $(cat "$errors")"
    grep -q "already bootstrapped" "$errors" || die "bootstrapping $1 failed: $(cat "$errors")"
    log "tenant $TEPI_TENANT exists in this state already: keeping its webhook secret"
    FRESH_SECRET=0
  fi
}

check() {
  python3 "$TEPI_ROOT/scripts/jobs-check.py" "$@"
}

case $MODE in
  no-loss)
    start_workers "$WORKERS_PORT"
    admin "http://127.0.0.1:$WORKERS_PORT"
    receiver "$RECEIVER_PORT"
    log "no-loss: Workers (wrangler dev, local Queues)"
    check no-loss "http://127.0.0.1:$WORKERS_PORT" "http://127.0.0.1:$RECEIVER_PORT" workers
    [[ ${TEPI_JOBS_ONLY:-} == workers ]] && exit 0
    stop_services
    RECEIVER_PID=
    start_spin "$SPIN_PORT"
    admin "http://127.0.0.1:$SPIN_PORT"
    receiver "$RECEIVER_PORT"
    log "no-loss: Spin (SQLite outbox, drain endpoint)"
    check no-loss "http://127.0.0.1:$SPIN_PORT" "http://127.0.0.1:$RECEIVER_PORT" spin
    ;;
  bench)
    jobs=${BENCH_JOBS:-2000}
    for size in 10 100; do
      config=$(batch_config "$size") || die "could not set the batch size to $size"
      TEPI_WRANGLER_CONFIG=$config start_workers "$WORKERS_PORT"
      workers_pid=${TEPI_PIDS[-1]}
      admin "http://127.0.0.1:$WORKERS_PORT"
      if ((FRESH_SECRET)); then receiver "$RECEIVER_PORT"; fi
      TEPI_JOBS_WRANGLER_LOG="$TEPI_RUN_DIR/wrangler.log" \
        check bench "http://127.0.0.1:$WORKERS_PORT" "http://127.0.0.1:$RECEIVER_PORT" workers "$jobs" "batch-$size"
      stop_service "$workers_pid"
      sleep 1
    done
    start_spin "$SPIN_PORT"
    spin_pid=${TEPI_PIDS[-1]}
    admin "http://127.0.0.1:$SPIN_PORT"
    if ((FRESH_SECRET)); then receiver "$RECEIVER_PORT"; fi
    check bench "http://127.0.0.1:$SPIN_PORT" "http://127.0.0.1:$RECEIVER_PORT" spin "$jobs" "drain-after-response"
    # The consumer alone: the same state without the drain after responses,
    # so the whole backlog waits for the drains.
    stop_service "$spin_pid"
    TEPI_TEST_JOB_VARS="$TEPI_TEST_JOB_VARS JOB_DRAIN_AFTER_RESPONSE=0" start_spin "$SPIN_PORT"
    DRAIN_LIMIT=250 DRAIN_CALLERS=2 \
      check backlog "http://127.0.0.1:$SPIN_PORT" "http://127.0.0.1:$RECEIVER_PORT" "$jobs" "backlog"
    cat <<'EOF'
  What bounds these figures here: under wrangler dev, Miniflare's local
  Queues hand the consumer one batch at a time, and wrangler's proxy and
  Miniflare share the two cores with the API that enqueues. On Spin, while
  jobs are being enqueued, deliveries follow the enqueuing requests (one job
  per POST /v1/notifications, each drained after its response); the backlog
  line is the consumer's own rate.
EOF
    ;;
  *) die "usage: scripts/jobs-check.sh no-loss|bench" ;;
esac
