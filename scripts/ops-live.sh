#!/usr/bin/env bash
# The live proof of ops/: Prometheus and Alertmanager (Debian packages) on
# 127.0.0.1, with the checked-in configuration and rules, against the Workers
# build under wrangler dev.
#
#  1. The API starts; the operator tenant gets a metrics:read and an
#     alerts:write key (files in the run dir, as the configs read them).
#  2. scripts/ops-scale.py writes the configs pointed at this API with time
#     scaled down by OPS_TIME_FACTOR (default 30: `for: 10m` over `[5m]`
#     becomes `for: 20s` over `[10s]`); Prometheus and Alertmanager start.
#  3. Traffic runs (scripts/ops-live.py traffic): successes, cache hits,
#     Web Vitals beacons, and webhook jobs to a closed port (a backlog that
#     fails, retries and is dead-lettered).
#  4. Every dashboard panel's query and every rule's expression must return
#     data through Prometheus' query API, naming only metrics the live
#     scrape has (scripts/ops-queries.py).
#  5. The fault: the API restarts without WEBHOOK_SIGNING_SECRET, as a
#     deploy that lost it, and GET /v1/webhook-secret answers 503 to a
#     quarter of the requests. TepiErrorRateHigh must fire, reach
#     Alertmanager, be delivered to POST /v1/ops/alerts, show in
#     GET /v1/ops/alerts and in the operator admin's inbox.
#  6. The fix: the API restarts with the secret; the alert must resolve in
#     Prometheus and in Tepi, and the admin be told.
# The timelines are printed; the gate's figure is the time from fault to
# notification and from fix to resolution.
#
#   TEPI_OPS_PORT=18811 TEPI_OPS_PROMETHEUS_PORT=18812 TEPI_OPS_ALERTMANAGER_PORT=18813
#   OPS_TIME_FACTOR=30   OPS_FAULT_TIMEOUT=300 (seconds each wait may take)
source "$(dirname "$0")/lib.sh"
source "$TEPI_ROOT/scripts/serve.sh"
trap 'kill_traffic; cleanup_services' EXIT

PORT=${TEPI_OPS_PORT:-18811}
PROM_PORT=${TEPI_OPS_PROMETHEUS_PORT:-18812}
AM_PORT=${TEPI_OPS_ALERTMANAGER_PORT:-18813}
FACTOR=${OPS_TIME_FACTOR:-30}
export TEPI_OPS_TIMEOUT=${OPS_FAULT_TIMEOUT:-300}
[[ -f $WORKER_WASM ]] || die "no Workers build at $WORKER_WASM (run make build)"
[[ -x $TEPI_VENV/bin/python ]] || die "no Python venv at $TEPI_VENV (run make setup)"
ensure_promtool
ensure_alertmanager
PY=$TEPI_VENV/bin/python

# Nothing here is meant to be throttled; jobs fail fast into dead letters;
# isolates flush their counts every second (the scrape interval scaled).
export TEPI_TEST_RATE_LIMITS="RATE_LIMIT_LOGIN=100000/1s RATE_LIMIT_PUBLIC=100000/1s RATE_LIMIT_API=100000/1s RATE_LIMIT_ADMIN=100000/1s RATE_LIMIT_PUSH=100000/1s RATE_LIMIT_ALERTS=100000/1s"
export TEPI_TEST_JOB_VARS="WEBHOOK_HTTP_HOSTS=127.0.0.1 WEBHOOK_ALLOWED_HOSTS=127.0.0.1 METRICS_FLUSH_SECS=1 JOB_MAX_ATTEMPTS=2 JOB_RETRY_BASE_SECS=1 JOB_RETRY_CAP_SECS=2"
load_test_secrets
WEBHOOK_SECRET=$TEPI_TEST_WEBHOOK_SIGNING_SECRET

TRAFFIC_PID=
kill_traffic() { [[ -z $TRAFFIC_PID ]] || kill "$TRAFFIC_PID" 2>/dev/null || true; }

# api SECRET — (re)starts the API with this webhook signing key ("" for
# none), on the same persisted state.
API_PID=
api() {
  [[ -z $API_PID ]] || stop_service "$API_PID"
  TEPI_TEST_WEBHOOK_SIGNING_SECRET=$1 start_workers "$PORT"
  API_PID=${TEPI_PIDS[-1]}
}

url="http://127.0.0.1:$PORT"
api "$WEBHOOK_SECRET"
token=$(operator_token "$url")
secrets="$TEPI_RUN_DIR/secrets"
mkdir -p "$secrets"
(umask 077 && api_key "$url" "$token" prometheus metrics:read >"$secrets/metrics-read.key")
(umask 077 && api_key "$url" "$token" alertmanager alerts:write >"$secrets/alerts-write.key")

"$PY" "$TEPI_ROOT/scripts/ops-scale.py" --factor "$FACTOR" --api "127.0.0.1:$PORT" \
  --alertmanager "127.0.0.1:$AM_PORT" --secrets "$secrets" --out "$TEPI_RUN_DIR/ops"
promtool check config "$TEPI_RUN_DIR/ops/prometheus.yml" >/dev/null || die "the scaled Prometheus config does not check"
amtool check-config "$TEPI_RUN_DIR/ops/alertmanager.yml" >/dev/null || die "the scaled Alertmanager config does not check"
port_free "$PROM_PORT" || die "port $PROM_PORT is taken (set TEPI_OPS_PROMETHEUS_PORT)"
port_free "$AM_PORT" || die "port $AM_PORT is taken (set TEPI_OPS_ALERTMANAGER_PORT)"
start_service prometheus "$TEPI_RUN_DIR/prometheus.log" prometheus \
  --config.file="$TEPI_RUN_DIR/ops/prometheus.yml" --storage.tsdb.path="$TEPI_RUN_DIR/prometheus-data" \
  --web.listen-address="127.0.0.1:$PROM_PORT"
wait_ready prometheus "http://127.0.0.1:$PROM_PORT/-/ready" "$TEPI_RUN_DIR/prometheus.log" 120
# No cluster: Alertmanager would otherwise listen on every address (9094).
start_service alertmanager "$TEPI_RUN_DIR/alertmanager.log" prometheus-alertmanager \
  --config.file="$TEPI_RUN_DIR/ops/alertmanager.yml" --storage.path="$TEPI_RUN_DIR/alertmanager-data" \
  --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address=
wait_ready alertmanager "http://127.0.0.1:$AM_PORT/-/ready" "$TEPI_RUN_DIR/alertmanager.log" 120

export TEPI_OPS_API=$url TEPI_OPS_TOKEN=$token
export TEPI_OPS_PROMETHEUS="http://127.0.0.1:$PROM_PORT" TEPI_OPS_ALERTMANAGER="http://127.0.0.1:$AM_PORT"
"$PY" "$TEPI_ROOT/scripts/ops-live.py" traffic >"$TEPI_RUN_DIR/traffic.log" 2>&1 &
TRAFFIC_PID=$!

# Every panel and rule returns data once a few scrapes hold traffic; rates
# need two samples inside their (scaled) window.
log "waiting for the queries to return data (every dashboard panel, on live scrapes)"
mkdir -p "$TEPI_RUN_DIR/scrapes"
curl -fsS -H @<(printf 'authorization: Bearer %s\n' "$(cat "$secrets/metrics-read.key")") \
  "$url/metrics" -o "$TEPI_RUN_DIR/scrapes/metrics.prom"
queries_ok=0
for attempt in $(seq 1 30); do
  sleep 4
  for path in metrics metrics/workers api/metrics/prometheus; do
    curl -fsS -H @<(printf 'authorization: Bearer %s\n' "$(cat "$secrets/metrics-read.key")") \
      "$url/$path" -o "$TEPI_RUN_DIR/scrapes/${path//\//_}.prom" || true
  done
  if "$PY" "$TEPI_ROOT/scripts/ops-queries.py" --dashboard "$TEPI_ROOT/ops/grafana/dashboards/tepi.json" \
    --rules "$TEPI_ROOT/ops/prometheus/rules/*.yml" --scrape "$TEPI_RUN_DIR"/scrapes/*.prom \
    --prometheus "http://127.0.0.1:$PROM_PORT" --window 10s >"$TEPI_RUN_DIR/queries.log" 2>&1; then
    queries_ok=1
    break
  fi
  log "not yet (attempt $attempt): $(tail -n 1 "$TEPI_RUN_DIR/queries.log")"
done
cat "$TEPI_RUN_DIR/queries.log"
((queries_ok)) || die "some panel queries return no data (above)"
panels=$(grep -o '[0-9]*/[0-9]* panel queries return data' "$TEPI_RUN_DIR/queries.log" | tail -n1)

log "the fault: the API restarts without WEBHOOK_SIGNING_SECRET"
t_fault=$(date +%s.%N)
api ""
"$PY" "$TEPI_ROOT/scripts/ops-live.py" wait-fired "$t_fault" | tee "$TEPI_RUN_DIR/fired.log" ||
  { tail -n 20 "$TEPI_RUN_DIR/traffic.log"; die "the error-rate alert did not reach the alert inbox"; }
fired=$(sed -n 's/^fault to notification: //p' "$TEPI_RUN_DIR/fired.log")

log "the fix: the API restarts with its webhook signing key"
t_fix=$(date +%s.%N)
api "$WEBHOOK_SECRET"
"$PY" "$TEPI_ROOT/scripts/ops-live.py" wait-resolved "$t_fix" | tee "$TEPI_RUN_DIR/resolved.log" ||
  { tail -n 20 "$TEPI_RUN_DIR/traffic.log"; die "the error-rate alert did not resolve in the alert inbox"; }
resolved=$(sed -n 's/^fix to resolution: //p' "$TEPI_RUN_DIR/resolved.log")
tail -n 1 "$TEPI_RUN_DIR/traffic.log"

log "ops live: $panels; fault to notification $fired, fix to resolution $resolved (time 1/$FACTOR)"
gate_note "$panels; fired→inbox $fired, fixed→resolved $resolved (time ÷$FACTOR)"
