#!/usr/bin/env bash
# Compares the two ways of crossing the Workers adapter seam, in one run:
#
#   manual  tepi-cloudflare as shipped: worker::Request -> http::Request<Bytes>
#           and back by hand (one buffered body, headers copied once)
#   http    the same crate built with --features http-feature-seam, which
#           serves through workers-rs's own `http` feature instead
#
# Both release builds run side by side under bare `workerd serve` on 127.0.0.1
# and k6 (k6/bench.js) drives GET /healthz at constant arrival rates,
# alternating the variants (manual, http, manual, http, ...) so machine noise
# hits both. For every run it records workerd's CPU time (utime+stime from
# /proc/<pid>/stat), the completed requests, p95 latency and achieved RPS, and
# prints a table with the http/manual ratio of CPU per request.
# With two or more cores, workerd is pinned to CPU 0 and k6 to CPU 1.
#
# Settings (environment):
#   BENCH_SEAM_RATES="500 1000 1500"  arrival rates, requests per second
#   BENCH_SEAM_DURATION=10            seconds per run
#   BENCH_SEAM_ROUNDS=2               runs per variant and rate
#   BENCH_SEAM_WARMUP=5               seconds of unrecorded load per variant first
#   BENCH_SEAM_PORT=18791             manual listens here, http on the next port
#   BENCH_SEAM_RESULTS=path.json      also write the per-run figures there
#   TEPI_WORKER_BUILD_FLAGS           extra worker-build flags (default: release + wasm-opt)
#
# The http variant is built first, so edge/cloudflare/build/ ends up holding
# the shipped (manual) build again.
source "$(dirname "$0")/lib.sh"
source "$TEPI_ROOT/scripts/serve.sh"
source "$TEPI_ROOT/scripts/bench-lib.sh"
trap cleanup_services EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

RATES=${BENCH_SEAM_RATES:-500 1000 1500}
DURATION=${BENCH_SEAM_DURATION:-10}
ROUNDS=${BENCH_SEAM_ROUNDS:-2}
WARMUP=${BENCH_SEAM_WARMUP:-5}
BASE_PORT=${BENCH_SEAM_PORT:-18791}
PORT_SETTING=BENCH_SEAM_PORT
VARIANTS=(manual http)

# Bounds, so every loop below is bounded too.
bench_rates BENCH_SEAM_RATES "$RATES" 5000
bench_int BENCH_SEAM_DURATION "$DURATION" 1 120
bench_int BENCH_SEAM_ROUNDS "$ROUNDS" 1 10
bench_int BENCH_SEAM_WARMUP "$WARMUP" 0 60
bench_int BENCH_SEAM_PORT "$BASE_PORT" 1024 65534

bash "$TEPI_ROOT/scripts/tools.sh"
[[ -x $K6_BIN ]] || die "k6 missing at $K6_BIN (run scripts/tools.sh)"
[[ -x $WORKERD_BIN ]] || die "workerd missing at $WORKERD_BIN (run scripts/tools.sh)"

# build_variant NAME [worker-build args...] — builds and copies the output aside.
build_variant() {
  local name=$1
  shift
  log "building the $name variant"
  TEPI_SKIP_BUILD='' bash "$TEPI_ROOT/scripts/build-worker.sh" "$@"
  mkdir -p "$TEPI_RUN_DIR/$name"
  cp -R "$WORKER_OUT/." "$TEPI_RUN_DIR/$name/"
}

declare -A PORT PID
start_variant() {
  local name=$1 port=$2
  write_config "$TEPI_RUN_DIR/$name" "$port"
  start_workerd "$name" "$TEPI_RUN_DIR/$name" "$port"
  PORT[$name]=$port
  PID[$name]=$SERVER_PID
}

# k6_run NAME RATE SECONDS SUMMARY — one run against a variant; prints k6's exit code.
k6_run() { bench_k6 "http://127.0.0.1:${PORT[$1]}" /healthz "$2" "$3" "$4"; }

build_variant http --features http-feature-seam
build_variant manual
for i in "${!VARIANTS[@]}"; do
  start_variant "${VARIANTS[$i]}" "$((BASE_PORT + i))"
done

# Same answer from both seams, apart from the per-request ids and the body
# framing (a streamed body goes out chunked, a fixed one with Content-Length).
for name in "${VARIANTS[@]}"; do
  curl -fsS -D - --max-time 5 "http://127.0.0.1:${PORT[$name]}/healthz" | tr -d '\r' \
    | sed -E 's/^(x-request-id|traceparent|date): .*/\1: */I' | sort >"$TEPI_RUN_DIR/$name.healthz"
  log "$name frames the body with: $(grep -iE '^(content-length|transfer-encoding):' "$TEPI_RUN_DIR/$name.healthz" | tr '\n' ' ')"
done
diff -u <(grep -viE '^(content-length|transfer-encoding):' "$TEPI_RUN_DIR/manual.healthz") \
  <(grep -viE '^(content-length|transfer-encoding):' "$TEPI_RUN_DIR/http.healthz") >&2 \
  || die "the two variants answer GET /healthz differently"

first_rate=${RATES%% *}
if ((WARMUP > 0)); then
  for name in "${VARIANTS[@]}"; do
    log "warming up $name: ${first_rate}/s for ${WARMUP}s (not recorded)"
    rc=$(k6_run "$name" "$first_rate" "$WARMUP" "$TEPI_RUN_DIR/warmup-$name.json")
    [[ $rc == 0 || $rc == 99 ]] || die "k6 failed (exit $rc) warming up $name"
  done
fi

RUNS="$TEPI_RUN_DIR/runs.tsv"
: >"$RUNS"
for round in $(seq 1 "$ROUNDS"); do
  for rate in $RATES; do
    for name in "${VARIANTS[@]}"; do
      log "round $round/$ROUNDS: $name at ${rate}/s for ${DURATION}s"
      summary="$TEPI_RUN_DIR/k6-$name-$rate-$round.json"
      before=$(cpu_ticks "${PID[$name]}")
      rc=$(k6_run "$name" "$rate" "$DURATION" "$summary")
      after=$(cpu_ticks "${PID[$name]}")
      load=$(cut -d' ' -f1 /proc/loadavg) # workerd and k6 alone make about 1
      kill -0 "${PID[$name]}" 2>/dev/null || die "workerd ($name) died; see $TEPI_RUN_DIR/$name.log"
      case $rc in
        0) thresholds=pass ;;
        99) thresholds=crossed ;;
        *) die "k6 failed (exit $rc) on $name at ${rate}/s" ;;
      esac
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rate" "$round" "$((after - before))" \
        "$load" "$thresholds" "$summary" >>"$RUNS"
    done
  done
done

python3 - "$RUNS" "$CLK_TCK" "$TEPI_RUN_DIR" "${BENCH_SEAM_RESULTS:-}" "$PINNING" <<'PY'
import json, os, statistics, sys

runs_path, clk_tck, run_dir, results_path, pinning = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
runs = []
for line in open(runs_path):
    name, rate, rnd, ticks, load, thresholds, summary = line.rstrip("\n").split("\t")
    m = json.load(open(summary))["metrics"]
    completed = m["http_req_failed"]["values"]["fails"]  # requests answered without error
    cpu_us = int(ticks) * 1e6 / clk_tck
    runs.append(dict(
        variant=name, rate=int(rate), round=int(rnd), completed=completed,
        failed=m["http_req_failed"]["values"]["passes"],
        dropped=m.get("dropped_iterations", {}).get("values", {}).get("count", 0),
        achieved_rps=m["http_reqs"]["values"]["rate"],
        p95_ms=m["http_req_duration"]["values"]["p(95)"],
        cpu_us=cpu_us, cpu_us_per_req=cpu_us / completed if completed else float("nan"),
        load1=float(load),
        thresholds=thresholds,
    ))

print(f"\nPer run ({pinning}; CPU from /proc, {clk_tck} ticks/s; load = 1-min load average after"
      " the run: workerd and k6 alone make about 1, more means something else was busy)")
print(f"{'round':>5} {'rate/s':>6} {'variant':<7} {'completed':>9} {'achieved/s':>10} {'p95 ms':>7} {'CPU s':>6} {'CPU µs/req':>10} {'load':>5}  thresholds")
for r in runs:
    print(f"{r['round']:>5} {r['rate']:>6} {r['variant']:<7} {r['completed']:>9} {r['achieved_rps']:>10.1f} "
          f"{r['p95_ms']:>7.2f} {r['cpu_us'] / 1e6:>6.2f} {r['cpu_us_per_req']:>10.1f} {r['load1']:>5.2f}  {r['thresholds']}")

def agg(rs):
    completed = sum(r["completed"] for r in rs)
    return dict(
        completed=completed,
        achieved=statistics.mean(r["achieved_rps"] for r in rs),
        p95=statistics.median(r["p95_ms"] for r in rs),
        cpu_per_req=sum(r["cpu_us"] for r in rs) / completed if completed else float("nan"),
        crossed=sum(r["thresholds"] == "crossed" for r in rs),
    )

rates = sorted({r["rate"] for r in runs})
rounds = max(r["round"] for r in runs)
print(f"\nSummary ({rounds} round(s) per cell; CPU µs/req = workerd CPU / completed requests; p95 = median over rounds)")
print(f"{'rate/s':>6} {'variant':<7} {'completed':>9} {'achieved/s':>10} {'p95 ms':>7} {'CPU µs/req':>10}   ratio http/manual (per round)")
for rate in rates:
    cell = {v: agg([r for r in runs if r["rate"] == rate and r["variant"] == v]) for v in ("manual", "http")}
    per_round = []
    for rnd in range(1, rounds + 1):
        pair = {r["variant"]: r for r in runs if r["rate"] == rate and r["round"] == rnd}
        per_round.append(pair["http"]["cpu_us_per_req"] / pair["manual"]["cpu_us_per_req"])
    for v in ("manual", "http"):
        c = cell[v]
        tail = ""
        if v == "http":
            ratio = c["cpu_per_req"] / cell["manual"]["cpu_per_req"]
            tail = f"   {ratio:.2f}  ({', '.join(f'{x:.2f}' for x in per_round)})"
        flag = f"  [thresholds crossed in {c['crossed']} run(s)]" if c["crossed"] else ""
        print(f"{rate:>6} {v:<7} {c['completed']:>9} {c['achieved']:>10.1f} {c['p95']:>7.2f} {c['cpu_per_req']:>10.1f}{tail}{flag}")
total = {v: agg([r for r in runs if r["variant"] == v]) for v in ("manual", "http")}
overall = total["http"]["cpu_per_req"] / total["manual"]["cpu_per_req"]
print(f"\nAll rates: manual {total['manual']['cpu_per_req']:.1f} µs/req, http {total['http']['cpu_per_req']:.1f} µs/req, "
      f"ratio http/manual = {overall:.2f}")

sizes = {v: os.path.getsize(os.path.join(run_dir, v, "index_bg.wasm")) for v in ("manual", "http")}
print(f"index_bg.wasm: manual {sizes['manual']} bytes, http {sizes['http']} bytes")
if results_path:
    with open(results_path, "w") as f:
        json.dump(dict(runs=runs, wasm_bytes=sizes, ratio_cpu_per_req=overall), f, indent=2)
    print(f"per-run figures written to {results_path}")
PY
