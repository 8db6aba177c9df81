# shellcheck shell=bash
# Shared by the benchmarks (scripts/bench-seam.sh, scripts/bench.sh): input
# bounds, CPU pinning, bare `workerd serve` configs, CPU time from /proc and
# one k6 run. Source it after lib.sh; its functions use serve.sh's. The
# settings below are read by the scripts that source it.
# shellcheck disable=SC2034

# bench_int NAME VALUE MIN MAX — dies unless VALUE is a whole number in
# MIN..MAX, so every loop and sleep the settings drive is bounded.
bench_int() {
  local name=$1 value=$2 min=$3 max=$4
  if ! [[ $value =~ ^[0-9]+$ ]] || ((10#$value < min || 10#$value > max)); then
    die "$name must be $min..$max, got '$value'"
  fi
}

# bench_rates NAME LIST MAX — dies unless LIST holds 1 to 8 arrival rates,
# each 1..MAX requests per second.
bench_rates() {
  local name=$1 list=$2 max=$3 rate n=0
  for rate in $list; do
    if ! [[ $rate =~ ^[0-9]+$ ]] || ((10#$rate < 1 || 10#$rate > max)); then
      die "$name: $rate is not in 1..$max"
    fi
    n=$((n + 1))
  done
  ((n >= 1 && n <= 8)) || die "$name must list 1 to 8 rates, got '$list'"
}

# The runtime settings every bare workerd config shares with wrangler.toml.
COMPAT_DATE=$(sed -n 's/^compatibility_date = "\(.*\)"/\1/p' "$TEPI_ROOT/wrangler.toml")
[[ $COMPAT_DATE =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || die "no compatibility_date in wrangler.toml"
CLK_TCK=$(getconf CLK_TCK)

# With two or more cores the server runs on CPU 0 and k6 on CPU 1, so the
# load generator does not steal the server's CPU (or the other way round).
PIN_SERVER=()
PIN_LOAD=()
PINNING="servers and k6 unpinned"
if (($(nproc) >= 2)) && command -v taskset >/dev/null; then
  PIN_SERVER=(taskset -c 0)
  PIN_LOAD=(taskset -c 1)
  PINNING="servers on CPU 0, k6 on CPU 1"
fi

# pin_group PGID — moves every thread of every process in the process group
# onto the server CPU: for services whose command cannot be prefixed with
# taskset (start_workers, start_spin). Threads started later inherit it.
pin_group() {
  local pid
  ((${#PIN_SERVER[@]} > 0)) || return 0
  for pid in $(pgrep -g "$1"); do
    taskset -a -p -c 0 "$pid" >/dev/null 2>&1 || true
  done
}

# write_config DIR PORT [NAME=VALUE...] — DIR/config.capnp serving DIR's
# ES module worker (index.js, plus index_bg.wasm when present) on
# 127.0.0.1:PORT, with the given text bindings and nothing else.
write_config() {
  local dir=$1 port=$2 imports spec pair modules bindings=""
  shift 2
  modules='(name = "index.js", esModule = embed "index.js"),'
  if [[ -f $dir/index_bg.wasm ]]; then
    modules+=$'\n    (name = "index_bg.wasm", wasm = embed "index_bg.wasm"),'
  fi
  # index.js must import nothing but its Wasm module and cloudflare:* builtins.
  imports=$({ grep -o 'from *"[^"]*"' "$dir/index.js" || true; } | sed 's/from *"\(.*\)"/\1/' | sort -u)
  for spec in $imports; do
    [[ ($spec == ./index_bg.wasm && -f $dir/index_bg.wasm) || $spec == cloudflare:* ]] ||
      die "$dir/index.js imports $spec; add it to write_config"
  done
  for pair in "$@"; do
    # Cap'n Proto text literals take JSON's string escapes.
    bindings+="    (name = \"${pair%%=*}\", text = $(python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "${pair#*=}")),"$'\n'
  done
  (
    umask 077 # the bindings may hold this run's throwaway signing key
    cat >"$dir/config.capnp" <<EOF
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [(name = "main", worker = .worker)],
  sockets = [(name = "http", address = "127.0.0.1:$port", http = (), service = "main")],
);

const worker :Workerd.Worker = (
  modules = [
    $modules
  ],
  compatibilityDate = "$COMPAT_DATE",
  bindings = [
$bindings  ],
);
EOF
  )
}

# cpu_ticks PID — utime + stime of the process (all threads), in clock ticks.
cpu_ticks() {
  local stat fields
  stat=$(<"/proc/$1/stat")
  read -ra fields <<<"${stat##*) }" # fields[0] is field 3 (state)
  echo $((fields[11] + fields[12]))
}

# group_ticks PGID [COMM] — utime + stime summed over the processes of a
# process group, or only those whose command name is COMM (the workerd
# processes wrangler dev spawns), in clock ticks.
group_ticks() {
  local pgid=$1 comm=${2:-} file stat name fields total=0
  for file in /proc/[0-9]*/stat; do
    { stat=$(<"$file"); } 2>/dev/null || continue # the process may have gone
    name=${stat#*(}
    name=${name%)*}
    read -ra fields <<<"${stat##*) }" # fields[2] is field 5 (pgrp)
    [[ ${fields[2]} == "$pgid" ]] || continue
    [[ -z $comm || $name == "$comm" ]] || continue
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}

# start_workerd NAME DIR PORT — `workerd serve` of DIR/config.capnp on the
# server CPU, ready on /healthz; its pid in SERVER_PID. A taken port names
# the caller's PORT_SETTING.
start_workerd() {
  local name=$1 dir=$2 port=$3
  port_free "$port" || die "port $port is taken (set ${PORT_SETTING:-another port})"
  start_service "workerd ($name)" "$dir.log" "${PIN_SERVER[@]}" "$WORKERD_BIN" serve "$dir/config.capnp"
  SERVER_PID=${TEPI_PIDS[-1]}
  wait_ready "workerd ($name)" "http://127.0.0.1:$port/healthz" "$dir.log" 30
  # taskset execs workerd, so the service's pid is workerd's own.
  [[ $(<"/proc/$SERVER_PID/comm") == workerd ]] || die "pid $SERVER_PID is $(<"/proc/$SERVER_PID/comm"), not workerd"
}

# bench_k6 URL PATH RATE SECONDS SUMMARY [EXPECT_STATUS] — one
# constant-arrival-rate run of k6/bench.js on the load CPU; prints k6's exit
# code (0 passed, 99 thresholds crossed). A bearer token comes from
# BENCH_TOKEN in the environment, so it never shows in the process list.
bench_k6() {
  local url=$1 path=$2 rate=$3 seconds=$4 summary=$5 expect=${6:-200} rc=0
  K6_NO_USAGE_REPORT=true BASE_URL=$url URL_PATH=$path TOKEN=${BENCH_TOKEN:-} EXPECT_STATUS=$expect \
    RATE=$rate DURATION="${seconds}s" SUMMARY_JSON=$summary \
    "${PIN_LOAD[@]}" "$K6_BIN" run --quiet --no-color --no-usage-report "$TEPI_ROOT/k6/bench.js" >&2 || rc=$?
  echo "$rc"
}
