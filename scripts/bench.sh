#!/usr/bin/env bash
# Tepi against Hono 4 and a trivial JS worker (the runtime floor), side by
# side on this machine: CPU per request, latency, the highest rate each
# sustains, cold start. docs/performance.md explains every figure.
#
#   tepi   the Workers build ($WORKER_OUT), and the Spin build under
#          tools/spin-test-host
#   hono   bench/hono: Tepi's hot route on Hono 4 with the same semantics
#          (request id, traceparent, security headers, EdDSA tokens with
#          hono/jwt, the api rate limit, the D1 read, problem+json)
#   floor  bench/floor: `200 {"status":"ok"}` to every request
#   rsfloor  bench/rust-floor (bare workerd only): the same answer from a
#          workers-rs Worker, what any Rust Worker pays for the Wasm seam
#
# Environments, each in turn (services of one are stopped before the next):
#   workerd   bare `workerd serve`, one process per server on its own port,
#             no bindings but variables: GET /healthz, and GET /v1/auth/me
#             with a valid token and no database (JWT + rate limit + the
#             503 Tepi answers without D1; the floor answers 200)
#   wrangler  `wrangler dev` with local D1 and Rate Limiting: the full
#             GET /v1/auth/me (200 with the user) on all three
#   spin      the Spin build: GET /healthz and the full GET /v1/auth/me
# Within an environment, runs interleave the servers (tepi, hono, floor,
# tepi, ...) at each rate, over several rounds, so machine noise hits all.
# k6 (k6/bench.js) offers a constant arrival rate; server CPU is utime+stime
# from /proc before and after each run. With two or more cores servers run
# on CPU 0 and k6 on CPU 1. Then each server's cold start under bare
# workerd: spawn → first 200 on /healthz, median of BENCH_COLD_RUNS.
#
# Nothing is built unless asked: the Workers artifact is built only when
# missing (scripts/build-worker.sh), the Spin artifact must exist.
#
# Settings (environment; defaults in brackets, BENCH_QUICK=1's after the bar):
#   BENCH_QUICK=1                 a smoke run: one rate each, 5 s runs, 1 round
#   BENCH_ENVS                    [workerd wrangler spin] which environments
#   BENCH_WORKERD_RATES           [500 1000 1500 2000 | 1000] requests/s
#   BENCH_WRANGLER_RATES          [25 50 75 100 150 200 400 | 100]
#   BENCH_SPIN_RATES              [100 200 300 400 600 1000 3000 | 500]
#   BENCH_DURATION                [10 | 5] seconds per run
#   BENCH_ROUNDS                  [2 | 1] runs per server, route and rate
#   BENCH_WARMUP                  [5 | 2] seconds of unrecorded load per server and route first
#   BENCH_COLD_RUNS               [5] cold starts per server
#   BENCH_PORT                    [18821] first of 8 consecutive loopback ports
#   BENCH_RESULTS=path.json       also write every figure there
#   BENCH_BUILD=1                 build both artifacts first (scripts/build.sh)
source "$(dirname "$0")/lib.sh"
source "$TEPI_ROOT/scripts/bench-lib.sh"

QUICK=${BENCH_QUICK:-0}
[[ $QUICK == 0 || $QUICK == 1 ]] || die "BENCH_QUICK must be 0 or 1"
if [[ $QUICK == 1 ]]; then
  defaults=(1000 100 500 5 1 2)
else
  # The lists bracket what each environment sustains on one core of this
  # machine (wrangler dev spends milliseconds per request in its own proxy
  # and logging; the Spin test host writes to SQLite on every request) so
  # the max sustained rate lands inside them, and reach past it (Spin's
  # target is 3,000/s).
  defaults=("500 1000 1500 2000" "25 50 75 100 150 200 400" "100 200 300 400 600 1000 3000" 10 2 5)
fi
ENVS=${BENCH_ENVS:-workerd wrangler spin}
WORKERD_RATES=${BENCH_WORKERD_RATES:-${defaults[0]}}
WRANGLER_RATES=${BENCH_WRANGLER_RATES:-${defaults[1]}}
SPIN_RATES=${BENCH_SPIN_RATES:-${defaults[2]}}
DURATION=${BENCH_DURATION:-${defaults[3]}}
ROUNDS=${BENCH_ROUNDS:-${defaults[4]}}
WARMUP=${BENCH_WARMUP:-${defaults[5]}}
COLD_RUNS=${BENCH_COLD_RUNS:-5}
BASE_PORT=${BENCH_PORT:-18821}
PORT_SETTING=BENCH_PORT
RESULTS=${BENCH_RESULTS:-}

# Bounds, so every loop and wait below is bounded too.
for env in $ENVS; do
  [[ $env == workerd || $env == wrangler || $env == spin ]] || die "BENCH_ENVS: $env is not workerd, wrangler or spin"
done
[[ -n ${ENVS// /} ]] || die "BENCH_ENVS is empty"
bench_rates BENCH_WORKERD_RATES "$WORKERD_RATES" 10000
bench_rates BENCH_WRANGLER_RATES "$WRANGLER_RATES" 5000
bench_rates BENCH_SPIN_RATES "$SPIN_RATES" 10000
bench_int BENCH_DURATION "$DURATION" 1 120
bench_int BENCH_ROUNDS "$ROUNDS" 1 10
bench_int BENCH_WARMUP "$WARMUP" 0 60
bench_int BENCH_COLD_RUNS "$COLD_RUNS" 1 20
bench_int BENCH_PORT "$BASE_PORT" 1024 65500
if [[ -n $RESULTS ]]; then
  [[ -d $(dirname "$RESULTS") ]] || die "BENCH_RESULTS: no directory $(dirname "$RESULTS")"
fi
wants() { [[ " $ENVS " == *" $1 "* ]]; }

# Services only from here on (serve.sh makes the run directory).
source "$TEPI_ROOT/scripts/serve.sh"
trap cleanup_services EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One caller (one tenant and subject) sends every request, thousands a
# second: the api class must admit them all, or the benchmark would measure
# 429s. The same policy goes to Hono; the other classes as in the gates.
API_POLICY=100000/1s
export TEPI_TEST_RATE_LIMITS="RATE_LIMIT_LOGIN=1000/1s RATE_LIMIT_PUBLIC=100000/1s RATE_LIMIT_API=$API_POLICY RATE_LIMIT_ADMIN=1000/1s RATE_LIMIT_PUSH=1000/1s"

bash "$TEPI_ROOT/scripts/tools.sh" >&2
[[ -x $K6_BIN ]] || die "k6 missing at $K6_BIN (run scripts/tools.sh)"
[[ -x $WORKERD_BIN ]] || die "workerd missing at $WORKERD_BIN (run scripts/tools.sh)"
[[ -d $TEPI_ROOT/node_modules/hono ]] || die "hono missing from node_modules (run scripts/tools.sh)"
if [[ ${BENCH_BUILD:-0} == 1 ]]; then
  bash "$TEPI_ROOT/scripts/build.sh" >&2
fi
TEPI_SKIP_BUILD=1 bash "$TEPI_ROOT/scripts/build-worker.sh"
if wants spin; then
  [[ -f $SPIN_WASM ]] || die "no Spin build at $SPIN_WASM (make build, or BENCH_BUILD=1)"
  [[ -x $SPIN_HOST_BIN ]] || die "spin-test-host missing at $SPIN_HOST_BIN (run scripts/tools.sh)"
fi

RUN=$TEPI_RUN_DIR
# The artifacts as they are now: a rebuild during the run changes nothing.
mkdir -p "$RUN/tepi" "$RUN/hono" "$RUN/floor" "$RUN/rsfloor"
cp "$WORKER_OUT/index.js" "$WORKER_WASM" "$RUN/tepi/"
"$ESBUILD_BIN" "$TEPI_ROOT/bench/hono/src/index.js" --bundle --format=esm --platform=neutral \
  --main-fields=module,main --target=es2022 --log-level=warning --outfile="$RUN/hono/index.js"
cp "$TEPI_ROOT/bench/floor/index.js" "$RUN/floor/index.js"
if wants workerd; then
  # The Rust floor: built once per source change into the tool cache.
  RSFLOOR_SRC=$TEPI_ROOT/bench/rust-floor
  RSFLOOR_OUT=$TEPI_CACHE/bench/rust-floor-$( (cd "$RSFLOOR_SRC" && sha256sum Cargo.toml Cargo.lock src/*.rs) | sha256sum | cut -c1-12)
  if [[ ! -f $RSFLOOR_OUT/index_bg.wasm ]]; then
    log "building the Rust floor (bench/rust-floor, once per source change)"
    [[ -x $WORKER_BUILD_BIN ]] || die "worker-build missing: run scripts/tools.sh"
    (cd "$RSFLOOR_SRC" && CARGO_TARGET_DIR=$TEPI_CACHE/bench/rust-floor-target CARGO_PROFILE_RELEASE_STRIP=debuginfo \
      "$WORKER_BUILD_BIN" --release >&2) || die "building bench/rust-floor failed"
    mkdir -p "$RSFLOOR_OUT"
    "$WASM_TOOLS_BIN" strip --all "$RSFLOOR_SRC/build/index_bg.wasm" -o "$RSFLOOR_OUT/index_bg.wasm"
    cp "$RSFLOOR_SRC/build/index.js" "$RSFLOOR_OUT/index.js"
    rm -rf "$RSFLOOR_SRC/build"
  fi
  cp "$RSFLOOR_OUT/index.js" "$RSFLOOR_OUT/index_bg.wasm" "$RUN/rsfloor/"
fi
load_test_secrets

SERVERS=(tepi hono floor)
# Under bare workerd also the Rust floor: the same answer as the floor, from
# a workers-rs Worker (what any Rust Worker pays for the Wasm seam).
WORKERD_SERVERS=(tepi hono floor rsfloor)
RUNS_TSV=$RUN/runs.tsv
COLD_TSV=$RUN/cold.tsv
: >"$RUNS_TSV"
: >"$COLD_TSV"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A URL PID

# The answer to GET PATH without its per-request values (ids, trace, ETag),
# headers sorted: for comparing servers. BENCH_TOKEN authorises it when set.
answer() {
  local headers=()
  [[ -n ${BENCH_TOKEN:-} ]] && headers=(-H @-)
  curl -sS -i --max-time 30 "${headers[@]}" "$1$2" <<<"authorization: Bearer ${BENCH_TOKEN:-}" | tr -d '\r' |
    sed -E -e 's/^(x-request-id|traceparent|date|etag): .*/\1: */I' \
      -e 's/"request_id":"[0-9a-f]{32}"/"request_id":"*"/' | sort
}

# status URL PATH — the status of GET PATH, authorised with BENCH_TOKEN.
status() {
  curl -sS -o /dev/null -w '%{http_code}' --max-time 30 -H @- "$1$2" <<<"authorization: Bearer ${BENCH_TOKEN:-}"
}

# login URL — a fresh access token of the operator's admin, whom
# operator_token (serve.sh) bootstrapped with this password.
login() {
  local password="op-${TEPI_TEST_BOOTSTRAP_TOKEN:0:24}" # pragma: allowlist secret
  curl -fsS --max-time 120 "$1/v1/auth/login" -H 'content-type: application/json' \
    --data-binary @<(PASSWORD=$password python3 -c '
import json, os
print(json.dumps({"tenant": "ops", "email": "root@ops.test", "password": os.environ["PASSWORD"]}))') |
    json_get access_token || die "login at $1 failed"
}

# Access tokens live 15 minutes: each run starts with one at most 10 old.
TOKEN_AT=0
TOKEN_SOURCE=""
fresh_token() {
  if ((SECONDS - TOKEN_AT < 600)) && [[ -n ${BENCH_TOKEN:-} ]]; then return; fi
  case $TOKEN_SOURCE in
    mint) BENCH_TOKEN=$(JWT_SIGNING_KEYS=$TEPI_TEST_JWT_SIGNING_KEYS node "$TEPI_ROOT/bench/mint-token.mjs" bench usr_bench user) ;;
    http://*) BENCH_TOKEN=$(login "$TOKEN_SOURCE") ;;
    *) die "no token source" ;;
  esac
  TOKEN_AT=$SECONDS
}

# ticks ENV SERVER — the server's CPU so far: the workerd process, every
# workerd process of a wrangler dev, or spin-test-host.
ticks() {
  case $1 in
    wrangler) group_ticks "${PID[$1/$2]}" workerd ;;
    *) cpu_ticks "${PID[$1/$2]}" ;;
  esac
}
# aux_ticks ENV SERVER — wrangler dev's node processes (they log each request).
aux_ticks() {
  if [[ $1 == wrangler ]]; then group_ticks "${PID[$1/$2]}" node; else echo 0; fi
}

# settle ENV SERVER — waits (at most 10 s) until the server is idle, its CPU
# growing by under 2 ticks in half a second: a saturated run leaves queued
# requests behind, whose CPU would otherwise slow the next run on that CPU.
settle() {
  local prev now
  prev=$(ticks "$1" "$2")
  for _ in $(seq 1 20); do
    sleep 0.5
    now=$(ticks "$1" "$2")
    ((now - prev < 2)) && return 0
    prev=$now
  done
  log "note: $2 ($1) was still busy 10 s after its run"
}

# one_run ENV ROUTE SERVER RATE ROUND PATH EXPECT — one measured run.
one_run() {
  local env=$1 route=$2 server=$3 rate=$4 round=$5 path=$6 expect=$7
  local summary="$RUN/k6-$env-$route-$server-$rate-$round.json" before aux0 rc after aux1 load thresholds started
  fresh_token
  started=$(date -u +%H:%M:%S) # to match a run against other activity on the machine
  log "$started $env round $round/$ROUNDS: $server GET $path at ${rate}/s for ${DURATION}s"
  before=$(ticks "$env" "$server")
  aux0=$(aux_ticks "$env" "$server")
  rc=$(bench_k6 "${URL[$env/$server]}" "$path" "$rate" "$DURATION" "$summary" "$expect")
  after=$(ticks "$env" "$server")
  aux1=$(aux_ticks "$env" "$server")
  load=$(cut -d' ' -f1 /proc/loadavg)
  kill -0 "${PID[$env/$server]}" 2>/dev/null || die "$server ($env) died; logs in $RUN"
  settle "$env" "$server"
  case $rc in
    0) thresholds=pass ;;
    99) thresholds=crossed ;;
    *) die "k6 failed (exit $rc) on $server ($env) at ${rate}/s" ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$env" "$route" "$server" "$rate" "$round" \
    "$DURATION" "$((after - before))" "$((aux1 - aux0))" "$load" "$thresholds" "$started" "$summary" >>"$RUNS_TSV"
}

# expected STATUSES SERVER — the status SERVER must answer: STATUSES is a
# default and per-server exceptions, e.g. `503,floor:200` (the floor
# answers 200 to everything).
expected() {
  local s
  for s in ${1//,/ }; do
    if [[ $s == "$2:"* ]]; then
      echo "${s#*:}"
      return
    fi
  done
  echo "${1%%,*}"
}

# measure ENV "RATES" SERVERS... -- ROUTE=PATH=STATUSES... — warm-up, then
# the interleaved rounds.
measure() {
  local env=$1 rates=$2 servers=() specs=() spec route path expect server round rate first rc
  shift 2
  while [[ $1 != -- ]]; do servers+=("$1"); shift; done
  shift
  specs=("$@")
  first=${rates%% *}
  if ((WARMUP > 0)); then
    for spec in "${specs[@]}"; do
      IFS='=' read -r route path expect <<<"$spec"
      for server in "${servers[@]}"; do
        fresh_token
        log "$env warm-up: $server GET $path at ${first}/s for ${WARMUP}s (not recorded)"
        rc=$(bench_k6 "${URL[$env/$server]}" "$path" "$first" "$WARMUP" "$RUN/warmup.json" "$(expected "$expect" "$server")")
        [[ $rc == 0 || $rc == 99 ]] || die "k6 failed (exit $rc) warming up $server ($env)"
        settle "$env" "$server"
      done
    done
  fi
  for round in $(seq 1 "$ROUNDS"); do
    for spec in "${specs[@]}"; do
      IFS='=' read -r route path expect <<<"$spec"
      for rate in $rates; do
        for server in "${servers[@]}"; do
          one_run "$env" "$route" "$server" "$rate" "$round" "$path" "$(expected "$expect" "$server")"
        done
      done
    done
  done
}

# stop_env ENV SERVERS... — stops an environment's services before the next
# one runs, so idle servers take no CPU from it.
stop_env() {
  local env=$1 server
  shift
  for server in "$@"; do stop_service "${PID[$env/$server]}"; done
}

# ---------------------------------------------------------------- bare workerd
# workerd_port I — the port of WORKERD_SERVERS[I]: the first three ports,
# then the eighth (wrangler dev takes the fourth to sixth, Spin the seventh).
workerd_port() { if (($1 < 3)); then echo $((BASE_PORT + $1)); else echo $((BASE_PORT + 7)); fi; }

workerd_env() {
  local i server jwks path times
  # Tepi first: Hono is given the public keys Tepi itself publishes.
  write_config "$RUN/tepi" "$BASE_PORT" "JWT_SIGNING_KEYS=$TEPI_TEST_JWT_SIGNING_KEYS" \
    JWT_ISSUER=tepi JWT_AUDIENCE=tepi-api "RATE_LIMIT_API=$API_POLICY"
  start_workerd tepi "$RUN/tepi" "$BASE_PORT"
  PID[workerd/tepi]=$SERVER_PID
  jwks=$(curl -fsS --max-time 10 "http://127.0.0.1:$BASE_PORT/.well-known/jwks.json") || die "no JWKS from Tepi"
  write_config "$RUN/hono" "$((BASE_PORT + 1))" "JWKS=$jwks" JWT_ISSUER=tepi JWT_AUDIENCE=tepi-api "RATE_LIMIT_API=$API_POLICY"
  write_config "$RUN/floor" "$((BASE_PORT + 2))"
  write_config "$RUN/rsfloor" "$((BASE_PORT + 7))"
  for i in 1 2 3; do
    server=${WORKERD_SERVERS[$i]}
    start_workerd "$server" "$RUN/$server" "$(workerd_port "$i")"
    PID[workerd/$server]=$SERVER_PID
  done
  for i in 0 1 2 3; do URL[workerd/${WORKERD_SERVERS[$i]}]="http://127.0.0.1:$(workerd_port "$i")"; done

  # Same answers from Tepi and Hono to what is measured, apart from ids.
  TOKEN_SOURCE=mint
  TOKEN_AT=0
  fresh_token
  for path in /healthz /v1/auth/me; do
    diff -u <(answer "${URL[workerd/tepi]}" "$path") <(answer "${URL[workerd/hono]}" "$path") >&2 ||
      die "Tepi and Hono answer GET $path differently under bare workerd"
    [[ $(status "${URL[workerd/floor]}" "$path") == 200 ]] || die "the floor does not answer 200"
    [[ $(status "${URL[workerd/rsfloor]}" "$path") == 200 ]] || die "the Rust floor does not answer 200"
  done
  [[ $(status "${URL[workerd/tepi]}" /v1/auth/me) == 503 ]] || die "Tepi without a database should answer 503"

  measure workerd "$WORKERD_RATES" "${WORKERD_SERVERS[@]}" -- healthz=/healthz=200 "me-nodb=/v1/auth/me=503,floor:200,rsfloor:200"
  stop_env workerd "${WORKERD_SERVERS[@]}"

  # Cold starts, one server at a time, nothing else running.
  for i in 0 1 2 3; do
    server=${WORKERD_SERVERS[$i]}
    log "cold start of $server: $COLD_RUNS × (spawn workerd serve → first 200 on /healthz)"
    times=$(python3 "$TEPI_ROOT/scripts/bench-coldstart.py" "$COLD_RUNS" "$(workerd_port "$i")" -- \
      "${PIN_SERVER[@]}" "$WORKERD_BIN" serve "$RUN/$server/config.capnp") || die "cold start of $server failed"
    printf '%s\t%s\n' "$server" "$times" >>"$COLD_TSV"
  done
}

# ---------------------------------------------------------------- wrangler dev
# wrangler_config SRC OUT MAIN — SRC with `main` and `migrations_dir` made
# absolute (OUT lives in the run dir), and the Rate Limiting bindings'
# limits raised as gates_wrangler_config raises Tepi's: a binding counts per
# fixed window and cannot be set per run.
wrangler_config() {
  sed -E -e "s#^main = .*#main = \"$3\"#" -e "s#^migrations_dir = .*#migrations_dir = \"$TEPI_ROOT/migrations\"#" \
    -e 's/^simple = \{ limit = [0-9]+, period = (10|60) \}/simple = { limit = 100000, period = \1 }/' "$1" >"$2"
}

# d1_rows CONFIG STATE SQL — the rows of a query on a local D1, as JSON.
d1_rows() {
  wrangler d1 execute DB --local --config "$1" --persist-to "$2" --json --command "$3" 2>>"$RUN/d1.log" ||
    die "wrangler d1 execute failed (see $RUN/d1.log)"
}

wrangler_env() {
  local port=$((BASE_PORT + 3)) jwks server tepi_body hono_body tenants users
  # Tepi through serve.sh, from the run dir's copy of the artifact.
  wrangler_config "$(gates_wrangler_config)" "$RUN/tepi.wrangler.toml" "$RUN/tepi/index.js"
  TEPI_WRANGLER_CONFIG=$RUN/tepi.wrangler.toml start_workers "$port"
  PID[wrangler/tepi]=${TEPI_PIDS[-1]}
  URL[wrangler/tepi]="http://127.0.0.1:$port"

  # The operator tenant and its admin, through Tepi's bootstrap and login;
  # then the same rows in Hono's D1.
  BENCH_TOKEN=$(operator_token "${URL[wrangler/tepi]}")
  TOKEN_SOURCE=${URL[wrangler/tepi]}
  TOKEN_AT=$SECONDS
  wrangler_config "$TEPI_ROOT/bench/hono/wrangler.toml" "$RUN/hono.wrangler.toml" "$TEPI_ROOT/bench/hono/src/index.js"
  wrangler d1 migrations apply DB --local --config "$RUN/hono.wrangler.toml" --persist-to "$RUN/hono-state" \
    >>"$RUN/d1.log" 2>&1 || die "migrating Hono's D1 failed (see $RUN/d1.log)"
  tenants=$(d1_rows "$RUN/tepi.wrangler.toml" "$RUN/wrangler-state" \
    "SELECT id, name, operator, created_at FROM tenants WHERE id = 'ops'")
  users=$(d1_rows "$RUN/tepi.wrangler.toml" "$RUN/wrangler-state" \
    "SELECT id, tenant_id, email, password_hash, role, created_at, updated_at FROM users WHERE tenant_id = 'ops'")
  python3 - "$RUN/seed.sql" "$tenants" "$users" <<'PY'
import json, sys

def literal(v):
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"

out = []
for table, rows in (("tenants", json.loads(sys.argv[2])[0]["results"]), ("users", json.loads(sys.argv[3])[0]["results"])):
    if not rows:
        sys.exit(f"no {table} row to copy")
    for row in rows:
        out.append(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(literal(v) for v in row.values())});")
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
  wrangler d1 execute DB --local --config "$RUN/hono.wrangler.toml" --persist-to "$RUN/hono-state" \
    --file "$RUN/seed.sql" >>"$RUN/d1.log" 2>&1 || die "seeding Hono's D1 failed (see $RUN/d1.log)"

  jwks=$(curl -fsS --max-time 30 "${URL[wrangler/tepi]}/.well-known/jwks.json") || die "no JWKS from Tepi"
  port_free "$((port + 1))" || die "port $((port + 1)) is taken (set $PORT_SETTING)"
  start_service "wrangler dev (hono)" "$RUN/hono.wrangler.log" "$TEPI_ROOT/node_modules/.bin/wrangler" dev \
    --config "$RUN/hono.wrangler.toml" --ip 127.0.0.1 --port "$((port + 1))" --inspector-port 0 \
    --persist-to "$RUN/hono-state" --var "JWKS:$jwks" --var "RATE_LIMIT_API:$API_POLICY" \
    --var TRUST_PLATFORM_PEER:false --show-interactive-dev-session=false
  PID[wrangler/hono]=${TEPI_PIDS[-1]}
  URL[wrangler/hono]="http://127.0.0.1:$((port + 1))"
  wait_ready "wrangler dev (hono)" "${URL[wrangler/hono]}/healthz" "$RUN/hono.wrangler.log"

  printf 'name = "tepi-bench-floor"\nmain = "%s"\ncompatibility_date = "%s"\n' \
    "$TEPI_ROOT/bench/floor/index.js" "$COMPAT_DATE" >"$RUN/floor.wrangler.toml"
  port_free "$((port + 2))" || die "port $((port + 2)) is taken (set $PORT_SETTING)"
  start_service "wrangler dev (floor)" "$RUN/floor.wrangler.log" "$TEPI_ROOT/node_modules/.bin/wrangler" dev \
    --config "$RUN/floor.wrangler.toml" --ip 127.0.0.1 --port "$((port + 2))" --inspector-port 0 \
    --persist-to "$RUN/floor-state" --show-interactive-dev-session=false
  PID[wrangler/floor]=${TEPI_PIDS[-1]}
  URL[wrangler/floor]="http://127.0.0.1:$((port + 2))"
  wait_ready "wrangler dev (floor)" "${URL[wrangler/floor]}/healthz" "$RUN/floor.wrangler.log"
  for server in "${SERVERS[@]}"; do pin_group "${PID[wrangler/$server]}"; done

  # Both answer the full route with the user, in the same JSON shape.
  tepi_body=$(curl -fsS --max-time 30 -H @- "${URL[wrangler/tepi]}/v1/auth/me" <<<"authorization: Bearer $BENCH_TOKEN") ||
    die "Tepi does not answer GET /v1/auth/me with 200 under wrangler dev"
  hono_body=$(curl -fsS --max-time 30 -H @- "${URL[wrangler/hono]}/v1/auth/me" <<<"authorization: Bearer $BENCH_TOKEN") ||
    die "Hono does not answer GET /v1/auth/me with 200 under wrangler dev"
  python3 - "$tepi_body" "$hono_body" <<'PY' || die "Tepi and Hono answer GET /v1/auth/me with different JSON keys"
import json, sys
tepi, hono = json.loads(sys.argv[1]), json.loads(sys.argv[2])
if sorted(tepi) != sorted(hono):
    sys.exit(f"keys differ: tepi {sorted(tepi)}, hono {sorted(hono)}")
if tepi != hono:
    print(f"note: same keys, different values: tepi {tepi}, hono {hono}", file=sys.stderr)
PY
  [[ $tepi_body == "$hono_body" ]] && log "Tepi and Hono answer GET /v1/auth/me with the same body: $tepi_body"
  diff -u <(answer "${URL[wrangler/tepi]}" /v1/auth/me) <(answer "${URL[wrangler/hono]}" /v1/auth/me) >&2 ||
    log "note: the answers' headers differ as shown above (not fatal under wrangler dev)"

  measure wrangler "$WRANGLER_RATES" "${SERVERS[@]}" -- me=/v1/auth/me=200
  stop_env wrangler "${SERVERS[@]}"
}

# ------------------------------------------------------------------------ Spin
spin_env() {
  local port=$((BASE_PORT + 6))
  start_spin "$port"
  PID[spin/spin]=${TEPI_PIDS[-1]}
  URL[spin/spin]="http://127.0.0.1:$port"
  [[ $(<"/proc/${PID[spin/spin]}/comm") == spin-test-host ]] || die "pid ${PID[spin/spin]} is not spin-test-host"
  pin_group "${PID[spin/spin]}"
  BENCH_TOKEN=$(operator_token "${URL[spin/spin]}")
  TOKEN_SOURCE=${URL[spin/spin]}
  TOKEN_AT=$SECONDS
  [[ $(status "${URL[spin/spin]}" /v1/auth/me) == 200 ]] || die "Spin does not answer GET /v1/auth/me with 200"
  measure spin "$SPIN_RATES" spin -- healthz=/healthz=200 me=/v1/auth/me=200
  stop_env spin spin
}

wants workerd && workerd_env
wants wrangler && wrangler_env
wants spin && spin_env

commit=$(git -C "$TEPI_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(git -C "$TEPI_ROOT" status --porcelain 2>/dev/null) ]] || commit+=" (with uncommitted changes)"
versions="workerd $("$WORKERD_BIN" --version | cut -d' ' -f2), wrangler $(json_get version <"$TEPI_ROOT/node_modules/wrangler/package.json")"
versions+=", hono $(json_get version <"$TEPI_ROOT/node_modules/hono/package.json"), $("$K6_BIN" version | head -n1 | cut -d' ' -f1-2)"
versions+=", node $(node --version), compatibility date $COMPAT_DATE"
sizes="tepi index_bg.wasm $(wc -c <"$RUN/tepi/index_bg.wasm") B + index.js $(wc -c <"$RUN/tepi/index.js") B"
sizes+=", hono bundle $(wc -c <"$RUN/hono/index.js") B"
[[ -f $RUN/rsfloor/index_bg.wasm ]] && sizes+=", rust floor index_bg.wasm $(wc -c <"$RUN/rsfloor/index_bg.wasm") B"
[[ -f $SPIN_WASM ]] && sizes+=", tepi_spin.wasm $(wc -c <"$SPIN_WASM") B"
DATE=$(date -u '+%Y-%m-%d %H:%M UTC') COMMIT=$commit NPROC=$(nproc) PINNING=$PINNING CLK=$CLK_TCK \
  CPU=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1) LOAD_BEFORE=$LOAD_BEFORE \
  LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg) VERSIONS=$versions SIZES=$sizes \
  SETTINGS="envs: $ENVS; rates/s: workerd $WORKERD_RATES, wrangler $WRANGLER_RATES, spin $SPIN_RATES; ${DURATION} s × $ROUNDS round(s), ${WARMUP} s warm-up; cold starts × $COLD_RUNS; api policy $API_POLICY" \
  python3 -c '
import json, os
e = os.environ
print(json.dumps(dict(date=e["DATE"], commit=e["COMMIT"], cpu=e["CPU"], nproc=int(e["NPROC"]), pinning=e["PINNING"],
    load_before=e["LOAD_BEFORE"], load_after=e["LOAD_AFTER"], versions=e["VERSIONS"], sizes=e["SIZES"],
    settings=e["SETTINGS"], clk_tck=int(e["CLK"]))))' >"$RUN/meta.json"
python3 "$TEPI_ROOT/scripts/bench-report.py" "$RUNS_TSV" "$COLD_TSV" "$RUN/meta.json" "$RESULTS"
