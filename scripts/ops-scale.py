#!/usr/bin/env python3
"""The checked-in Prometheus and Alertmanager configuration, pointed at a
local API and with time scaled down, for the live check (scripts/ops-live.sh).

    ops-scale.py --factor N --api HOST:PORT --alertmanager HOST:PORT \
                 --secrets DIR --out DIR

Writes OUT/prometheus.yml, OUT/rules/*.yml and OUT/alertmanager.yml from
ops/prometheus/prometheus.yml, ops/prometheus/rules/*.yml and
ops/alertmanager/alertmanager.yml. Only these change:

- every scrape target becomes --api, the Alertmanager target --alertmanager,
  the webhook URL's host --api, and each `credentials_file` the file of the
  same name in --secrets;
- every duration is divided by N, at least 1 s: the scrape and evaluation
  intervals, each rule's `for`, every range (`[5m]`, `[1h:5m]`) inside a
  rule's expression, and Alertmanager's group_wait, group_interval and
  repeat_interval. A `for: 10m` over `rate(…[5m])` becomes, with N = 30,
  `for: 20s` over `rate(…[10s])`: the same rule, on a clock 30 times faster.

The expressions, thresholds, labels and annotations stay as checked in, so
the live check exercises the rules and routes that ship.
"""

import argparse
import glob
import os
import re
import sys
from urllib.parse import urlsplit, urlunsplit

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "y": 31_536_000_000}
DURATION = re.compile(r"^(?:\d+(?:ms|[smhdwy]))+$")
PART = re.compile(r"(\d+)(ms|[smhdwy])")
RANGE = re.compile(r"\[(\w+)(?::(\w*))?\]")
STRING = re.compile(r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)""")


def millis(text):
    if not DURATION.match(text):
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * UNITS[u] for n, u in PART.findall(text))


def scaled(text, factor):
    return f"{max(1000, millis(text) // factor)}ms"


def scale_expr(expr, factor):
    def one(m):
        inner = scaled(m.group(1), factor)
        if m.group(2) is None:
            return f"[{inner}]"
        step = scaled(m.group(2), factor) if m.group(2) else ""
        return f"[{inner}:{step}]"

    # Ranges outside string literals only: a label value may hold "[5m]".
    pieces = STRING.split(expr)
    return "".join(p if i % 2 else RANGE.sub(one, p) for i, p in enumerate(pieces))


def secret_path(path, secrets):
    return os.path.join(secrets, os.path.basename(path))


def prometheus(config, factor, api, alertmanager, secrets, out):
    g = config.setdefault("global", {})
    for key in ("scrape_interval", "evaluation_interval"):
        g[key] = scaled(g.get(key, "1m"), factor)
    config["rule_files"] = [os.path.join(out, "rules", "*.yml")]
    for am in config.get("alerting", {}).get("alertmanagers", []):
        for sc in am.get("static_configs", []):
            sc["targets"] = [alertmanager]
    for job in config.get("scrape_configs", []):
        for key in ("scrape_interval", "scrape_timeout"):
            if key in job:
                job[key] = scaled(job[key], factor)
        for sc in job.get("static_configs", []):
            sc["targets"] = [api]
        job["scheme"] = "http"
        auth = job.get("authorization", {})
        if "credentials_file" in auth:
            auth["credentials_file"] = secret_path(auth["credentials_file"], secrets)
    return config


def rules(doc, factor):
    for group in doc.get("groups", []):
        if "interval" in group:
            group["interval"] = scaled(group["interval"], factor)
        for rule in group.get("rules", []):
            rule["expr"] = scale_expr(str(rule["expr"]), factor)
            if "for" in rule:
                rule["for"] = scaled(rule["for"], factor)
    return doc


def alertmanager_config(config, factor, api, secrets):
    def route(r):
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in r:
                r[key] = scaled(r[key], factor)
        for child in r.get("routes", []):
            route(child)

    route(config.get("route", {}))
    for receiver in config.get("receivers", []):
        for hook in receiver.get("webhook_configs", []):
            parts = urlsplit(hook["url"])
            hook["url"] = urlunsplit(("http", api, parts.path, parts.query, ""))
            auth = hook.get("http_config", {}).get("authorization", {})
            if "credentials_file" in auth:
                auth["credentials_file"] = secret_path(auth["credentials_file"], secrets)
    return config


def self_test():
    assert scaled("10m", 30) == "20000ms"
    assert scaled("5s", 30) == "1000ms", "never below a second"
    got = scale_expr('rate(x{a="[5m]\\"[1m]"}[5m]) / sum_over_time(y[1h:5m])', 30)
    assert got == 'rate(x{a="[5m]\\"[1m]"}[10000ms]) / sum_over_time(y[120000ms:10000ms])', got
    got = scale_expr("sum(rate(x[5m])) > 0 and max_over_time(y[1h:])", 60)
    assert got == "sum(rate(x[5000ms])) > 0 and max_over_time(y[60000ms:])", got
    assert millis("1h30m") == 5_400_000


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--factor", type=int, required=True)
    p.add_argument("--api", required=True)
    p.add_argument("--alertmanager", required=True)
    p.add_argument("--secrets", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    if a.factor < 1:
        sys.exit("--factor must be at least 1")
    self_test()
    out = os.path.abspath(a.out)
    os.makedirs(os.path.join(out, "rules"), exist_ok=True)
    secrets = os.path.abspath(a.secrets)
    with open(os.path.join(ROOT, "ops/prometheus/prometheus.yml")) as f:
        config = yaml.safe_load(f)
    with open(os.path.join(out, "prometheus.yml"), "w") as f:
        yaml.safe_dump(prometheus(config, a.factor, a.api, a.alertmanager, secrets, out), f, sort_keys=False)
    files = sorted(glob.glob(os.path.join(ROOT, "ops/prometheus/rules/*.yml")))
    if not files:
        sys.exit("no rule files in ops/prometheus/rules")
    for path in files:
        with open(path) as f:
            doc = yaml.safe_load(f)
        with open(os.path.join(out, "rules", os.path.basename(path)), "w") as f:
            yaml.safe_dump(rules(doc, a.factor), f, sort_keys=False)
    with open(os.path.join(ROOT, "ops/alertmanager/alertmanager.yml")) as f:
        config = yaml.safe_load(f)
    with open(os.path.join(out, "alertmanager.yml"), "w") as f:
        yaml.safe_dump(alertmanager_config(config, a.factor, a.api, secrets), f, sort_keys=False)
    print(f"configs scaled 1/{a.factor} into {out}: prometheus.yml, {len(files)} rule files, alertmanager.yml")


if __name__ == "__main__":
    main()
