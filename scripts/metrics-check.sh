#!/usr/bin/env bash
# The push API against a real Prometheus client library: both builds run,
# an operator admin creates a metrics:push key, and scripts/push-interop.py
# pushes with prometheus_client (push_to_gateway, pushadd_to_gateway,
# delete_from_gateway, and a gzip body) and checks the merged scrape.
source "$(dirname "$0")/lib.sh"
source "$TEPI_ROOT/scripts/serve.sh"
trap cleanup_services EXIT

WORKERS_PORT=${TEPI_METRICS_WORKERS_PORT:-18797}
SPIN_PORT=${TEPI_METRICS_SPIN_PORT:-18798}
[[ -f $WORKER_WASM && -f $SPIN_WASM ]] || die "build first (make build)"
[[ -x $TEPI_VENV/bin/python ]] || die "tools missing: run scripts/tools.sh"
load_test_secrets

run() {
  local target=$1 url=$2 token key
  token=$(operator_token "$url")
  key=$(api_key "$url" "$token" interop metrics:push)
  log "push interop: $target"
  TEPI_PUSH_KEY=$key TEPI_READ_TOKEN=$token "$TEPI_VENV/bin/python" "$TEPI_ROOT/scripts/push-interop.py" "$url" "$target"
}

start_workers "$WORKERS_PORT"
start_spin "$SPIN_PORT"
run cloudflare-workers "http://127.0.0.1:$WORKERS_PORT"
run spin "http://127.0.0.1:$SPIN_PORT"
log "push interop passed on both builds"
