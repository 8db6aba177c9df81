#!/usr/bin/env bash
# Runs the conformance suite against both builds in one run: the Workers
# build under `wrangler dev` and the Spin build under spin-test-host.
# Expects both artifacts to be built (make build).
source "$(dirname "$0")/lib.sh"
source "$TEPI_ROOT/scripts/serve.sh"
trap cleanup_services EXIT

WORKERS_PORT=${TEPI_WORKERS_PORT:-18787}
SPIN_PORT=${TEPI_SPIN_PORT:-18790}
[[ -f $WORKER_WASM ]] || die "no Workers build at $WORKER_WASM (run make build)"
[[ -f $SPIN_WASM ]] || die "no Spin build at $SPIN_WASM (run make build)"
[[ -x $SPIN_HOST_BIN ]] || die "no spin-test-host at $SPIN_HOST_BIN (run make setup)"

cargo_ test -p tepi-conformance --no-run --quiet

# The documented bootstrap command creates the operator tenant the suite
# logs in to (its password derives from this run's random token). Its
# answer, on stdout, shows the tenant's webhook secret this once.
bootstrap() {
  local derived="op-${TEPI_TEST_BOOTSTRAP_TOKEN:0:24}" # pragma: allowlist secret
  BOOTSTRAP_TOKEN=$TEPI_TEST_BOOTSTRAP_TOKEN TEPI_BOOTSTRAP_PASSWORD=$derived \
    bash "$TEPI_ROOT/scripts/bootstrap.sh" "$1" conformance root@conformance.test Conformance
}

run_suite() {
  local target=$1 url=$2 answer
  answer=$(bootstrap "$url")
  log "conformance: $target at $url"
  local out="$TEPI_RUN_DIR/conformance-$target.txt"
  # The suite checks the secret the bootstrap showed against the API's
  # fingerprint of it.
  RUST_BACKTRACE=0 TEPI_BASE_URL=$url TEPI_TARGET=$target \
    TEPI_TEST_BOOTSTRAP_WEBHOOK_SECRET=$(json_get webhook_secret <<<"$answer") \
    cargo_ test -p tepi-conformance --quiet -- --test-threads=1 --nocapture --format pretty 2>&1 | tee "$out"
  gate_note "$target: $(grep -Eo '[0-9]+ passed; [0-9]+ failed' "$out" | tail -n1)"
}

start_workers "$WORKERS_PORT"
start_spin "$SPIN_PORT"
run_suite cloudflare-workers "http://127.0.0.1:$WORKERS_PORT"

# The Workers build migrates D1 itself through the Sql port on its first
# request; wrangler must then find nothing left to apply in the same ledger.
log "D1: migrations applied by the Worker match wrangler's ledger"
# The Worker is still running: its queue consumer may be settling the
# suite's jobs in D1 right now, and SQLite then refuses a second writer's
# lock (SQLITE_BUSY). That is a wait, not an answer: ask again.
for attempt in $(seq 1 30); do
  if pending=$(wrangler d1 migrations list DB --local --persist-to "$TEPI_RUN_DIR/wrangler-state" 2>&1); then
    break
  fi
  grep -qE 'SQLITE_BUSY|database is locked' <<<"$pending" && ((attempt < 30)) ||
    { echo "$pending"; die "wrangler d1 migrations list failed"; }
  log "D1 is busy (the Worker is writing); asking again in 1 s"
  sleep 1
done
grep -q "No migrations to apply" <<<"$pending" ||
  { echo "$pending"; die "D1 has migrations the Worker did not apply"; }
echo "ok: D1 is fully migrated (wrangler d1 migrations list: nothing to apply)"
run_suite spin "http://127.0.0.1:$SPIN_PORT"
log "conformance passed on both targets"
