#!/usr/bin/env bash
# Lints the live Prometheus endpoints of both builds with `promtool check
# metrics` (Debian package prometheus, installed when missing): the Workers
# build under `wrangler dev` and the Spin build under spin-test-host. Some
# traffic goes first (successes, 401s, 404s, a 304, a burst into 429s) so
# that counters and histograms have samples; the scrapes then use a
# `metrics:read` API key, as Prometheus does.
#
# Fails when promtool reports an error (a body it cannot parse), or when an
# endpoint does not answer 200 with text format 0.0.4 or answers no sample.
# promtool's lint findings (naming conventions: `_total` suffixes, base units,
# help text) are listed as warnings and do not fail, unless PROMTOOL_STRICT=1.
#
#   scripts/promtool.sh [ENDPOINT...]   default: ENDPOINTS below
#   PROMTOOL_STRICT=1                   lint findings fail too
#   PROMTOOL_OUT=DIR                    keep the scraped bodies there
#   TEPI_PROMTOOL_WORKERS_PORT=18799  TEPI_PROMTOOL_SPIN_PORT=18800
source "$(dirname "$0")/lib.sh"
source "$TEPI_ROOT/scripts/serve.sh"
trap cleanup_services EXIT

# The endpoints linted, one per line: PATH on both builds, or
# `workers:PATH` / `spin:PATH` on that build only.
ENDPOINTS=(
  /metrics
  /metrics/workers
  /api/metrics/prometheus
)
(($# == 0)) || ENDPOINTS=("$@")

# The api class admits a burst of 10 and then one call per 10 s, so the
# burst in send_traffic meets 429s however slowly the machine answers; the
# scrapes use another subject (the metrics key).
export TEPI_TEST_RATE_LIMITS="RATE_LIMIT_LOGIN=1000/1s RATE_LIMIT_PUBLIC=1000/1s RATE_LIMIT_API=1/10s;burst=10 RATE_LIMIT_ADMIN=1000/1s RATE_LIMIT_PUSH=1000/1s"
WORKERS_PORT=${TEPI_PROMTOOL_WORKERS_PORT:-18799}
SPIN_PORT=${TEPI_PROMTOOL_SPIN_PORT:-18800}
[[ -f $WORKER_WASM ]] || die "no Workers build at $WORKER_WASM (run make build)"
[[ -f $SPIN_WASM ]] || die "no Spin build at $SPIN_WASM (run make build)"
[[ -x $SPIN_HOST_BIN ]] || die "no spin-test-host at $SPIN_HOST_BIN (run make setup)"
ensure_promtool
log "$(promtool --version 2>&1 | head -n1)"

# setup_credentials URL DIR — the operator admin's token and a
# metrics:read key, as curl header files DIR/admin.h and DIR/key.h.
setup_credentials() {
  local url=$1 dir=$2 token key
  token=$(operator_token "$url")
  key=$(api_key "$url" "$token" promtool metrics:read)
  (umask 077 && printf 'authorization: Bearer %s\n' "$token" >"$dir/admin.h")
  (umask 077 && printf 'authorization: Bearer %s\n' "$key" >"$dir/key.h")
}

# send_traffic URL DIR — a mix of answers for the counters and histograms.
send_traffic() {
  local url=$1 dir=$2 path etag
  for path in /healthz /healthz /readyz /version /.well-known/jwks.json /no-such-route; do
    curl -sS -o /dev/null "$url$path"
  done
  etag=$(curl -sS -o /dev/null -D - "$url/.well-known/jwks.json" | tr -d '\r' | sed -n 's/^etag: *//Ip')
  [[ -z $etag ]] || curl -sS -o /dev/null -H "if-none-match: $etag" "$url/.well-known/jwks.json"
  curl -sS -o /dev/null "$url/metrics"                          # 401
  curl -sS -o /dev/null "$url/v1/auth/me"                       # 401
  curl -sS -o /dev/null "$url/v1/auth/login" -H 'content-type: application/json' \
    -d '{"tenant":"ops","email":"root@ops.test","password":"not-the-password"}' # pragma: allowlist secret (a wrong one: 401)
  curl -sS -o /dev/null -H @"$dir/admin.h" "$url/v1/users"
  # Web Vitals beacons and pushes (the web job's and a batch job's), so the
  # web endpoint and the pushed families have samples.
  curl -sS -o /dev/null "$url/api/rum" -H 'content-type: text/plain' \
    --data-binary '[{"name":"LCP","value":1800},{"name":"INP","value":90},{"name":"CLS","value":0.05},{"name":"TTFB","value":300}]'
  printf '# HELP web_requests_total Requests the web frontend served.\n# TYPE web_requests_total counter\nweb_requests_total{route="/"} 3\n' |
    curl -sS -o /dev/null -X PUT -H @"$dir/admin.h" --data-binary @- "$url/metrics/job/web/instance/promtool"
  printf '# HELP batch_last_success_timestamp_seconds When the batch last succeeded.\n# TYPE batch_last_success_timestamp_seconds gauge\nbatch_last_success_timestamp_seconds 1.7e+09\n' |
    curl -sS -o /dev/null -X PUT -H @"$dir/admin.h" --data-binary @- "$url/metrics/job/batch"
  # A burst past the api class's burst: some answers are 429.
  for _ in $(seq 1 30); do printf 'url = "%s/v1/auth/me"\noutput = "/dev/null"\n' "$url"; done >"$dir/burst.curl"
  local limited
  limited=$(curl --no-progress-meter -Z --parallel-max 15 -w '%{http_code}\n' -H @"$dir/admin.h" \
    -K "$dir/burst.curl" | grep -c '^429$' || true)
  echo "traffic sent; a burst of 30 got $limited answers 429"
  ((limited > 0)) || fail "$url: a burst of 30 past a burst of 10 got no 429 (the rate-limit series stay empty)"
}

# scrape URL PATH DIR NAME — fetches one endpoint into DIR/NAME.prom; retries
# a 429 after its Retry-After.
scrape() {
  local url=$1 path=$2 dir=$3 name=$4 status
  for _ in 1 2 3; do
    status=$(curl -sS -o "$dir/$name.prom" -D "$dir/$name.headers" -w '%{http_code}' \
      -H @"$dir/key.h" "$url$path") || status=000
    [[ $status == 429 ]] || break
    sleep "$(tr -d '\r' <"$dir/$name.headers" | sed -n 's/^retry-after: *//Ip' | head -n1 | grep -E '^[0-9]+$' || echo 1)"
  done
  echo "$status"
}

failures=0
fail() { printf 'FAIL %s\n' "$*" >&2; failures=$((failures + 1)); }

# lint TARGET URL — every endpoint of ENDPOINTS that applies to TARGET.
lint() {
  local target=$1 url=$2 dir="$TEPI_RUN_DIR/$1" entry path name status type out rc
  mkdir -p "$dir"
  setup_credentials "$url" "$dir"
  send_traffic "$url" "$dir"
  for entry in "${ENDPOINTS[@]}"; do
    case $entry in
      workers:*) [[ $target == workers ]] || continue; path=${entry#workers:} ;;
      spin:*) [[ $target == spin ]] || continue; path=${entry#spin:} ;;
      *) path=$entry ;;
    esac
    name=$(tr -c 'a-zA-Z0-9\n' '_' <<<"${path#/}")
    status=$(scrape "$url" "$path" "$dir" "$name")
    if [[ $status != 200 ]]; then
      fail "$target $path: HTTP $status"
      continue
    fi
    type=$(tr -d '\r' <"$dir/$name.headers" | sed -n 's/^content-type: *//Ip' | tail -n1)
    [[ $type == text/plain* && $type == *version=0.0.4* ]] ||
      fail "$target $path: content-type '$type' is not the text format 0.0.4"
    local families samples
    families=$(grep -c '^# TYPE ' "$dir/$name.prom" || true)
    samples=$(grep -vc -e '^#' -e '^[[:space:]]*$' "$dir/$name.prom" || true)
    if ((samples == 0)); then
      fail "$target $path: no sample in the answer (does send_traffic reach it?)"
      continue
    fi
    [[ -z ${PROMTOOL_OUT:-} ]] || { mkdir -p "$PROMTOOL_OUT" && cp "$dir/$name.prom" "$PROMTOOL_OUT/$target-$name.prom"; }
    rc=0
    out=$(promtool check metrics <"$dir/$name.prom" 2>&1) || rc=$?
    case $rc in
      0) echo "ok   $target $path: $families families, $samples samples, promtool: clean" ;;
      3)
        echo "warn $target $path: $families families, $samples samples, promtool lint warnings:"
        sed 's/^/       warning: /' <<<"$out"
        [[ ${PROMTOOL_STRICT:-0} != 1 ]] || fail "$target $path: lint warnings (PROMTOOL_STRICT=1)"
        ;;
      *)
        sed 's/^/       /' <<<"$out" >&2
        fail "$target $path: promtool check metrics exited $rc"
        ;;
    esac
  done
}

start_workers "$WORKERS_PORT"
start_spin "$SPIN_PORT"
log "promtool check metrics: cloudflare-workers"
lint workers "http://127.0.0.1:$WORKERS_PORT"
log "promtool check metrics: spin"
lint spin "http://127.0.0.1:$SPIN_PORT"
((failures == 0)) || die "$failures endpoint check(s) failed (scraped bodies in $TEPI_RUN_DIR)"
log "promtool: every endpoint passed on both builds"
