#!/usr/bin/env python3
"""A webhook receiver for the queue gates: verifies every delivery and
answers what the URL asks for, so tests can inject failures.

    webhook-receiver.py PORT

TEPI_WEBHOOK_SECRET         the tenant's webhook secret (`whsec_…`, shown by
                            POST /v1/bootstrap, POST /v1/tenants and
                            POST /v1/webhook-secret/rotate), or several
                            separated by commas while a rotation overlaps
TEPI_WEBHOOK_TENANT         when set, deliveries of any other X-Tenant-ID
                            are problems
TEPI_WEBHOOK_TOLERANCE_SECS the replay window: a `t` further than this from
                            the receiver's clock is a problem (default 300)

A delivery verifies when some `v1` of `Tepi-Signature: t=<ts>,v1=<hex>…`
is the HMAC-SHA256, keyed with one of the secrets, of
`<ts>.<X-Tenant-ID>.<Tepi-Event-Id>.<body>` (docs/api.md, Webhook
signatures). A delivery that does not verify is still answered as the URL
asks, and recorded as a problem, which the gates fail on.

POST /hook/<key>?fail=N[&status=S][&permanent=1][&slow_ms=M]
    the first N deliveries for <key> answer S (default 503); with
    permanent=1 every delivery answers 400; with slow_ms=M the first
    delivery sleeps M ms before answering 503 (a sender's time budget
    should run out first); anything else answers 200.
GET /stats
    JSON: per key the attempts, successes and answers, plus every
    delivery's problems (bad signature, missing trace headers) and each
    success's lag from the envelope time (`sent_at`) to arrival.
"""

import hashlib
import hmac
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

SECRETS = [s.strip().encode() for s in os.environ.get("TEPI_WEBHOOK_SECRET", "").split(",") if s.strip()]
TENANT = os.environ.get("TEPI_WEBHOOK_TENANT", "")
TOLERANCE_SECS = int(os.environ.get("TEPI_WEBHOOK_TOLERANCE_SECS", "300"))
TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
SIGNATURE = re.compile(r"t=(\d+)((?:,v1=[0-9a-f]{64})+)")

lock = threading.Lock()
keys = {}
problems = []
lags_ms = []
# Arrival time (Unix seconds) of every success, in order.
success_times = []


def parse_time(text):
    # 2026-11-26T05:02:58.123Z
    from datetime import datetime, timezone

    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def signature_issues(headers, body, now):
    """What is wrong with a delivery's signature: nothing, or why it fails."""
    match = SIGNATURE.fullmatch(headers.get("tepi-signature", ""))
    if not match:
        return ["bad signature: Tepi-Signature is not t=<ts>,v1=<hex>…"]
    issues = []
    timestamp = match.group(1)
    if abs(now - int(timestamp)) > TOLERANCE_SECS:
        issues.append(f"stale signature: t={timestamp} is more than {TOLERANCE_SECS} s away")
    tenant = headers.get("x-tenant-id", "")
    if TENANT and tenant != TENANT:
        issues.append(f"foreign tenant: {tenant!r}, not {TENANT!r}")
    signed = f"{timestamp}.{tenant}.{headers.get('tepi-event-id', '')}.".encode() + body
    expected = [hmac.new(secret, signed, hashlib.sha256).hexdigest() for secret in SECRETS]
    given = match.group(2).split(",v1=")[1:]
    # Every pair compared, in constant time each: accept if any matches.
    if not any(hmac.compare_digest(e, g) for e in expected for g in given):
        issues.append("bad signature: no v1 matches a secret")
    return issues


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != "/stats":
            return self.answer(404)
        with lock:
            body = json.dumps({"keys": keys, "problems": problems, "lags_ms": lags_ms, "success_times": success_times}).encode()
        self.answer(200, body)

    def do_POST(self):
        arrived = time.time()
        url = urlparse(self.path)
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        if not url.path.startswith("/hook/"):
            return self.answer(404)
        key = url.path[len("/hook/"):]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        issues = signature_issues(self.headers, body, arrived)
        if not TRACEPARENT.match(self.headers.get("traceparent", "")):
            issues.append("no traceparent")
        for name in ("x-request-id", "x-tenant-id", "tepi-event-id"):
            if not self.headers.get(name):
                issues.append(f"no {name}")
        with lock:
            entry = keys.setdefault(key, {"attempts": 0, "successes": 0, "answers": {}, "event_ids": []})
            entry["attempts"] += 1
            attempt = entry["attempts"]
            event_id = self.headers.get("tepi-event-id", "")
            if event_id not in entry["event_ids"]:
                entry["event_ids"].append(event_id)
            if issues:
                problems.append({"key": key, "issues": issues})
        delay = 0
        if query.get("permanent") == "1":
            status = 400
        elif attempt <= int(query.get("fail", "0")):
            status = int(query.get("status", "503"))
        elif attempt == 1 and "slow_ms" in query:
            status, delay = 503, int(query["slow_ms"]) / 1000
        else:
            status = 200
        # Counted when decided, not when sent: a slow answer still asleep
        # when /stats is read is part of the stats.
        with lock:
            answers = entry["answers"]
            answers[str(status)] = answers.get(str(status), 0) + 1
            if status == 200:
                entry["successes"] += 1
                success_times.append(arrived)
                try:
                    sent = json.loads(body).get("sent_at")
                    if sent:
                        lags_ms.append(round((arrived - parse_time(sent)) * 1000, 1))
                except (ValueError, AttributeError):
                    pass
        time.sleep(delay)
        self.answer(status, b"{}")


def main():
    port = int(sys.argv[1])
    if not SECRETS or any(not s.startswith(b"whsec_") or len(s) != 70 for s in SECRETS):
        sys.exit("TEPI_WEBHOOK_SECRET must hold the tenant's webhook secret (whsec_…), or several separated by commas")
    # socketserver's default listen backlog is 5: a sender with more new
    # connections in flight than that has SYNs dropped and retried after
    # the kernel's one-second timeout, which would be measured as lag.
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"webhook receiver on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
