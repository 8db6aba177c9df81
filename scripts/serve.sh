# Starting and stopping the builds under test. Source it after lib.sh.
# Every service is started in its own process group on 127.0.0.1 and stopped
# by stop_services, which callers run from an EXIT trap (so also on failure).

TEPI_PIDS=()
TEPI_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tepi-run.XXXXXX")

stop_services() {
  local pid
  for pid in "${TEPI_PIDS[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for pid in "${TEPI_PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  TEPI_PIDS=()
}

# stop_service PID — stops one service start_service started (its whole
# process group) and forgets it.
stop_service() {
  local pid=$1 kept=() other
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  for other in "${TEPI_PIDS[@]}"; do [[ $other == "$pid" ]] || kept+=("$other"); done
  TEPI_PIDS=("${kept[@]}")
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_service NAME LOGFILE CMD... — runs CMD in a new process group.
start_service() {
  local name=$1 logfile=$2
  shift 2
  setsid "$@" >"$logfile" 2>&1 </dev/null &
  TEPI_PIDS+=("$!")
  log "$name started (pid $!, log $logfile)"
}

# wait_ready NAME URL LOGFILE [SECONDS] — polls URL until it answers 200,
# for at most SECONDS of wall-clock time (default 300: a busy two-core
# machine compiles the Wasm and migrates the database first), and says how
# long it took.
wait_ready() {
  local name=$1 url=$2 logfile=$3 limit=${4:-300} pid=${TEPI_PIDS[-1]} t0=$SECONDS
  while ((SECONDS - t0 < limit)); do
    if curl -fsS -o /dev/null --max-time 30 "$url" 2>/dev/null; then
      log "$name ready at $url after $((SECONDS - t0)) s"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$logfile" >&2
      die "$name exited before it was ready"
    fi
    sleep 0.5
  done
  tail -n 40 "$logfile" >&2
  die "$name not ready at $url after ${limit}s"
}

# For an EXIT trap: stop everything; keep the logs only when the run failed.
cleanup_services() {
  local rc=$?
  stop_services
  if [[ $rc == 0 ]]; then
    rm -rf "$TEPI_RUN_DIR"
  else
    log "service logs kept in $TEPI_RUN_DIR"
  fi
}

# Throwaway secrets for this run (never the developer's .dev.vars): exported
# for the tests, passed to both builds below.
load_test_secrets() {
  local line
  while IFS= read -r line; do export "TEPI_TEST_$line"; done < <(bash "$TEPI_ROOT/scripts/dev-secrets.sh" --print)
}

# Rate limits for a test run: every request comes from 127.0.0.1, so the
# production policies would throttle the suites themselves. Callers may set
# TEPI_TEST_RATE_LIMITS to "NAME=policy ..." pairs; these are the defaults,
# the conformance suite's. Its `api` policy refills slowly (one call per
# 10 s after a burst of 100 per subject) so that the burst test's statuses
# hold however slowly the machine answers (tests/conformance/limits.rs);
# no other subject of the suite makes 100 authenticated calls.
# Background jobs in a test run: webhooks reach only loopback receivers
# (plain http allowed), never the internet. Callers add "NAME=value" pairs (e.g. faster backoff).
: "${TEPI_TEST_JOB_VARS:=WEBHOOK_HTTP_HOSTS=127.0.0.1 WEBHOOK_ALLOWED_HOSTS=127.0.0.1}"
: "${TEPI_TEST_RATE_LIMITS:=RATE_LIMIT_LOGIN=1000/1s RATE_LIMIT_PUBLIC=1000/1s RATE_LIMIT_API=1/10s;burst=100 RATE_LIMIT_ADMIN=1000/1s RATE_LIMIT_PUSH=1000/1s}"

# The gates' copy of wrangler.toml (next to it, so relative paths hold):
# the same bindings with the Rate Limiting bindings' limits raised, since
# those cannot be set per run. The local GCRA policies above still apply.
gates_wrangler_config() {
  local out="$TEPI_ROOT/.wrangler-gates.toml"
  # Built beforehand: no [build] section, so nothing is watched or rebuilt
  # (a reload would drop in-flight queue batches).
  sed -E -e 's/^simple = \{ limit = [0-9]+, period = (10|60) \}/simple = { limit = 100000, period = \1 }/' \
    -e '/^\[build\]$/,/^$/d' "$TEPI_ROOT/wrangler.toml" >"$out"
  echo "$out"
}

# The Workers build under wrangler dev, with fresh local state in the run dir.
start_workers() {
  local port=$1 logfile="$TEPI_RUN_DIR/wrangler.log" pair
  port_free "$port" || die "port $port is taken (set TEPI_WORKERS_PORT)"
  [[ -n ${TEPI_TEST_JWT_SIGNING_KEYS:-} ]] || load_test_secrets
  # Under wrangler dev a client can send CF-Connecting-IP itself: not
  # believed here (Cloudflare sets it in production).
  local vars=(--var "JWT_SIGNING_KEYS:$TEPI_TEST_JWT_SIGNING_KEYS" --var "BOOTSTRAP_TOKEN:$TEPI_TEST_BOOTSTRAP_TOKEN"
    --var "WEBHOOK_SIGNING_SECRET:$TEPI_TEST_WEBHOOK_SIGNING_SECRET" --var "TRUST_PLATFORM_PEER:false")
  for pair in $TEPI_TEST_RATE_LIMITS $TEPI_TEST_JOB_VARS; do vars+=(--var "${pair%%=*}:${pair#*=}"); done
  start_service "wrangler dev" "$logfile" env TEPI_SKIP_BUILD=1 \
    "$TEPI_ROOT/node_modules/.bin/wrangler" dev --config "${TEPI_WRANGLER_CONFIG:-$(gates_wrangler_config)}" \
    --ip 127.0.0.1 --port "$port" --inspector-port 0 --persist-to "$TEPI_RUN_DIR/wrangler-state" \
    "${vars[@]}" --show-interactive-dev-session=false
  wait_ready "wrangler dev" "http://127.0.0.1:$port/healthz" "$logfile"
}

# The Spin build under tools/spin-test-host, configured by spin.toml itself,
# with fresh SQLite/key-value state in the run dir. Besides spin.toml's
# https-only outbound HTTP, plain-http receivers on loopback are allowed
# (webhook receivers started by the suites).
start_spin() {
  local port=$1 logfile="$TEPI_RUN_DIR/spin.log"
  port_free "$port" || die "port $port is taken (set TEPI_SPIN_PORT)"
  # spin.toml's second component, the console: the host loads every one.
  [[ -f $SPIN_CONSOLE_WASM ]] ||
    die "no console component at ${SPIN_CONSOLE_WASM#"$TEPI_ROOT"/} (run make build, or scripts/build-spin.sh console)"
  [[ -n ${TEPI_TEST_JWT_SIGNING_KEYS:-} ]] || load_test_secrets
  local envs=("SPIN_VARIABLE_JWT_SIGNING_KEYS=$TEPI_TEST_JWT_SIGNING_KEYS"
    "SPIN_VARIABLE_BOOTSTRAP_TOKEN=$TEPI_TEST_BOOTSTRAP_TOKEN"
    "SPIN_VARIABLE_WEBHOOK_SIGNING_SECRET=$TEPI_TEST_WEBHOOK_SIGNING_SECRET"
    "SPIN_VARIABLE_DEV_OUTBOUND_HOST=http://127.0.0.1:*") pair
  for pair in $TEPI_TEST_RATE_LIMITS $TEPI_TEST_JOB_VARS; do envs+=("SPIN_VARIABLE_${pair%%=*}=${pair#*=}"); done
  start_service "spin-test-host" "$logfile" env "${envs[@]}" "$SPIN_HOST_BIN" \
    --manifest "$TEPI_ROOT/spin.toml" --listen "127.0.0.1:$port" --state-dir "$TEPI_RUN_DIR/spin-state"
  wait_ready "spin-test-host" "http://127.0.0.1:$port/healthz" "$logfile"
}

json_get() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# operator_token URL — bootstraps the operator tenant `ops` with the
# documented command (password derived from this run's random token) and
# prints its admin's access token.
operator_token() {
  local url=$1 password="op-${TEPI_TEST_BOOTSTRAP_TOKEN:0:24}" # pragma: allowlist secret
  BOOTSTRAP_TOKEN=$TEPI_TEST_BOOTSTRAP_TOKEN TEPI_BOOTSTRAP_PASSWORD=$password \
    bash "$TEPI_ROOT/scripts/bootstrap.sh" "$url" ops root@ops.test Ops >/dev/null
  curl -fsS --max-time 120 "$url/v1/auth/login" -H 'content-type: application/json' \
    --data-binary @<(PASSWORD=$password python3 -c '
import json, os
print(json.dumps({"tenant": "ops", "email": "root@ops.test", "password": os.environ["PASSWORD"]}))') |
    json_get access_token || die "login at $url failed"
}

# api_key URL TOKEN NAME SCOPE — creates an API key and prints it.
api_key() {
  curl -fsS --max-time 120 "$1/v1/api-keys" -H 'content-type: application/json' -H @- \
    --data-binary "{\"name\":\"$3\",\"scopes\":[\"$4\"]}" <<<"authorization: Bearer $2" |
    json_get key || die "creating a $4 key at $1 failed"
}
