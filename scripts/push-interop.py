#!/usr/bin/env python3
"""Pushes with the real Prometheus Python client (prometheus_client) to a
running build's Pushgateway-compatible API and checks what GET /metrics
serves afterwards.

    push-interop.py BASE_URL TARGET

Credentials: TEPI_PUSH_KEY (a metrics:push API key) pushes,
TEPI_READ_TOKEN (an operator admin's access token) scrapes.

Two pushers of one job (grouping label `instance`) push a counter, a
gauge and a histogram with push_to_gateway (PUT) and pushadd_to_gateway
(POST); the scrape must show the counters and histograms summed, the gauge
of the last push, and no `instance` label. delete_from_gateway (DELETE)
takes one pusher's share away. A gzip body and a refused body (a timestamp)
are checked too.

Then the bounds (defaults of PUSH_MAX_* and METRICS_MAX_SERIES): NaN and
+Inf values are stored; a sample's own `instance` label is dropped; one
series too many (413), one grouping label too many (422) and a group
grown past its budget (429) are refused with problems naming the limit,
and change nothing; a family may not take another's sample names (409);
the scrape reports the aggregate's size as tepi_metrics_series.
"""

import gzip
import os
import sys
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import (
    default_handler,
    delete_from_gateway,
    generate_latest,
    push_to_gateway,
    pushadd_to_gateway,
)
from prometheus_client.parser import text_string_to_metric_families

BASE, TARGET = sys.argv[1], sys.argv[2]
PUSH_KEY = os.environ["TEPI_PUSH_KEY"]
READ_TOKEN = os.environ["TEPI_READ_TOKEN"]
JOB = f"interop-{TARGET}"


def bearer(url, method, timeout, headers, data):
    return default_handler(url, method, timeout, headers + [("Authorization", f"Bearer {PUSH_KEY}")], data)


def registry(jobs, last, durations):
    r = CollectorRegistry()
    c = Counter("interop_jobs", "Jobs a pusher finished.", ["kind"], registry=r)
    c.labels("import").inc(jobs)
    g = Gauge("interop_last_batch_size", "Size of the last batch.", registry=r)
    g.set(last)
    h = Histogram("interop_duration_seconds", "Job duration.", buckets=[0.1, 0.5, 1.0], registry=r)
    for d in durations:
        h.observe(d)
    return r


def scrape():
    request = urllib.request.Request(f"{BASE}/metrics", headers={"Authorization": f"Bearer {READ_TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("job") == JOB:
                key = (s.name, tuple(sorted((k, v) for k, v in s.labels.items())))
                samples[key] = s.value
    return samples


def value(samples, name, **labels):
    labels["job"] = JOB
    return samples.get((name, tuple(sorted(labels.items()))))


failures = []


def check(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


# Pusher a: PUT (push_to_gateway), pusher b: POST (pushadd_to_gateway).
push_to_gateway(BASE, job=JOB, grouping_key={"instance": "a"}, registry=registry(3, 10, [0.05, 0.3]), handler=bearer)
pushadd_to_gateway(BASE, job=JOB, grouping_key={"instance": "b"}, registry=registry(4, 20, [0.7]), handler=bearer)
s = scrape()
check(value(s, "interop_jobs_total", kind="import") == 7, "counters of two pushers are summed (3 + 4)")
check(value(s, "interop_duration_seconds_count") == 3, "histogram counts are summed (2 + 1)")
check(value(s, "interop_duration_seconds_bucket", le="0.1") == 1, "bucket le=0.1 holds a's 0.05")
check(value(s, "interop_duration_seconds_bucket", le="0.5") == 2, "bucket le=0.5 is cumulative")
check(value(s, "interop_duration_seconds_bucket", le="+Inf") == 3, "bucket +Inf counts all")
check(abs(value(s, "interop_duration_seconds_sum") - 1.05) < 1e-9, "histogram sums are summed")
check(value(s, "interop_last_batch_size") == 20, "a gauge keeps the last value pushed")
check(not any("instance" in dict(k[1]) for k in s), "the pusher label is not exposed")

# b pushes again: POST replaces b's families (not added to them).
pushadd_to_gateway(BASE, job=JOB, grouping_key={"instance": "b"}, registry=registry(5, 30, [0.7, 0.8]), handler=bearer)
s = scrape()
check(value(s, "interop_jobs_total", kind="import") == 8, "b's second push replaced its first (3 + 5)")
check(value(s, "interop_duration_seconds_count") == 4, "and its histogram (2 + 2)")

# a leaves: DELETE removes its group only.
delete_from_gateway(BASE, job=JOB, grouping_key={"instance": "a"}, handler=bearer)
s = scrape()
check(value(s, "interop_jobs_total", kind="import") == 5, "after a's DELETE only b's 5 remain")
check(value(s, "interop_duration_seconds_count") == 2, "and only b's observations")

# A gzip body (Content-Encoding: gzip) from a third pusher.
body = gzip.compress(generate_latest(registry(2, 1, [])))
request = urllib.request.Request(
    f"{BASE}/metrics/job/{JOB}/instance/c",
    data=body,
    method="PUT",
    headers={
        "Authorization": f"Bearer {PUSH_KEY}",
        "Content-Type": "text/plain; version=0.0.4",
        "Content-Encoding": "gzip",
    },
)
with urllib.request.urlopen(request, timeout=30) as response:
    check(response.status == 200, "a gzip push is accepted")
s = scrape()
check(value(s, "interop_jobs_total", kind="import") == 7, "and counted (5 + 2)")

# A timestamped sample is refused with its line; nothing changes.
bad = b"# TYPE interop_jobs_total counter\ninterop_jobs_total{kind=\"import\"} 100 1700000000000\n"
request = urllib.request.Request(
    f"{BASE}/metrics/job/{JOB}/instance/d",
    data=bad,
    method="PUT",
    headers={"Authorization": f"Bearer {PUSH_KEY}", "Content-Type": "text/plain"},
)
try:
    urllib.request.urlopen(request, timeout=30)
    check(False, "a timestamped push is refused")
except urllib.error.HTTPError as e:
    problem = e.read().decode()
    check(e.code == 400 and '"line":2' in problem and "invalid_exposition" in problem,
          f"a timestamped push is refused with 400 and its line: {problem[:160]}")
check(value(scrape(), "interop_jobs_total", kind="import") == 7, "the refused push changed nothing")



def send(path, body, method="PUT"):
    """(status, body) of a raw push."""
    request = urllib.request.Request(
        f"{BASE}/metrics/job/{JOB}{path}",
        data=body.encode() if isinstance(body, str) else body,
        method=method,
        headers={"Authorization": f"Bearer {PUSH_KEY}", "Content-Type": "text/plain; version=0.0.4"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def refused(reply, status, code, limit):
    import json

    got, body = reply
    try:
        problem = json.loads(body)
    except ValueError:
        problem = {}
    check(got == status and problem.get("code") == code and problem.get("limit") == limit
          and isinstance(problem.get("max"), int),
          f"{status} {code} naming {limit}: got {got} {body[:200]}")


def raw_scrape():
    request = urllib.request.Request(f"{BASE}/metrics", headers={"Authorization": f"Bearer {READ_TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


# NaN and infinities, where the text format allows them (gauges, untyped,
# a summary's sum), and a sample that carries its own `instance` label.
status, body = send(
    "/instance/e",
    "# TYPE interop_temperature gauge\ninterop_temperature NaN\n"
    "interop_ratio{instance=\"10.0.0.7:9100\"} +Inf\n"
    "# TYPE interop_wait summary\ninterop_wait_sum NaN\ninterop_wait_count 0\n",
)
check(status == 200, f"a push with NaN and +Inf is accepted: {status} {body[:160]}")
s = scrape()
check(str(value(s, "interop_temperature")) == "nan", "NaN is exposed as NaN")
check(value(s, "interop_ratio") == float("inf"), "+Inf is exposed, without the sample's instance label")
check(str(value(s, "interop_wait_sum")) == "nan", "a summary's NaN sum is kept")

# One series over PUSH_MAX_SERIES (default 2000).
many = "".join(f"interop_many{{i=\"{i}\"}} {i}\n" for i in range(2001))
refused(send("/instance/f", many), 413, "push_too_large", "PUSH_MAX_SERIES")
# One grouping label over PUSH_MAX_GROUPING_LABELS (default 8).
path = "".join(f"/l{i}/v" for i in range(9))
refused(send(path, "interop_wide 1\n"), 422, "push_limit_exceeded", "PUSH_MAX_GROUPING_LABELS")
# A group grown by POST past PUSH_MAX_GROUP_SERIES (default 2000).
full = "".join(f"interop_full{{i=\"{i}\"}} {i}\n" for i in range(2000))
status, body = send("/instance/g", full)
check(status == 200, f"a push at PUSH_MAX_SERIES is accepted: {status} {body[:160]}")
refused(send("/instance/g", "interop_more 1\n", method="POST"), 429, "push_quota_exceeded", "PUSH_MAX_GROUP_SERIES")
s = scrape()
check(value(s, "interop_more") is None and value(s, "interop_full", i="1999") == 1999,
      "the refused POST changed nothing")
# A counter that would be a stored histogram's _count.
status, body = send("/instance/h", "# TYPE interop_duration_seconds_count counter\ninterop_duration_seconds_count 1\n")
check(status == 409 and "metric_name_conflict" in body, f"a family taking another's sample names gets 409: {status} {body[:160]}")
text = raw_scrape()
check(text.count("# TYPE interop_duration_seconds_count") == 0, "and the scrape never shows it")
series = [line for line in text.splitlines() if line.startswith("tepi_metrics_series ")]
check(len(series) == 1 and float(series[0].split()[1]) >= 2000, f"tepi_metrics_series reports the aggregate's size: {series}")
check("tepi_metrics_series_limit 10000" in text, "and its limit, METRICS_MAX_SERIES")
send("/instance/g", "", method="DELETE")

if failures:
    sys.exit(f"push interop failed on {TARGET}: {len(failures)} problems")
print(f"ok: prometheus_client {TARGET}: push_to_gateway, pushadd_to_gateway, delete_from_gateway and gzip interoperate")
