#!/usr/bin/env python3
"""Writes the Tepi Grafana dashboard, ops/grafana/dashboards/tepi.json.

    ops/grafana/generate.py           rewrite the JSON from this file
    ops/grafana/generate.py --check   fail when the JSON differs from it

The JSON is checked in so that Grafana can provision or import it as is;
this file is its source (ADR 0012). Edit the panels here, run it, commit
both. `scripts/ops-queries.py` runs `--check` and proves that every query
parses and reads only metrics the service exports.

Panel ids and grid positions are computed: panels are laid out left to
right in the order written, wrapping at Grafana's 24 columns. Queries use
raw metrics only, so the dashboard works without the recording rules.
Standard library only.
"""

import json
import os
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboards", "tepi.json")

DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
Q = 'queue_name=~"$queue_name"'


def target(expr, legend, ref, instant=False):
    t = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "refId": ref,
    }
    if instant:
        t.update({"instant": True, "range": False})
    else:
        t.update({"instant": False, "range": True})
    return t


def targets(queries, instant=False):
    return [target(e, l, chr(ord("A") + i), instant) for i, (e, l) in enumerate(queries)]


def steps(*pairs):
    """Threshold steps: green below the first bound, then each colour."""
    out = [{"color": "green", "value": None}]
    out += [{"color": c, "value": v} for v, c in pairs]
    return {"mode": "absolute", "steps": out}


def timeseries(title, description, unit, queries, w=12, h=8, minimum=0, maximum=None,
               thresholds=None, stack=False):
    custom = {
        "drawStyle": "line",
        "fillOpacity": 10,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
        "thresholdsStyle": {"mode": "line" if thresholds else "off"},
    }
    defaults = {
        "color": {"mode": "palette-classic"},
        "custom": custom,
        "thresholds": thresholds or steps(),
        "unit": unit,
    }
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets(queries),
        "_size": (w, h),
    }


def stat(title, description, unit, queries, w=6, h=5, thresholds=None, decimals=None):
    defaults = {
        "color": {"mode": "thresholds"},
        "thresholds": thresholds or steps(),
        "unit": unit,
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        },
        "targets": targets(queries, instant=True),
        "_size": (w, h),
    }


def row(title, panels, repeat=None, collapsed=False):
    r = {"type": "row", "title": title, "collapsed": collapsed, "panels": panels}
    if repeat:
        r["repeat"] = repeat
    return r


def rate(selector):
    return f"rate({selector}[{RATE}])"


def quantile(q, bucket):
    return f"histogram_quantile({q}, sum by (le) ({rate(bucket)}))"


def ratio(part, whole):
    """sum(rate(part)) / sum(rate(whole)); the part falls back to 0 when no
    series matches, so a quiet service shows 0, not "No data"."""
    return f"(sum({rate(part)}) or vector(0)) / sum({rate(whole)})"


# --- the panels -----------------------------------------------------------

API = [
    timeseries(
        "Request rate by route",
        "Requests per second served, by route pattern (http_requests_total summed over every "
        "instance; the aggregate on /metrics already sums isolates). Includes Prometheus' own "
        "scrapes of /metrics.",
        "reqps",
        [(f"sum by (route) ({rate('http_requests_total')})", "{{route}}")],
    ),
    timeseries(
        "Error ratio (4xx, 5xx)",
        "Share of responses with a 4xx or 5xx status, together and apart. 4xx includes 401s of "
        "missing credentials and the 429s of the rate limiter; 5xx is the one to page on. The "
        "numerators fall back to 0 when no such status was served, so a quiet service shows 0 %, "
        "not \"No data\".",
        "percentunit",
        [
            (ratio('http_requests_total{status=~"[45].."}', "http_requests_total"), "errors (4xx + 5xx)"),
            (ratio('http_requests_total{status=~"4.."}', "http_requests_total"), "4xx"),
            (ratio('http_requests_total{status=~"5.."}', "http_requests_total"), "5xx"),
        ],
    ),
    timeseries(
        "Latency p50 / p95 / p99",
        "Request duration quantiles over every route, from the http_request_duration_ms "
        "histogram (buckets 5 ms … 10 s; 300 ms is a bucket bound, the login SLO's). A quantile "
        "is interpolated inside its bucket, so read it to the bucket's precision.",
        "ms",
        [
            (quantile(0.5, "http_request_duration_ms_bucket"), "p50"),
            (quantile(0.95, "http_request_duration_ms_bucket"), "p95"),
            (quantile(0.99, "http_request_duration_ms_bucket"), "p99"),
        ],
    ),
    timeseries(
        "Rate-limited (429) per second",
        "Requests the rate limiter refused, by route class (http_rate_limited_total), and every "
        "429 response by status (http_requests_total{status=\"429\"}; push quota refusals are "
        "429s too).",
        "reqps",
        [
            (f"sum by (route_class) ({rate('http_rate_limited_total')})", "limiter: {{route_class}}"),
            ("sum(" + rate('http_requests_total{status="429"}') + ") or vector(0)", "all 429 responses"),
        ],
    ),
    timeseries(
        "Cache hit ratio",
        "Shared-cache hits over hits plus misses (http_cache_requests_total). 304 revalidations "
        "are counted apart and left out of the ratio.",
        "percentunit",
        [("sum(" + rate('http_cache_requests_total{result="hit"}') + ") / sum("
          + rate('http_cache_requests_total{result=~"hit|miss"}') + ")", "hit ratio")],
        w=8, maximum=1,
    ),
    timeseries(
        "Wasm memory by isolate (of 128 MiB)",
        "tepi_wasm_memory_limit_ratio: each instance's Wasm linear memory over the 128 MiB "
        "isolate limit. A high-water mark (it never shrinks). One series per Workers isolate "
        "(instance=\"isolate_<hex>\", kept with honor_labels); one series on Spin. The line at "
        "75 % is the TepiWasmMemoryHigh alert's threshold (docs/ops.md, Memory gauges).",
        "percentunit",
        [("max by (instance) (tepi_wasm_memory_limit_ratio)", "{{instance}}")],
        w=8, maximum=1, thresholds=steps((0.75, "red")),
    ),
    timeseries(
        "Metrics series budget",
        "Series held by the metrics aggregate over METRICS_MAX_SERIES (tepi_metrics_series / "
        "tepi_metrics_series_limit). Pushes that would go beyond it are refused; the line is at "
        "80 %.",
        "percentunit",
        [("max(tepi_metrics_series) / max(tepi_metrics_series_limit)", "used")],
        w=8, maximum=1, thresholds=steps((0.8, "red")),
    ),
]

WORKERS = [
    timeseries(
        "Queue depth",
        "tepi_worker_queue_depth: an estimate of the jobs waiting or in flight (enqueued minus "
        "acknowledged and dead-lettered). Cloudflare's queue analytics have the exact backlog on "
        "Workers (docs/api.md, Worker metrics).",
        "short",
        [(f"sum(tepi_worker_queue_depth{{{Q}}})", "depth")],
        w=8,
    ),
    timeseries(
        "Failure ratio by class",
        "Failed attempts by class (4xx permanent; 5xx and timeout transient) over every attempt "
        "(tepi_worker_job_errors_by_class_total / tepi_worker_jobs_processed_total).",
        "percentunit",
        [(f"sum by (class) ({rate(f'tepi_worker_job_errors_by_class_total{{{Q}}}')}) / ignoring(class) "
          f"group_left sum({rate(f'tepi_worker_jobs_processed_total{{{Q}}}')})", "{{class}}")],
        w=8,
    ),
    timeseries(
        "Processing duration p50 / p95",
        "Processing time of each job attempt (tepi_worker_job_duration_seconds; buckets 5 ms … "
        "30 s).",
        "s",
        [
            (quantile(0.5, f"tepi_worker_job_duration_seconds_bucket{{{Q}}}"), "p50"),
            (quantile(0.95, f"tepi_worker_job_duration_seconds_bucket{{{Q}}}"), "p95"),
        ],
        w=8,
    ),
    timeseries(
        "Lag p95",
        "Seconds from a job's enqueue to the start of each attempt, 95th percentile "
        "(tepi_worker_job_lag_seconds). A retry's lag includes its backoff.",
        "s",
        [(quantile(0.95, f"tepi_worker_job_lag_seconds_bucket{{{Q}}}"), "p95")],
        w=8,
    ),
    timeseries(
        "Active jobs",
        "tepi_worker_jobs_active: jobs being processed now. A consumer that dies mid-batch "
        "leaves it too high.",
        "short",
        [(f"sum(tepi_worker_jobs_active{{{Q}}})", "active")],
        w=8,
    ),
    stat(
        "Dead letters in range",
        "Jobs dead-lettered over the dashboard's time range: increase of "
        "tepi_worker_jobs_processed_total{outcome=\"dead_letter\"}, which includes messages "
        "the platform moved. Anything above 0 needs a look at the dead letters.",
        "short",
        [(f'sum(increase(tepi_worker_jobs_processed_total{{{Q},outcome="dead_letter"}}[$__range]))',
          "dead letters")],
        w=8, h=8, thresholds=steps((1, "red")), decimals=0,
    ),
]

# web.dev thresholds: good up to the first bound, poor above the second.
VITALS = [
    ("LCP", "tepi_web_vitals_lcp_seconds", "s", (2.5, 4)),
    ("INP", "tepi_web_vitals_inp_seconds", "s", (0.2, 0.5)),
    ("TTFB", "tepi_web_vitals_ttfb_seconds", "s", (0.8, 1.8)),
    ("CLS", "tepi_web_vitals_cls", "short", (0.1, 0.25)),
]

WEB = [
    stat(
        f"{name} p75",
        f"75th percentile of {name} over the dashboard's time range ({metric}; web.dev judges a "
        f"site by p75). Green up to {good}, orange up to {poor}, red above (web.dev thresholds"
        f"{', seconds' if unit == 's' else ''}).",
        unit,
        [(f"histogram_quantile(0.75, sum by (le) (rate({metric}_bucket[$__range])))", "p75")],
        thresholds=steps((good, "orange"), (poor, "red")),
        decimals=None if unit == "s" else 3,
    )
    for name, metric, unit, (good, poor) in VITALS
] + [
    timeseries(
        "LCP / INP / TTFB p75 over time",
        "75th percentiles of the timing vitals over time. Beacons are sparse; a long time range "
        "(or a larger min interval on the panel) smooths gaps.",
        "s",
        [(quantile(0.75, f"{metric}_bucket"), name) for name, metric, unit, _ in VITALS if unit == "s"],
    ),
    timeseries(
        "Good ratings by metric",
        "Share of beacons rated \"good\" by web.dev's thresholds, per metric "
        "(tepi_web_vitals_reports_total).",
        "percentunit",
        [("sum by (metric) (" + rate('tepi_web_vitals_reports_total{rating="good"}') + ") / "
          "sum by (metric) (" + rate("tepi_web_vitals_reports_total") + ")", "{{metric}}")],
        maximum=1,
    ),
]

ROWS = [
    row("API", API),
    row("Workers: $queue_name", WORKERS, repeat="queue_name"),
    # Collapsed: beacons come from browsers and are sparse; its queries run
    # only when the row is opened.
    row("Web Vitals", WEB, collapsed=True),
]

TEMPLATING = [
    {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
    },
    {
        "name": "queue_name",
        "label": "Queue",
        "type": "query",
        "datasource": DS,
        "definition": "label_values(tepi_worker_queue_depth, queue_name)",
        "query": {
            "qryType": 1,
            "query": "label_values(tepi_worker_queue_depth, queue_name)",
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0,
        "includeAll": True,
        "multi": True,
        "options": [],
        "refresh": 2,
        "regex": "",
        "sort": 1,
    },
]


def layout(rows):
    """Ids, gridPos; a collapsed row keeps its panels inside it, an open one
    is followed by them (Grafana's own layout for both)."""
    out, next_id, y = [], 1, 0
    for r in rows:
        children = r.pop("panels")
        r["id"], next_id = next_id, next_id + 1
        r["gridPos"] = {"h": 1, "w": 24, "x": 0, "y": y}
        y += 1
        placed, x, line_h = [], 0, 0
        for p in children:
            w, h = p.pop("_size")
            if x + w > 24:
                x, y, line_h = 0, y + line_h, 0
            p_out = {"id": next_id, "gridPos": {"h": h, "w": w, "x": x, "y": y}}
            p_out.update(p)
            placed.append(p_out)
            next_id += 1
            x += w
            line_h = max(line_h, h)
        y += line_h
        r["panels"] = placed if r["collapsed"] else []
        out.append(r)
        if not r["collapsed"]:
            out.extend(placed)
    return out


def dashboard():
    return {
        "__inputs": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": "Tepi: the edge API (requests, errors, latency, rate limits, cache, Wasm "
        "memory), its background jobs per queue, and browsers' Web Vitals. Generated by "
        "ops/grafana/generate.py; see docs/ops.md, Grafana dashboard.",
        "editable": True,
        "graphTooltip": 1,
        "links": [],
        "panels": layout(ROWS),
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["tepi"],
        "templating": {"list": TEMPLATING},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": "Tepi",
        "uid": "tepi",
        "version": 1,
    }


def render():
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv):
    text = render()
    if argv[1:] == ["--check"]:
        try:
            with open(OUT, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != text:
            print(f"{os.path.relpath(OUT)} differs from ops/grafana/generate.py's output: "
                  "run ops/grafana/generate.py and commit both", file=sys.stderr)
            return 1
        print(f"{os.path.relpath(OUT)} equals ops/grafana/generate.py's output")
        return 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(OUT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
