#!/usr/bin/env python3
"""A webhook receiver for the queue gates: verifies every delivery and
answers what the URL asks for, so tests can inject failures.

    webhook-receiver.py PORT            (secret in TEPI_WEBHOOK_SECRET)

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

SECRET = os.environ.get("TEPI_WEBHOOK_SECRET", "").encode()
TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")

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
        issues = []
        signature = self.headers.get("tepi-signature", "")
        match = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", signature)
        expected = None
        if match:
            mac = hmac.new(SECRET, match.group(1).encode() + b"." + body, hashlib.sha256)
            expected = mac.hexdigest()
        if not match or not hmac.compare_digest(expected, match.group(2)):
            issues.append("bad signature")
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
        if query.get("permanent") == "1":
            status = 400
        elif attempt <= int(query.get("fail", "0")):
            status = int(query.get("status", "503"))
        elif attempt == 1 and "slow_ms" in query:
            time.sleep(int(query["slow_ms"]) / 1000)
            status = 503
        else:
            status = 200
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
        self.answer(status, b"{}")


def main():
    port = int(sys.argv[1])
    if len(SECRET) < 32:
        sys.exit("TEPI_WEBHOOK_SECRET must hold the signing secret")
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"webhook receiver on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
