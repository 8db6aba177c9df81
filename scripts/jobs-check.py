#!/usr/bin/env python3
"""Drives background jobs through a running build and checks the books.

    jobs-check.py no-loss BASE_URL RECEIVER_URL TARGET
    jobs-check.py bench   BASE_URL RECEIVER_URL TARGET JOBS LABEL
    jobs-check.py backlog BASE_URL RECEIVER_URL JOBS LABEL

Both log in as the operator admin the run bootstrapped (TEPI_ADMIN_EMAIL,
TEPI_ADMIN_PASSWORD, tenant TEPI_TENANT) and enqueue notification webhook
jobs (POST /v1/notifications with a webhook_url) aimed at
scripts/webhook-receiver.py. On Spin (TARGET=spin) the outbox is drained
by calling POST /v1/jobs/drain, as a scheduler would.

no-loss: 1,000 jobs, of which some fail transiently (503/429 for their
first deliveries, or a first delivery slower than the time budget), some
exhaust their attempts and some fail permanently (400). Afterwards every job
must have been delivered exactly once or be parked in the dead letters, and
GET /metrics/workers must reconcile exactly with what the receiver saw.

bench: JOBS clean jobs, enqueued while the consumer runs; prints the
enqueue rate, the consumer's throughput (first to last delivery), the lag
from enqueue to delivery (p50/p95), how busy the machine's cores were and,
with TEPI_JOBS_WRANGLER_LOG, how local Queues ran the batches (from
wrangler's `QUEUE <name> n/n (ms)` lines).

backlog: JOBS clean jobs enqueued first (the build runs with
JOB_DRAIN_AFTER_RESPONSE=0), then drained by DRAIN_CALLERS concurrent
`POST /v1/jobs/drain?limit=DRAIN_LIMIT` calls (Spin): the consumer's own
throughput, without the producers' requests competing for the cores.
"""

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

MAX_ATTEMPTS = int(os.environ.get("JOB_MAX_ATTEMPTS", "4"))
# The time budget of one attempt (JOB_TIMEOUT_MS); slow jobs answer 10 s
# after it, so their first attempt times out however busy the machine is.
BUDGET_MS = int(os.environ.get("JOB_TIMEOUT_MS", "8000"))
# Settling may take long on a busy machine, but not stall: the check fails
# after this long without a job settling, or after the overall cap.
STALL_S = 180
CAP_S = 1800


def call(method, url, token=None, body=None, expect=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    for attempt in range(5):
        try:
            # A drain delivers up to 100 jobs, some held to the budget.
            with urllib.request.urlopen(request, timeout=300) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        except TimeoutError:
            # The request may have been applied: sending it again could
            # enqueue a job twice (or lease a drain's jobs again).
            raise
        except (urllib.error.URLError, ConnectionError) as e:
            if attempt == 4 or isinstance(getattr(e, "reason", None), TimeoutError):
                raise
            time.sleep(0.5)
            continue
        if status == 429 and attempt < 4:
            time.sleep(1)
            continue
        if expect is not None and status != expect:
            sys.exit(f"{method} {url}: expected {expect}, got {status}: {text[:300]}")
        return status, text
    sys.exit(f"{method} {url}: no answer")


def login(base):
    _, text = call(
        "POST",
        f"{base}/v1/auth/login",
        body={
            "tenant": os.environ["TEPI_TENANT"],
            "email": os.environ["TEPI_ADMIN_EMAIL"],
            "password": os.environ["TEPI_ADMIN_PASSWORD"],
        },
        expect=200,
    )
    return json.loads(text)["access_token"]


SAMPLE = re.compile(r'^(\w+)(?:\{([^}]*)\})? (\S+)$')


def worker_metrics(base, token, queue="notifications"):
    """Every sample of GET /metrics/workers for `queue`, by name and labels."""
    _, text = call("GET", f"{base}/metrics/workers", token=token, expect=200)
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if labels.pop("queue_name", None) != queue:
            continue
        key = m.group(1) + "".join(f",{k}={v}" for k, v in sorted(labels.items()))
        out[key] = float(m.group(3))
    return out


def dead_letters(base, token):
    items, cursor = [], ""
    while True:
        _, text = call("GET", f"{base}/v1/jobs/dead-letters?limit=100&cursor={cursor}", token=token, expect=200)
        page = json.loads(text)
        items += page["items"]
        cursor = page.get("next_cursor") or ""
        if not cursor:
            return items


def enqueue(base, token, receiver, jobs):
    """POSTs every (key, query) as a webhook notification; returns ids by key."""

    def one(job):
        key, query = job
        url = f"{receiver}/hook/{key}" + (f"?{query}" if query else "")
        _, text = call(
            "POST",
            f"{base}/v1/notifications",
            token=token,
            body={"to": {"webhook_url": url}, "subject": key, "body": "job"},
            expect=202,
        )
        return key, json.loads(text)["id"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(pool.map(one, jobs))


def settle(base, token, target, total):
    """Waits until every job is acknowledged or parked; drains on Spin.

    Fails when no job settled for STALL_S seconds, or after CAP_S in all;
    prints how long settling took either way."""
    started = last_progress = time.time()
    settled_before = -1
    while True:
        now = time.time()
        if now - last_progress > STALL_S or now - started > CAP_S:
            sys.exit(f"jobs did not settle: {settled_before:.0f}/{total} after {now - started:.0f} s, "
                     f"none for {now - last_progress:.0f} s (limits: {STALL_S} s without progress, "
                     f"{CAP_S} s in all): {worker_metrics(base, token)}")
        leased = None
        if target == "spin":
            _, text = call("POST", f"{base}/v1/jobs/drain?limit=100", token=token, expect=200)
            leased = json.loads(text).get("leased")
        m = worker_metrics(base, token)
        settled = m.get("tepi_worker_jobs_processed_total,outcome=ack", 0) + m.get(
            "tepi_worker_jobs_processed_total,outcome=dead_letter", 0
        )
        if settled > settled_before:
            settled_before, last_progress = settled, time.time()
        if settled >= total and m.get("tepi_worker_jobs_active", 0) == 0:
            dead = m.get("tepi_worker_jobs_processed_total,outcome=dead_letter", 0)
            if len(dead_letters(base, token)) >= dead:
                took = f"{target}: {total} settled in {time.time() - started:.0f} s"
                print(f"  {took} after the last enqueue (limits: {STALL_S} s without progress, {CAP_S} s in all)")
                if os.environ.get("TEPI_GATE_NOTES"):
                    with open(os.environ["TEPI_GATE_NOTES"], "a") as notes:
                        print(took, file=notes)
                return m
        if target != "spin" or not leased:
            time.sleep(1 if target != "spin" else 0.2)


def receiver_stats(receiver):
    _, text = call("GET", f"{receiver}/stats", expect=200)
    return json.loads(text)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def no_loss(base, receiver, target):
    token = login(base)
    plan = []  # (key, query, kind)
    for i in range(600):
        plan.append((f"clean-{i}", "", "clean"))
    for i in range(150):
        plan.append((f"once-{i}", "fail=1", "transient"))
    for i in range(60):
        plan.append((f"twice-{i}", "fail=2&status=429", "transient"))
    for i in range(40):
        # Slower than the time budget (JOB_TIMEOUT_MS): a timeout.
        plan.append((f"slow-{i}", f"slow_ms={BUDGET_MS + 10_000}", "slow"))
    for i in range(75):
        plan.append((f"exhaust-{i}", "fail=1000", "exhausted"))
    for i in range(75):
        plan.append((f"perm-{i}", "permanent=1", "permanent"))
    total = len(plan)
    assert total == 1000
    t0 = time.time()
    ids = enqueue(base, token, receiver, [(k, q) for k, q, _ in plan])
    print(f"  enqueued {total} jobs in {time.time() - t0:.1f} s")
    m = settle(base, token, target, total)
    stats = receiver_stats(receiver)
    keys = stats["keys"]
    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)

    check(not stats["problems"], f"deliveries with problems: {stats['problems'][:5]}")
    expect_dead = {ids[k] for k, _, kind in plan if kind in ("exhausted", "permanent")}
    for key, _, kind in plan:
        got = keys.get(key, {"attempts": 0, "successes": 0})
        want_successes = 0 if kind in ("exhausted", "permanent") else 1
        check(got["successes"] == want_successes, f"{key}: delivered {got['successes']} times, want {want_successes}")
        if kind == "permanent":
            check(got["attempts"] == 1, f"{key}: a permanent failure was retried ({got['attempts']})")
        if kind == "exhausted":
            check(got["attempts"] == MAX_ATTEMPTS, f"{key}: {got['attempts']} attempts, want {MAX_ATTEMPTS}")
    parked = dead_letters(base, token)
    parked_ids = [item["envelope"]["data"]["notification_id"] for item in parked
                  if item["queue"] == "notifications"]
    check(len(parked_ids) == len(set(parked_ids)), "a job parked twice")
    check(set(parked_ids) == expect_dead, f"dead letters differ: {len(parked_ids)} parked, {len(expect_dead)} expected")
    classes = {}
    for item in parked:
        classes[item["class"]] = classes.get(item["class"], 0) + 1

    # What the receiver saw, in the metrics' terms.
    answers = {}
    for entry in keys.values():
        for status, n in entry["answers"].items():
            answers[status] = answers.get(status, 0) + n
    delivered = sum(e["successes"] for e in keys.values())
    slow = sum(1 for _, _, kind in plan if kind == "slow")
    timeouts_seen = slow
    attempts_made = sum(e["attempts"] for e in keys.values())
    five = answers.get("503", 0) + answers.get("429", 0) - timeouts_seen
    four = answers.get("400", 0)
    expected = {
        "tepi_worker_jobs_enqueued_total": total,
        "tepi_worker_jobs_processed_total,outcome=ack": delivered,
        "tepi_worker_jobs_processed_total,outcome=dead_letter": len(expect_dead),
        "tepi_worker_jobs_processed_total,outcome=retry": attempts_made - delivered - len(expect_dead),
        "tepi_worker_job_errors_total": attempts_made - delivered,
        "tepi_worker_job_errors_by_class_total,class=5xx": five,
        "tepi_worker_job_errors_by_class_total,class=4xx": four,
        "tepi_worker_job_errors_by_class_total,class=timeout": timeouts_seen,
        "tepi_worker_jobs_active": 0,
        "tepi_worker_queue_depth": 0,
        "tepi_worker_job_lag_seconds_count": attempts_made,
        "tepi_worker_job_duration_seconds_count": attempts_made,
    }
    for name, want in expected.items():
        check(m.get(name) == want, f"{name}: metrics say {m.get(name)}, the receiver says {want}")
    check(classes.get("4xx", 0) == 75, f"dead letters by class: {classes}")
    transient = sum(1 for _, _, kind in plan if kind in ("transient", "slow"))
    print(f"  {total} jobs: {transient} ({transient / total:.0%}) failed transiently first, "
          f"{len(expect_dead)} dead-lettered ({classes}); {attempts_made} deliveries, "
          f"{delivered} applied once each")
    print("  metrics: " + ", ".join(f"{k.split('tepi_worker_')[1]}={int(m.get(k, -1))}" for k in expected))
    if failures:
        for f in failures[:30]:
            print(f"FAIL: {f}")
        sys.exit(f"no-loss check failed on {target}: {len(failures)} problems")
    print(f"ok: no job lost or applied twice on {target}; the metrics reconcile exactly")


def cpu_times():
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def busy_since(before):
    busy, total = cpu_times()
    share = (busy - before[0]) / max(1, total - before[1])
    return f"cores busy {share * 100:.0f} % of {os.cpu_count()}"


def delivered_since(receiver, before):
    stats = receiver_stats(receiver)
    done = sum(e["successes"] for e in stats["keys"].values()) - before["done"]
    return done, stats["lags_ms"][before["lags"]:], stats["success_times"][before["times"]:]


def receiver_mark(receiver):
    stats = receiver_stats(receiver)
    return {
        "done": sum(e["successes"] for e in stats["keys"].values()),
        "lags": len(stats["lags_ms"]),
        "times": len(stats["success_times"]),
    }


QUEUE_LINE = re.compile(r"QUEUE tepi-notifications (\d+)/(\d+) \((\d+)ms\)")


def local_queue_batches(path, offset, window):
    """How wrangler dev's local Queues ran the notification batches logged
    after `offset`: how many, their median duration, and how much of the
    delivery window they filled back to back."""
    with open(path, errors="replace") as log:
        log.seek(offset)
        batches = [(int(m.group(2)), int(m.group(3))) for m in QUEUE_LINE.finditer(log.read())]
    if not batches:
        return "no QUEUE lines in the wrangler log"
    took = sorted(ms for _, ms in batches)
    filled = sum(took) / 1000 / max(window, 1e-9)
    return (f"{len(batches)} batches of up to {max(n for n, _ in batches)}, median {percentile(took, 50)} ms; "
            f"their durations add up to {filled * 100:.0f} % of the delivery window "
            f"(local Queues hand a consumer one batch at a time)")


def bench(base, receiver, target, jobs, label):
    token = login(base)
    mark = receiver_mark(receiver)
    wrangler_log = os.environ.get("TEPI_JOBS_WRANGLER_LOG")
    log_offset = os.path.getsize(wrangler_log) if wrangler_log else 0
    cpu = cpu_times()
    start = time.time()
    enqueue(base, token, receiver, [(f"bench-{label}-{i}", "") for i in range(jobs)])
    enqueued_s = time.time() - start
    while True:
        if target == "spin":
            call("POST", f"{base}/v1/jobs/drain?limit=100", token=token, expect=200)
        done, lags, times = delivered_since(receiver, mark)
        if done >= jobs:
            break
        if time.time() - start > 600:
            sys.exit(f"bench {label}: only {done}/{jobs} delivered in 600 s")
        time.sleep(0.05 if target == "spin" else 0.2)
    elapsed = time.time() - start
    busy = busy_since(cpu)
    window = max(times) - min(times)
    print(f"  {target} {label}: {jobs} jobs enqueued in {enqueued_s:.1f} s ({jobs / enqueued_s:.0f}/s), "
          f"all delivered after {elapsed:.1f} s; consumer throughput {jobs / window:.0f} jobs/s "
          f"(first to last delivery); lag enqueue->delivery p50 {percentile(lags, 50):.0f} ms, "
          f"p95 {percentile(lags, 95):.0f} ms; {busy}")
    if wrangler_log:
        print(f"    {local_queue_batches(wrangler_log, log_offset, window)}")


def backlog(base, receiver, jobs, label):
    token = login(base)
    limit = int(os.environ.get("DRAIN_LIMIT", "250"))
    callers = int(os.environ.get("DRAIN_CALLERS", "2"))
    mark = receiver_mark(receiver)
    start = time.time()
    enqueue(base, token, receiver, [(f"backlog-{label}-{i}", "") for i in range(jobs)])
    enqueued_s = time.time() - start
    early, _, _ = delivered_since(receiver, mark)
    if early:
        sys.exit(f"backlog {label}: {early} jobs ran before the drain (JOB_DRAIN_AFTER_RESPONSE must be 0)")
    cpu = cpu_times()
    drain_start = time.time()

    def drainer(_):
        while True:
            _, text = call("POST", f"{base}/v1/jobs/drain?limit={limit}", token=token, expect=200)
            if not json.loads(text).get("leased"):
                return

    with ThreadPoolExecutor(max_workers=callers) as pool:
        list(pool.map(drainer, range(callers)))
    drained_s = time.time() - drain_start
    busy = busy_since(cpu)
    done, _, times = delivered_since(receiver, mark)
    if done < jobs:
        sys.exit(f"backlog {label}: only {done}/{jobs} delivered once the outbox was empty")
    window = max(times) - min(times)
    print(f"  spin {label}: {jobs} jobs enqueued in {enqueued_s:.1f} s, then {callers} drains of up to "
          f"{limit} at a time emptied the outbox in {drained_s:.2f} s: consumer throughput "
          f"{jobs / window:.0f} jobs/s (first to last delivery); {busy}")


def main():
    mode = sys.argv[1]
    if mode == "no-loss":
        no_loss(*sys.argv[2:5])
    elif mode == "bench":
        base, receiver, target, jobs, label = sys.argv[2:7]
        bench(base, receiver, target, int(jobs), label)
    elif mode == "backlog":
        base, receiver, jobs, label = sys.argv[2:6]
        backlog(base, receiver, int(jobs), label)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
