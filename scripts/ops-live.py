#!/usr/bin/env python3
"""The live check's client side (scripts/ops-live.sh runs the services).

    ops-live.py traffic               send a steady mix until stopped
    ops-live.py wait-fired T0         until the error-rate alert is in Tepi
    ops-live.py wait-resolved T0      until it is resolved there

Environment: TEPI_OPS_API (the API's URL), TEPI_OPS_PROMETHEUS,
TEPI_OPS_ALERTMANAGER (their URLs), TEPI_OPS_TOKEN (an operator admin's
access token), TEPI_OPS_TIMEOUT (seconds a wait may take, default 300).

`traffic` sends, about five times a second: /healthz, /v1/auth/me, the JWKS
(cache hits), the admin's /v1/webhook-secret (the route that fails with 503
while the platform's webhook signing key is missing), a Web Vitals beacon,
and now and then a webhook notification to a closed port (jobs that fail,
retry and are dead-lettered: the queue panels' backlog). Connection errors
(the API restarting) are waited out.

The waits poll Prometheus' alerts API, Alertmanager's alerts API, Tepi's
`GET /v1/ops/alerts` and the admin's notifications, and print when each
first saw the alert, in seconds since T0 (a Unix time: the fault's start or
its end). They fail when TEPI_OPS_TIMEOUT passes first.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

ALERT = "TepiErrorRateHigh"
API = os.environ.get("TEPI_OPS_API", "http://127.0.0.1:18811")
PROMETHEUS = os.environ.get("TEPI_OPS_PROMETHEUS", "http://127.0.0.1:18812")
ALERTMANAGER = os.environ.get("TEPI_OPS_ALERTMANAGER", "http://127.0.0.1:18813")
TOKEN = os.environ.get("TEPI_OPS_TOKEN", "")
TIMEOUT = float(os.environ.get("TEPI_OPS_TIMEOUT", "300"))


def call(method, url, body=None, token=None, content_type="application/json"):
    """(status, parsed JSON or None); status 0 when nothing answered."""
    data = None
    headers = {}
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["content-type"] = content_type
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    except (urllib.error.URLError, OSError):
        return 0, None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def traffic():
    beacon = json.dumps([{"name": "LCP", "value": 1800}, {"name": "INP", "value": 120},
                         {"name": "CLS", "value": 0.04}, {"name": "TTFB", "value": 350}]).encode()
    counts = {}
    i = 0
    while True:
        i += 1
        for method, path, body, token in (
            ("GET", "/healthz", None, None),
            ("GET", "/v1/auth/me", None, TOKEN),
            ("GET", "/.well-known/jwks.json", None, None),
            ("GET", "/v1/webhook-secret", None, TOKEN),
        ):
            status, _ = call(method, API + path, body, token)
            counts[status] = counts.get(status, 0) + 1
        if i % 5 == 0:
            call("POST", API + "/api/rum", beacon, content_type="text/plain")
        if i % 10 == 0:
            call("POST", API + "/v1/notifications", {
                "to": {"webhook_url": "http://127.0.0.1:9/ops-live"},
                "subject": "backlog", "body": "a delivery that cannot succeed"}, TOKEN)
        if i % 50 == 0:
            print(f"traffic: {i} rounds, answers {dict(sorted(counts.items()))}", flush=True)
        time.sleep(0.2)


def prometheus_state():
    status, body = call("GET", PROMETHEUS + "/api/v1/alerts")
    if status != 200:
        return "unreachable"
    states = [a["state"] for a in body["data"]["alerts"] if a["labels"].get("alertname") == ALERT]
    return "firing" if "firing" in states else ("pending" if states else None)


def alertmanager_active():
    status, body = call("GET", ALERTMANAGER + "/api/v2/alerts?active=true&silenced=false&inhibited=false")
    return status == 200 and any(a["labels"].get("alertname") == ALERT for a in body)


def tepi_alert(state):
    status, body = call("GET", f"{API}/v1/ops/alerts?state={state}&limit=100", token=TOKEN)
    if status != 200:
        return None
    return next((a for a in body["items"] if a["alertname"] == ALERT), None)


def notified(word):
    status, body = call("GET", f"{API}/v1/notifications?limit=100", token=TOKEN)
    if status != 200:
        return None
    return next((n for n in body["items"] if n["subject"].startswith(f"[{word}") and ALERT in n["subject"]), None)


def wait(t0, steps):
    """steps: (label, probe); each probe is polled until truthy, in order
    of whichever comes first; prints the timeline."""
    seen = {}
    deadline = time.time() + TIMEOUT
    while len(seen) < len(steps):
        if time.time() > deadline:
            missing = [label for label, _ in steps if label not in seen]
            print(f"FAIL: after {TIMEOUT:.0f} s still waiting for: {', '.join(missing)}", flush=True)
            return None
        for label, probe in steps:
            if label in seen:
                continue
            value = probe()
            if value:
                seen[label] = (time.time() - t0, value)
                print(f"  +{seen[label][0]:6.1f} s  {label}", flush=True)
        time.sleep(0.5)
    return seen


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    what = sys.argv[1]
    if what == "traffic":
        traffic()
        return
    t0 = float(sys.argv[2])
    if what == "wait-fired":
        print(f"timeline of {ALERT} from the fault's start:", flush=True)
        seen = wait(t0, [
            ("Prometheus: pending", lambda: prometheus_state() in ("pending", "firing")),
            ("Prometheus: firing", lambda: prometheus_state() == "firing"),
            ("Alertmanager: active", alertmanager_active),
            ("Tepi: GET /v1/ops/alerts?state=firing lists it", lambda: tepi_alert("firing")),
            ("Tepi: the operator admin's inbox has [FIRING…]", lambda: notified("FIRING")),
        ])
        if seen is None:
            sys.exit(1)
        alert = seen["Tepi: GET /v1/ops/alerts?state=firing lists it"][1]
        note = seen["Tepi: the operator admin's inbox has [FIRING…]"][1]
        print(f"stored: {json.dumps({k: alert[k] for k in ('fingerprint', 'status', 'severity', 'summary', 'runbook_url', 'starts_at')})}")
        print(f"notification: {note['subject']!r}")
        print(f"fault to notification: {seen['Tepi: the operator admin' + chr(39) + 's inbox has [FIRING…]'][0]:.1f} s")
    elif what == "wait-resolved":
        print(f"timeline of {ALERT} from the fault's end:", flush=True)
        seen = wait(t0, [
            ("Prometheus: no longer firing", lambda: prometheus_state() is None),
            ("Tepi: GET /v1/ops/alerts?state=resolved lists it", lambda: tepi_alert("resolved")),
            ("Tepi: the operator admin's inbox has [RESOLVED…]", lambda: notified("RESOLVED")),
        ])
        if seen is None:
            sys.exit(1)
        alert = seen["Tepi: GET /v1/ops/alerts?state=resolved lists it"][1]
        print(f"resolved: ends_at {alert['ends_at']}, {alert['receipts']} deliveries received")
        print(f"fix to resolution: {seen['Tepi: the operator admin' + chr(39) + 's inbox has [RESOLVED…]'][0]:.1f} s")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
