#!/usr/bin/env python3
"""Compares a k6 run's summary (k6/lib/summary.js) with a baseline.

    scripts/k6-compare.py RUN.json --baseline FILE
    scripts/k6-compare.py RUN.json --api URL --branch BRANCH [--key KEY] [--record [--commit SHA]]

A route, or the load as a whole, regresses when its p95 grew by more than
--tolerance percent (default 20) AND by more than --min-ms milliseconds
(default 5), or when its error rate grew by more than --error-pp
percentage points (default 0.5). The absolute slack is there because a
route that answers in a few milliseconds moves by a millisecond or two from
run to run for reasons that are not the code (timer and scheduling
granularity, a garbage collection, another process on the machine): 3 ms
to 4 ms is +33 % and means nothing, while 100 ms to 121 ms does. Routes
with fewer than --min-count requests in either run are shown but not
judged (default 1: all are judged). Job lag per queue is shown beside, not
judged.

Baselines come from a file — a summary JSON of an earlier run, or a stored
baseline record {"branch", …, "summary": {…}} — or from the API that keeps
them: GET URL/v1/ops/baselines/BRANCH?scenario=S&build=B with
`Authorization: Bearer KEY` (a baselines:write key; --key, else the
environment's BASELINE_KEY). A branch without a baseline (404) falls back
to main's; with none at all there is nothing to compare and the run
passes. --record then PUTs the run as the branch's baseline
(PUT URL/v1/ops/baselines/BRANCH {scenario, build, commit, summary}) when
it did not regress and its thresholds held (--force records it anyway).
A branch may hold `/`: it is sent as path segments, unescaped.

The stored summary holds error_rate, rate, routes and jobs; the load's
overall p50/p95/p99 travel as the route "ALL".

Exit status: 0 no regression, 1 a regression, 2 a usage or I/O error.
Standard library only.
"""

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

NAME_RE = re.compile(r"^[a-z0-9-]{1,32}$")
BRANCH_PART_RE = re.compile(r"^[A-Za-z0-9._-]+$")
ALL = "ALL"
ROUTE_MEMBERS = ("p50", "p95", "p99", "count", "error_rate")
QUEUE_MEMBERS = ("lag_p95_s", "failed", "processed")


class Usage(Exception):
    """A usage or I/O error: exit 2."""


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise Usage(f"cannot read {path}: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise Usage(f"{path} is not JSON: {e}") from e


def normalise(doc, where):
    """Answers {p95, error_rate, rate, routes, jobs} from a summary or a
    stored baseline record (whose overall figures are the route ALL)."""
    if not isinstance(doc, dict):
        raise Usage(f"{where}: not a JSON object")
    summary = doc["summary"] if isinstance(doc.get("summary"), dict) else doc
    routes = summary.get("routes")
    if not isinstance(routes, dict):
        raise Usage(f"{where}: no routes object: not a k6 summary or baseline")
    routes = {k: v for k, v in routes.items() if isinstance(v, dict)}
    overall = routes.pop(ALL, None) or {}
    out = {
        "p95": summary.get("p95", overall.get("p95")),
        "p50": summary.get("p50", overall.get("p50")),
        "p99": summary.get("p99", overall.get("p99")),
        "count": summary.get("requests", overall.get("count")),
        "error_rate": summary.get("error_rate"),
        "rate": summary.get("rate"),
        "routes": routes,
        "jobs": summary.get("jobs") if isinstance(summary.get("jobs"), dict) else {},
    }
    for key in ("error_rate", "rate"):
        if not isinstance(out[key], (int, float)):
            raise Usage(f"{where}: {key} is missing or not a number")
    return out


def branch_path(branch):
    parts = branch.split("/")
    if len(branch) > 200 or not all(BRANCH_PART_RE.match(p) and p not in (".", "..") for p in parts):
        raise Usage(f"not a branch name: {branch!r} (A-Z a-z 0-9 . _ - and /, no empty or dot-only part)")
    return "/".join(parts)


def call(method, url, key, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("authorization", f"Bearer {key}")
    req.add_header("accept", "application/json")
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        text = e.read().decode("utf-8", "replace")
        try:
            problem = json.loads(text)
        except json.JSONDecodeError:
            problem = {"detail": text[:300]}
        return e.code, problem
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as e:
        raise Usage(f"{method} {url}: {e}") from e


def fetch_baseline(api, key, branch, scenario, build):
    """Answers (record, branch it came from), or (None, None)."""
    query = urllib.parse.urlencode({"scenario": scenario, "build": build})
    tried = [branch] if branch == "main" else [branch, "main"]
    for b in tried:
        url = f"{api}/v1/ops/baselines/{branch_path(b)}?{query}"
        status, doc = call("GET", url, key)
        if status == 200:
            return doc, b
        if status == 404:
            print(f"no baseline for {b} ({scenario}, {build})")
            continue
        raise Usage(f"GET {url} answered {status}: {doc.get('detail', doc) if isinstance(doc, dict) else doc}")
    return None, None


def record_body(run_doc, scenario, build, commit):
    routes = {}
    for name, r in run_doc.get("routes", {}).items():
        if all(isinstance(r.get(m), (int, float)) for m in ROUTE_MEMBERS):
            routes[name] = {m: r[m] for m in ROUTE_MEMBERS}
    overall = {
        "p50": run_doc.get("p50"),
        "p95": run_doc.get("p95"),
        "p99": run_doc.get("p99"),
        "count": run_doc.get("requests"),
        "error_rate": run_doc.get("error_rate"),
    }
    if all(isinstance(v, (int, float)) for v in overall.values()):
        routes[ALL] = overall
    jobs = {}
    for queue, j in (run_doc.get("jobs") or {}).items():
        # A queue that ran nothing has no lag: nothing to keep.
        if isinstance(j, dict) and all(isinstance(j.get(m), (int, float)) for m in QUEUE_MEMBERS):
            jobs[queue] = {m: j[m] for m in QUEUE_MEMBERS}
    body = {
        "scenario": scenario,
        "build": build,
        "summary": {"error_rate": run_doc["error_rate"], "rate": run_doc["rate"], "routes": routes, "jobs": jobs},
    }
    if commit:
        body["commit"] = commit
    return body


def fmt_ms(x):
    return "-" if x is None else f"{x:.1f}"


def fmt_pct(x):
    return "-" if x is None else f"{x * 100:.2f}%"


def judge(name, base, run, args, problems):
    """One row: (cells…, verdict)."""
    bp, rp = base.get("p95") if base else None, run.get("p95") if run else None
    be, re_ = base.get("error_rate") if base else None, run.get("error_rate") if run else None
    if base is None:
        return [name, "-", fmt_ms(rp), "", "-", fmt_pct(re_), "new"]
    if run is None:
        return [name, fmt_ms(bp), "-", "", fmt_pct(be), "-", "not run"]
    delta = "" if not bp or rp is None else f"{(rp - bp) / bp * 100:+.1f}%"
    counts = [c for c in (base.get("count"), run.get("count")) if isinstance(c, (int, float))]
    if counts and min(counts) < args.min_count:
        return [name, fmt_ms(bp), fmt_ms(rp), delta, fmt_pct(be), fmt_pct(re_), f"few requests ({int(min(counts))})"]
    verdicts = []
    if bp is not None and rp is not None:
        grew = rp - bp
        if rp > bp * (1 + args.tolerance / 100) and grew > args.min_ms:
            verdicts.append("SLOWER")
            problems.append(f"{name}: p95 {bp:.1f} -> {rp:.1f} ms ({delta}, +{grew:.1f} ms)")
        elif bp > rp * (1 + args.tolerance / 100) and -grew > args.min_ms:
            verdicts.append("faster")
    if be is not None and re_ is not None and (re_ - be) * 100 > args.error_pp:
        verdicts.append("MORE ERRORS")
        problems.append(f"{name}: errors {be * 100:.2f} % -> {re_ * 100:.2f} % (+{(re_ - be) * 100:.2f} pp)")
    return [name, fmt_ms(bp), fmt_ms(rp), delta, fmt_pct(be), fmt_pct(re_), ", ".join(verdicts) or "ok"]


def table(rows):
    head = ["route", "base p95", "run p95", "delta", "base err", "run err", "verdict"]
    width = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    out = []
    for r in [head, *rows]:
        cells = [str(r[0]).ljust(width[0])] + [str(c).rjust(width[i]) for i, c in enumerate(r[1:6], 1)] + [str(r[6])]
        out.append("  ".join(cells))
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="the run's summary JSON (SUMMARY_DIR/<scenario>.json)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--baseline", metavar="FILE", help="a summary JSON or a stored baseline record")
    src.add_argument("--api", metavar="URL", help="the API that keeps baselines, e.g. https://tepi.example.com")
    p.add_argument("--key", help="a baselines:write API key (default: $BASELINE_KEY)")
    p.add_argument("--branch", help="the branch whose baseline to use (with --api); falls back to main")
    p.add_argument("--scenario", help="default: the run's")
    p.add_argument("--build", help="default: the run's")
    p.add_argument("--tolerance", type=float, default=20.0, help="p95 growth allowed, percent (default 20)")
    p.add_argument("--min-ms", type=float, default=5.0, help="p95 growth always allowed, ms (default 5)")
    p.add_argument("--error-pp", type=float, default=0.5, help="error-rate growth allowed, percentage points (default 0.5)")
    p.add_argument("--min-count", type=int, default=1, help="judge only routes with at least this many requests in both runs (default 1)")
    p.add_argument("--record", action="store_true", help="with --api: record the run as the branch's baseline when it passes")
    p.add_argument("--force", action="store_true", help="with --record: record even a run that regressed")
    p.add_argument("--commit", help="the commit recorded with the baseline (4-64 hex digits)")
    try:
        args = p.parse_args()
    except SystemExit as e:
        return 2 if e.code else 0

    try:
        run_doc = load_json(args.run)
        run = normalise(run_doc, args.run)
        scenario = args.scenario or run_doc.get("scenario")
        build = args.build or run_doc.get("build")
        for label, value in (("scenario", scenario), ("build", build)):
            if not isinstance(value, str) or not NAME_RE.match(value):
                raise Usage(f"{label} must be 1-32 of a-z, 0-9 and - (got {value!r}); set --{label}")
        if args.tolerance < 0 or args.min_ms < 0 or args.error_pp < 0:
            raise Usage("tolerances cannot be negative")
        if args.record and not args.api:
            raise Usage("--record needs --api")
        if args.commit and not re.match(r"^[0-9a-fA-F]{4,64}$", args.commit):
            raise Usage("--commit must be 4-64 hexadecimal digits")

        key = None
        if args.api:
            api = args.api.rstrip("/")
            if not re.match(r"^https?://[^/?#]+$", api):
                raise Usage(f"--api must be an http(s) origin, got {args.api}")
            key = args.key or os.environ.get("BASELINE_KEY")
            if not key:
                raise Usage("--api needs --key or BASELINE_KEY (a baselines:write key)")
            if not args.branch:
                raise Usage("--api needs --branch")
            branch_path(args.branch)
            record, source = fetch_baseline(api, key, args.branch, scenario, build)
            base = normalise(record, f"the baseline of {source}") if record else None
            origin = (
                f"baseline of branch {source} (recorded {record.get('recorded_at')}, commit {record.get('commit') or '-'})"
                if record
                else None
            )
        else:
            base = normalise(load_json(args.baseline), args.baseline)
            origin = f"baseline {args.baseline}"
    except Usage as e:
        print(f"k6-compare: {e}", file=sys.stderr)
        return 2

    problems = []
    print(f"k6 compare: {scenario} on {build}: {args.run}")
    if base is None:
        print("nothing to compare: no baseline for this branch or main")
    else:
        print(f"against the {origin}")
        names = list(base["routes"]) + [r for r in run["routes"] if r not in base["routes"]]
        rows = [judge(n, base["routes"].get(n), run["routes"].get(n), args, problems) for n in names]
        overall = lambda s: {"p95": s["p95"], "error_rate": s["error_rate"], "count": s["count"]}  # noqa: E731
        rows.append(judge("all requests", overall(base), overall(run), args, problems))
        print(table(rows))
        print(f"achieved rate: {base['rate']:.2f} req/s in the baseline, {run['rate']:.2f} req/s now")
        queues = sorted(set(base["jobs"]) | set(run["jobs"]))
        if queues:
            lag = lambda s, q: (s["jobs"].get(q) or {}).get("lag_p95_s")  # noqa: E731
            shown = ", ".join(
                f"{q} {'-' if lag(base, q) is None else f'{lag(base, q):.2f}'} -> {'-' if lag(run, q) is None else f'{lag(run, q):.2f}'}"
                for q in queues
            )
            print(f"job lag p95 s (shown, not judged): {shown}")
        print(
            f"tolerances: p95 +{args.tolerance:g} % and +{args.min_ms:g} ms (a regression needs both), "
            f"errors +{args.error_pp:g} percentage points"
        )
    if problems:
        print(f"result: {len(problems)} regression(s)")
        for line in problems:
            print(f"  {line}")
    else:
        print("result: no regression")

    if args.record:
        if (problems or run_doc.get("thresholds_ok") is False) and not args.force:
            print("not recorded as the baseline: the run regressed or crossed a threshold (--force records it anyway)")
        else:
            url = f"{api}/v1/ops/baselines/{branch_path(args.branch)}"
            try:
                status, doc = call("PUT", url, key, record_body(run_doc, scenario, build, args.commit))
            except Usage as e:
                print(f"k6-compare: {e}", file=sys.stderr)
                return 2
            if status != 200:
                detail = doc.get("errors") or doc.get("detail") if isinstance(doc, dict) else doc
                print(f"k6-compare: PUT {url} answered {status}: {detail}", file=sys.stderr)
                return 2
            print(f"recorded as the baseline of {doc.get('branch')} ({doc.get('scenario')}, {doc.get('build')}) at {doc.get('recorded_at')}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
