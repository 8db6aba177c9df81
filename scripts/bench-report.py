"""Tables and the JSON results of scripts/bench.sh.

    bench-report.py RUNS_TSV COLD_TSV META_JSON [RESULTS_JSON]

RUNS_TSV has one line per k6 run: environment, route, server, rate, round,
seconds, server CPU ticks, auxiliary CPU ticks (wrangler's node processes),
1-minute load average after the run, thresholds (pass/crossed), the UTC
time it started and the k6 summary file. COLD_TSV has one line per server: its name and the cold-start
times ({"ms": [...]}) of scripts/bench-coldstart.py. META_JSON holds the
machine notes and settings.

A cell is one (environment, route, server, rate) over every round:
  CPU µs/req  server CPU over all rounds / requests completed without error
  p50/p95/p99 the median over rounds of each run's percentile
  achieved/s  the mean over rounds of k6's request rate
  errors      failed requests + arrivals k6 dropped, over the offered ones
A rate is sustained when its p95 is under 50 ms and its errors under 1 %;
a server's max rate is the highest listed rate up to which every listed
rate was sustained.
"""

import json
import statistics
import sys

P95_LIMIT_MS = 50.0
ERROR_LIMIT = 0.01

ROUTES = {
    ("workerd", "healthz"): "bare workerd serve · GET /healthz",
    ("workerd", "me-nodb"): "bare workerd serve · GET /v1/auth/me, no database: JWT + rate limit + 503 "
                            "storage_unavailable (floor: 200)",
    ("wrangler", "me"): "wrangler dev · GET /v1/auth/me, full route: JWT + rate limit (GCRA + binding) + "
                        "D1 read → 200 (floor: 200)",
    ("spin", "healthz"): "Spin (tools/spin-test-host) · GET /healthz",
    ("spin", "me"): "Spin (tools/spin-test-host) · GET /v1/auth/me, full route: JWT + rate limit (SQLite) "
                    "+ SQLite read → 200",
}
ENV_CPU = {
    "workerd": "CPU = the workerd process",
    "wrangler": "CPU = the workerd processes of each wrangler dev (its node processes: node µs/req)",
    "spin": "CPU = the spin-test-host process",
}
SERVER_ORDER = ["tepi", "hono", "floor", "rsfloor", "spin"]


def load_runs(path, clk_tck):
    runs = []
    for line in open(path, encoding="utf-8"):
        env, route, server, rate, rnd, seconds, ticks, aux, load, thresholds, started, summary = line.rstrip("\n").split("\t")
        m = json.load(open(summary, encoding="utf-8"))["metrics"]
        completed = m["http_req_failed"]["values"]["fails"]  # answered with the expected status
        failed = m["http_req_failed"]["values"]["passes"]
        dropped = m.get("dropped_iterations", {}).get("values", {}).get("count", 0)
        d = m["http_req_duration"]["values"]
        cpu_us = int(ticks) * 1e6 / clk_tck
        runs.append(dict(
            env=env, route=route, server=server, rate=int(rate), round=int(rnd), seconds=int(seconds),
            completed=completed, failed=failed, dropped=dropped,
            achieved_rps=m["http_reqs"]["values"]["rate"],
            p50_ms=d["med"], p95_ms=d["p(95)"], p99_ms=d["p(99)"],
            cpu_us=cpu_us, cpu_us_per_req=cpu_us / completed if completed else None,
            aux_cpu_us=int(aux) * 1e6 / clk_tck,
            load1=float(load), thresholds=thresholds, started_utc=started,
        ))
    return runs


def cell_of(rs):
    completed = sum(r["completed"] for r in rs)
    offered = sum(r["rate"] * r["seconds"] for r in rs)
    errors = sum(r["failed"] + r["dropped"] for r in rs)
    c = dict(
        rounds=len(rs), completed=completed,
        cpu_us_per_req=sum(r["cpu_us"] for r in rs) / completed if completed else None,
        aux_cpu_us_per_req=sum(r["aux_cpu_us"] for r in rs) / completed if completed else None,
        p50_ms=statistics.median(r["p50_ms"] for r in rs),
        p95_ms=statistics.median(r["p95_ms"] for r in rs),
        p99_ms=statistics.median(r["p99_ms"] for r in rs),
        achieved_rps=statistics.mean(r["achieved_rps"] for r in rs),
        error_fraction=errors / offered if offered else 1.0,
        per_round_cpu=[r["cpu_us_per_req"] for r in sorted(rs, key=lambda r: r["round"])],
    )
    c["sustained"] = c["p95_ms"] < P95_LIMIT_MS and c["error_fraction"] < ERROR_LIMIT
    return c


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(x, spec, width):
    return f"{'—':>{width}}" if x is None else f"{x:>{width}{spec}}"


def main():
    runs_path, cold_path, meta_path = sys.argv[1:4]
    results_path = sys.argv[4] if len(sys.argv) > 4 else ""
    meta = json.load(open(meta_path, encoding="utf-8"))
    runs = load_runs(runs_path, meta["clk_tck"])
    cold = {}
    for line in open(cold_path, encoding="utf-8"):
        server, times = line.rstrip("\n").split("\t")
        cold[server] = json.loads(times)["ms"]

    print("\nMachine")
    for key in ("date", "commit", "cpu", "nproc", "pinning", "load_before", "load_after", "versions", "sizes", "settings"):
        print(f"  {key:<12} {meta.get(key, '')}")

    cells, summaries = [], []
    for (env, route), title in ROUTES.items():
        rs = [r for r in runs if r["env"] == env and r["route"] == route]
        if not rs:
            continue
        servers = [s for s in SERVER_ORDER if any(r["server"] == s for r in rs)]
        rates = sorted({r["rate"] for r in rs})
        grid = {(s, rate): cell_of([r for r in rs if r["server"] == s and r["rate"] == rate])
                for s in servers for rate in rates}
        rounds, seconds = max(r["round"] for r in rs), rs[0]["seconds"]
        print(f"\n== {title}")
        print(f"   {ENV_CPU[env]}; {rounds} round(s) × {seconds} s per cell; ×hono/×floor = CPU µs/req ratio "
              "at the same rate (per round in brackets)")
        node = env == "wrangler"  # wrangler's own node process works per request too
        print(f"{'rate/s':>7} {'server':<7} {'CPU µs/req':>10} {'×hono':>6} {'×floor':>6} {'p50 ms':>7} {'p95 ms':>7} "
              f"{'p99 ms':>7} {'achieved/s':>10} {'errors':>7}" + (f" {'node µs/req':>11}" if node else "")
              + "  per-round ×hono")
        for rate in rates:
            for s in servers:
                c = grid[(s, rate)]
                vs_hono = ratio(c["cpu_us_per_req"], grid[("hono", rate)]["cpu_us_per_req"]) if "hono" in servers and s != "hono" else None
                vs_floor = ratio(c["cpu_us_per_req"], grid[("floor", rate)]["cpu_us_per_req"]) if "floor" in servers and s != "floor" else None
                rounds_hono = ""
                if vs_hono is not None:
                    pairs = zip(c["per_round_cpu"], grid[("hono", rate)]["per_round_cpu"])
                    rounds_hono = "(" + ", ".join(f"{a / b:.2f}" for a, b in pairs if a and b) + ")"
                flag = "" if c["sustained"] else "  [not sustained]"
                print(f"{rate:>7} {s:<7} {fmt(c['cpu_us_per_req'], '.1f', 10)} {fmt(vs_hono, '.2f', 6)} "
                      f"{fmt(vs_floor, '.2f', 6)} {c['p50_ms']:>7.2f} {c['p95_ms']:>7.2f} {c['p99_ms']:>7.2f} "
                      f"{c['achieved_rps']:>10.1f} {c['error_fraction'] * 100:>6.2f}%"
                      + (f" {fmt(c['aux_cpu_us_per_req'], '.1f', 11)}" if node else "") + f"  {rounds_hono}{flag}")
                cells.append(dict(env=env, route=route, server=s, rate=rate, cpu_vs_hono=vs_hono,
                                  cpu_vs_floor=vs_floor, **c))
        # Over all rates: CPU per request, the max sustained rate, and the ratios.
        print(f"{'all':>7} {'server':<7} {'CPU µs/req':>10} {'×hono':>6} {'×floor':>6}  max rate with p95 < 50 ms "
              "and < 1 % errors")
        overall = {}
        for s in servers:
            ss = [r for r in rs if r["server"] == s]
            done = sum(r["completed"] for r in ss)
            overall[s] = sum(r["cpu_us"] for r in ss) / done if done else None
        for s in servers:
            max_rate = None
            for rate in rates:
                if not grid[(s, rate)]["sustained"]:
                    break
                max_rate = rate
            vs_hono = ratio(overall[s], overall.get("hono")) if s != "hono" else None
            vs_floor = ratio(overall[s], overall.get("floor")) if s != "floor" else None
            shown = f"{max_rate}/s" if max_rate else f"none (< {rates[0]}/s)"
            if max_rate == rates[-1]:
                shown += " (the highest rate tried)"
            print(f"{'':>7} {s:<7} {fmt(overall[s], '.1f', 10)} {fmt(vs_hono, '.2f', 6)} {fmt(vs_floor, '.2f', 6)}  {shown}")
            summaries.append(dict(env=env, route=route, server=s, cpu_us_per_req=overall[s], cpu_vs_hono=vs_hono,
                                  cpu_vs_floor=vs_floor, max_sustained_rate=max_rate, rates=rates))

    cold_summary = {}
    if cold:
        print("\n== cold start: spawn `workerd serve` → first 200 on GET /healthz (wall clock, server on the server CPU)")
        print(f"{'server':<7} {'median ms':>9} {'min ms':>7} {'max ms':>7} {'×hono':>6}  runs")
        med = {s: statistics.median(v) for s, v in cold.items()}
        for s in [s for s in SERVER_ORDER if s in cold]:
            vs_hono = ratio(med[s], med.get("hono")) if s != "hono" else None
            print(f"{s:<7} {med[s]:>9.1f} {min(cold[s]):>7.1f} {max(cold[s]):>7.1f} {fmt(vs_hono, '.2f', 6)}  "
                  + ", ".join(f"{t:.1f}" for t in cold[s]))
            cold_summary[s] = dict(median_ms=med[s], runs_ms=cold[s])

    if results_path:
        with open(results_path, "w", encoding="utf-8") as f:
            json.dump(dict(machine=meta, summary=summaries, cells=cells, cold_start=cold_summary, runs=runs), f, indent=2)
        print(f"\nresults written to {results_path}")


if __name__ == "__main__":
    main()
