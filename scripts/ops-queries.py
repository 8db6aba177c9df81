#!/usr/bin/env python3
"""Checks the PromQL of the Grafana dashboard and of the Prometheus rules
against what the service really exports.

    ops-queries.py --dashboard ops/grafana/dashboards/tepi.json \\
                   --rules 'ops/prometheus/rules/*.yml' \\
                   --scrape FILE [--scrape FILE ...] \\
                   [--prometheus http://127.0.0.1:PORT] [--self-test]

Every run first proves the checker itself (the self-test: a planted unknown
metric must be reported, a planted broken expression must fail promtool,
known expressions must yield exactly their names); `--self-test` stops
there. Then:

1. When the dashboard was generated (ops/grafana/generate.py beside its
   folder), the checked-in JSON must equal the generator's output.
2. Dashboard lint: unique panel ids, and every panel has a gridPos, a
   description, a unit and at least one `targets[].expr`.
3. Every expression (every `targets[].expr` of the dashboard, rows' nested
   panels included; every `expr` of the rules files, which may be missing)
   has its Grafana variables substituted ($__rate_interval, $__interval,
   $__range -> 5m; query variables such as $queue_name -> .+) and must parse:
   all of them go into one temporary rules file as `record: check_<n>`,
   checked with `promtool check rules`; a failure names the expression.
4. The metric names each expression reads (a small PromQL tokenizer: not
   strings, label matchers, ranges, numbers, keywords, function or
   aggregation names) must be exported: a sample name in the --scrape files
   (with _bucket/_sum/_count of their histograms and summaries), a series
   Prometheus adds itself (up, scrape_*), ALERTS / ALERTS_FOR_STATE, or a
   recording rule of the rules files. Label names in matchers must exist on
   the metric (plus job and instance); an `=` value never seen in the scrapes
   is a warning only.
5. With --prometheus URL, every dashboard query runs as an instant query
   ($__rate_interval and friends -> --window, default 1m; $queue_name ->
   .+); each must return at least one series.

Exit status: 0 clean, 1 a check failed, 2 usage or environment (promtool).
Standard library and PyYAML only.
"""

import argparse
import fnmatch
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

import yaml

# --- Grafana variables --------------------------------------------------------

# Built-in duration variables and the numeric ones (seconds / milliseconds of
# the window).
DURATION_VARS = {"__rate_interval", "__interval", "__range"}
SECONDS_VARS = {"__range_s": 1, "__interval_ms": 1000, "__range_ms": 1000}
EQ_MATCHER_RE = re.compile(r'([a-zA-Z_]\w*)\s*(!=|=)(?![~=])\s*"((?:[^"\\]|\\.)*)"')
VAR_RE = re.compile(r"\$\{(\w+)(?::[\w-]+)?\}|\[\[(\w+)(?::[\w-]+)?\]\]|\$(\w+)")


def window_seconds(window):
    total = 0
    for n, unit in re.findall(r"(\d+)(ms|[smhdwy])", window):
        total += int(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400,
                           "w": 604800, "y": 31536000}[unit]
    return total


def dashboard_variables(dash):
    """name -> value substituted in expressions, from the dashboard's
    templating: query variables match anything (.+), custom and constant
    ones take their current (or first) value, interval ones the window."""
    out = {}
    for v in (dash.get("templating") or {}).get("list") or []:
        name, kind = v.get("name"), v.get("type")
        if not name or kind in ("adhoc", "datasource"):
            out[name] = "prometheus" if kind == "datasource" else None
            continue
        if kind == "interval":
            out[name] = "@window"
        elif kind in ("custom", "constant", "textbox"):
            cur = (v.get("current") or {}).get("value")
            if isinstance(cur, list):
                cur = cur[0] if cur else None
            if cur == "$__all" or (not cur and v.get("includeAll")):
                cur = ".+"
            elif not cur:  # the first option, or the first of the query's list
                opts = [o.get("value") for o in v.get("options") or [] if o.get("value") != "$__all"]
                q = str(v.get("query") or "")
                cur = opts[0] if opts else q.split(",")[0].strip()
            out[name] = str(cur)
        else:
            out[name] = ".+"
    return out


def substitute(expr, variables, window):
    """Grafana's interpolation, for checking: returns (expr, undefined)."""
    undefined = []

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in DURATION_VARS:
            return window
        if name in SECONDS_VARS:
            return str(int(window_seconds(window) * SECONDS_VARS[name]))
        if name in variables:
            value = variables[name]
            return window if value == "@window" else (value if value is not None else m.group(0))
        if not name.isdigit():  # $1 is a regex backreference, not a variable
            undefined.append("$" + name)
        return m.group(0)

    return VAR_RE.sub(repl, expr), undefined


# --- a small PromQL tokenizer -------------------------------------------------

AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
               "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
SET_AND_BINARY_KEYWORDS = {"and", "or", "unless", "atan2", "bool"}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
NUMBER_WORDS = {"inf", "nan"}

TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w:]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>==|!=|=~|!~|<=|>=|[-+*/%^<>=@,(){}\[\]])
""", re.VERBOSE)


class PromQLError(Exception):
    pass


def tokenize(expr):
    tokens, pos = [], 0
    while pos < len(expr):
        m = TOKEN_RE.match(expr, pos)
        if not m:
            raise PromQLError(f"unexpected character {expr[pos]!r} at {pos}")
        kind = m.lastgroup
        if kind not in ("ws", "comment"):
            tokens.append((kind, m.group(kind), pos))
        pos = m.end()
    return tokens


def unquote(s):
    if s.startswith("`"):
        return s[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), s[1:-1])


def metric_refs(expr):
    """The metric selectors an expression reads: [(name, [(label, op, value)])].
    name is None for a selector by a regular expression on __name__."""
    toks = tokenize(expr)
    refs, i, n = [], 0, len(toks)

    def peek(j):
        return toks[j] if j < n else (None, None, None)

    def skip_group(j, open_, close):
        depth = 0
        while j < n:
            if toks[j][1] == open_:
                depth += 1
            elif toks[j][1] == close:
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        raise PromQLError(f"unclosed {open_!r}")

    def matchers(j):
        """Parses {label op "value", ...} from toks[j] == '{'."""
        out, j = [], j + 1
        while j < n and toks[j][1] != "}":
            if toks[j][1] == ",":
                j += 1
                continue
            label, op, value = toks[j], peek(j + 1), peek(j + 2)
            if label[0] not in ("ident", "string") or op[1] not in ("=", "!=", "=~", "!~") \
                    or value[0] != "string":
                raise PromQLError(f"bad label matcher near {label[1]!r}")
            out.append((label[1] if label[0] == "ident" else unquote(label[1]), op[1], unquote(value[1])))
            j += 3
        if j >= n:
            raise PromQLError("unclosed '{'")
        return out, j + 1

    while i < n:
        kind, text, _ = toks[i]
        nxt = peek(i + 1)[1]
        if kind == "ident":
            low = text.lower()
            if low in LABEL_LIST_KEYWORDS:
                i = skip_group(i + 1, "(", ")") if nxt == "(" else i + 1
            elif low in SET_AND_BINARY_KEYWORDS or low in NUMBER_WORDS or low == "offset":
                i += 1
            elif nxt == "(":  # a function or an aggregation: sum(…), rate(…), start()
                i += 1
            elif text in AGGREGATORS and (peek(i + 1)[1] or "").lower() in ("by", "without"):
                i += 1  # sum by (le) (…)
            else:
                ms = []
                i += 1
                if nxt == "{":
                    ms, i = matchers(i)
                refs.append((text, ms))
        elif text == "{":  # {__name__="x", …} without a name in front
            ms, i = matchers(i)
            names = [v for l, op, v in ms if l == "__name__" and op == "="]
            regex = [v for l, op, v in ms if l == "__name__" and op != "="]
            rest = [m for m in ms if m[0] != "__name__"]
            if names:
                refs.append((names[0], rest))
            elif regex:
                refs.append((None, ms))
            else:
                raise PromQLError("a selector without a metric name")
        elif text == "[":  # a range [5m] or a subquery [1h:5m]
            i = skip_group(i, "[", "]")
        else:
            i += 1
    return refs


def metric_names(expr):
    return {name for name, _ in metric_refs(expr) if name}


# --- what the service exports -------------------------------------------------

# Series Prometheus writes itself for every target (the extra ones with
# --enable-feature=extra-scrape-metrics), and the alerting ones.
SYNTHETIC = {
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added",
    "scrape_timeout_seconds", "scrape_sample_limit", "scrape_body_size_bytes",
}
ALERT_SERIES = {"ALERTS", "ALERTS_FOR_STATE"}
TARGET_LABELS = {"job", "instance"}
SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+\S+")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')


class Exported:
    """Metric names -> {label: set of values seen}; names of recording
    rules, whose labels are unknown."""

    def __init__(self):
        self.labels = {}
        self.any_labels = set()
        self.allow = []  # globs of names exported by something else (--allow)
        self.sampled = set()  # names with at least one sample in the scrapes
        self.scraped = set()  # every name the scrapes export (histogram series included)

    def add(self, name, labels=None):
        entry = self.labels.setdefault(name, {})
        for label, value in (labels or {}).items():
            entry.setdefault(label, set()).add(value)

    def read_exposition(self, text):
        types = {}
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("# TYPE "):
                parts = line.split()
                if len(parts) >= 4:
                    types[parts[2]] = parts[3]
                continue
            if not line or line.startswith("#"):
                continue
            m = SAMPLE_RE.match(line)
            if m:
                labels = {k: v for k, v in LABEL_RE.findall(m.group(2) or "")}
                self.add(m.group(1), labels)
                self.sampled.add(m.group(1))
        for family, kind in types.items():
            suffixes = {"histogram": ["_bucket", "_sum", "_count"],
                        "gaugehistogram": ["_bucket", "_gsum", "_gcount"],
                        "summary": ["", "_sum", "_count"]}.get(kind, [""])
            for suffix in suffixes:
                self.add(family + suffix)
            if kind in ("histogram", "gaugehistogram"):
                self.labels[family + "_bucket"].setdefault("le", set())
            if kind == "summary":
                self.labels[family].setdefault("quantile", set())
        # Label names of a histogram's samples apply to its whole family.
        for family, kind in types.items():
            if kind in ("histogram", "summary"):
                group = [family + s for s in ("", "_bucket", "_sum", "_count") if family + s in self.labels]
                shared = set().union(*(self.labels[g].keys() for g in group)) - {"le", "quantile"}
                for g in group:
                    for label in shared:
                        self.labels[g].setdefault(label, set())

    def add_free(self, name):
        """A name whose labels are not known (recording rules, ALERTS)."""
        self.add(name)
        self.any_labels.add(name)

    def __contains__(self, name):
        return name in self.labels or self.allowed(name)

    def allowed(self, name):
        return name not in self.labels and any(fnmatch.fnmatch(name, p) for p in self.allow)


def exported_from(scrape_texts, record_names):
    ex = Exported()
    for text in scrape_texts:
        ex.read_exposition(text)
    ex.scraped = set(ex.labels)
    # A family declared by `# TYPE` without samples: its labels are unknown.
    for name in list(ex.labels):
        family = re.sub(r"_(bucket|sum|count|gsum|gcount)$", "", name)
        if not any(n in ex.sampled for n in (name, family + "_bucket", family + "_sum",
                                              family + "_count", family)):
            ex.any_labels.add(name)
    for name in SYNTHETIC:
        ex.add(name)
    for name in ALERT_SERIES | set(record_names):
        ex.add_free(name)
    return ex


def name_problems(expr, ex):
    """(unknown names, label errors, warnings) of one substituted expression."""
    unknown, label_errors, warnings = [], [], []
    for name, ms in metric_refs(expr):
        if name is None:
            warnings.append("a __name__ regular expression: its names are not checked")
            continue
        if name not in ex:
            unknown.append(name)
            continue
        if name in ex.any_labels or ex.allowed(name):
            continue
        known = ex.labels[name]
        for label, op, value in ms:
            if value == "" or label in TARGET_LABELS or label == "__name__":
                continue
            if label not in known:
                label_errors.append(f"{name} has no label {label!r} (it has: {', '.join(sorted(known)) or 'none'})")
            elif op == "=" and known[label] and value not in known[label]:
                warnings.append(f'{name}{{{label}="{value}"}}: value not seen in the scrapes '
                                f"(seen: {', '.join(sorted(known[label]))})")
    return unknown, label_errors, warnings


# --- promtool ------------------------------------------------------------------

def promtool_failures(exprs):
    """Indexes of the expressions promtool cannot parse, with its message."""
    if not exprs:
        return {}
    with tempfile.TemporaryDirectory(prefix="ops-queries-") as tmp:
        path = os.path.join(tmp, "check.yml")

        def run(indexes):
            doc = {"groups": [{"name": "ops-queries", "rules": [
                {"record": f"check_{i}", "expr": exprs[i]} for i in indexes]}]}
            with open(path, "w", encoding="utf-8") as f:
                yaml.safe_dump(doc, f, sort_keys=False, width=1 << 20)
            p = subprocess.run(["promtool", "check", "rules", path],
                               capture_output=True, text=True)
            return p.returncode, p.stdout + p.stderr

        rc, out = run(range(len(exprs)))
        if rc == 0:
            return {}
        failures = {}
        for line in out.splitlines():
            m = re.search(r'"check_(\d+)": (.*)', line)
            if m:
                failures[int(m.group(1))] = m.group(2).strip()
        if failures:
            return failures
        # promtool did not name a rule: check each alone.
        for i in range(len(exprs)):
            rc, out = run([i])
            if rc != 0:
                failures[i] = " ".join(l.strip() for l in out.splitlines() if l.strip() and not l.startswith("Checking"))
        if not failures:
            failures[-1] = out.strip()
        return failures


# --- the inputs -----------------------------------------------------------------

def walk_panels(panels, row=None):
    """(row title, panel) for every panel, rows' nested panels included."""
    for p in panels or []:
        if p.get("type") == "row":
            row = p.get("title", "")
            yield row, p
            for child in p.get("panels") or []:
                yield row, child
        else:
            yield row, p


def dashboard_queries(dash):
    """[(where, expr)] for every target of every panel, and the templating
    queries' metric names (label_values(metric, label))."""
    out = []
    for row, p in walk_panels(dash.get("panels")):
        for t in p.get("targets") or []:
            if t.get("expr"):
                where = f"{row + ' / ' if row else ''}{p.get('title', '?')} [{t.get('refId', '?')}]"
                out.append((where, t["expr"]))
    return out


def template_refs(dash):
    """Metric selectors of query variables: label_values(selector, label)."""
    out = []
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.match(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*$", q) \
            or re.match(r"\s*query_result\((.*)\)()\s*$", q)
        if m:
            out.append((f"variable ${v.get('name')}", m.group(1), m.group(2) or None))
    return out


def lint_dashboard(dash):
    errors, ids = [], {}
    variables = {v.get("name") for v in (dash.get("templating") or {}).get("list") or []}
    multi = {v.get("name") for v in (dash.get("templating") or {}).get("list") or []
             if v.get("multi") or v.get("includeAll")}
    for row, p in walk_panels(dash.get("panels")):
        title = p.get("title", "?")
        for t in p.get("targets") or []:
            # A multi-value variable becomes a|b|c or All's regex: = cannot match it.
            for label, op, value in EQ_MATCHER_RE.findall(t.get("expr") or ""):
                for m in VAR_RE.finditer(value):
                    name = m.group(1) or m.group(2) or m.group(3)
                    if name in multi:
                        errors.append(f"panel {title!r} [{t.get('refId', '?')}]: {label}{op}\"{value}\" "
                                      f"with multi-value ${name}: use {'=~' if op == '=' else '!~'}")
        pid = p.get("id")
        if pid is None:
            errors.append(f"panel {title!r} has no id")
        elif pid in ids:
            errors.append(f"panel id {pid} is used by {ids[pid]!r} and {title!r}")
        else:
            ids[pid] = title
        if "gridPos" not in p:
            errors.append(f"panel {title!r} has no gridPos")
        if p.get("type") == "row":
            if p.get("repeat") and p["repeat"] not in variables:
                errors.append(f"row {title!r} repeats over undefined variable {p['repeat']!r}")
            continue
        if not p.get("description"):
            errors.append(f"panel {title!r} has no description")
        if not ((p.get("fieldConfig") or {}).get("defaults") or {}).get("unit"):
            errors.append(f"panel {title!r} has no unit")
        if not any(t.get("expr") for t in p.get("targets") or []):
            errors.append(f"panel {title!r} has no targets[].expr")
    return errors


def rules_queries(patterns):
    """[(where, expr)], recording rule names, notes, errors."""
    out, records, notes, errors = [], [], [], []
    files = sorted({f for pat in patterns for f in glob.glob(pat)})
    if not files:
        notes.append(f"no rules files match {' '.join(patterns)}: the dashboard is checked alone"
                     if patterns else "no --rules: the dashboard is checked alone")
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            errors.append(f"{path}: {e}")
            continue
        if not isinstance(doc, dict) or "groups" not in doc:
            notes.append(f"{path}: no `groups` (not a rules file), skipped")
            continue
        for g in doc.get("groups") or []:
            for r in g.get("rules") or []:
                name = r.get("record") or r.get("alert") or "?"
                if r.get("record"):
                    records.append(r["record"])
                if r.get("expr") is not None:
                    out.append((f"{path}: {g.get('name', '?')} / {name}", str(r["expr"])))
    return out, records, notes, errors, files


def read_scrapes(patterns):
    texts, files = [], sorted({f for pat in patterns for f in (glob.glob(pat) or [pat])})
    for path in files:
        with open(path, encoding="utf-8") as f:
            texts.append(f.read())
    return texts, files


# --- the checks ------------------------------------------------------------------

def check(queries, ex, variables, window, out):
    """Substitutes, parses with promtool and checks the names of
    queries = [(source, where, expr)]. Returns (ok, names read)."""
    ok = True
    prepared = []
    for source, where, expr in queries:
        sub, undefined = substitute(expr, variables if source == "dashboard" else {}, window)
        if undefined and source == "dashboard":
            ok = False
            out(f"FAIL undefined Grafana variable {', '.join(sorted(set(undefined)))} in {where}: {expr}")
        prepared.append((source, where, expr, sub))

    failures = promtool_failures([p[3] for p in prepared])
    for i, message in sorted(failures.items()):
        ok = False
        if i < 0:
            out(f"FAIL promtool check rules failed: {message}")
        else:
            out(f"FAIL does not parse: {prepared[i][1]}\n     expr: {prepared[i][2]}\n     promtool: {message}")

    unknown, names = {}, set()
    for i, (source, where, expr, sub) in enumerate(prepared):
        if i in failures:
            continue
        try:
            names |= metric_names(sub)
            bad, label_errors, warnings = name_problems(sub, ex)
        except PromQLError as e:
            ok = False
            out(f"FAIL cannot tokenize {where}: {e}\n     expr: {expr}")
            continue
        for name in bad:
            unknown.setdefault(name, []).append((where, expr))
        for e in label_errors:
            ok = False
            out(f"FAIL {e}\n     in {where}: {expr}")
        for w in warnings:
            out(f"warn {w}\n     in {where}")
    for name, where in sorted(unknown.items()):
        ok = False
        out(f"FAIL unknown metric {name} (not exported, not a recording rule), read by:")
        for w, expr in where:
            out(f"       {w}: {expr}")
    return ok, names


def check_templating(dash, ex, out):
    ok, names = True, set()
    for where, selector, label in template_refs(dash):
        try:
            refs = metric_refs(selector)
        except PromQLError as e:
            out(f"FAIL {where}: cannot tokenize {selector!r}: {e}")
            ok = False
            continue
        for name, _ in refs:
            if name is None:
                continue
            names.add(name)
            if name not in ex:
                ok = False
                out(f"FAIL {where} reads unknown metric {name}")
            elif label and name not in ex.any_labels and not ex.allowed(name) \
                    and label not in ex.labels[name] and label not in TARGET_LABELS:
                ok = False
                out(f"FAIL {where}: {name} has no label {label!r}")
    return ok, names


def get_json(url, timeout=15):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def prometheus_variables(base, dash, out):
    """The values of each label_values() variable; returns (with values, total)."""
    good, refs = 0, [r for r in template_refs(dash) if r[2]]
    for where, selector, label in refs:
        url = (base.rstrip("/") + f"/api/v1/label/{urllib.parse.quote(label)}/values?"
               + urllib.parse.urlencode({"match[]": selector}))
        try:
            values = get_json(url).get("data") or []
        except (urllib.error.URLError, OSError, ValueError) as e:
            out(f"FAIL {where}: label_values({selector}, {label}) failed: {e}")
            continue
        if not values:
            out(f"FAIL {where}: label_values({selector}, {label}) has no values")
            continue
        good += 1
        out(f"ok   {where}: {len(values)} values ({', '.join(values)})")
    return good, len(refs)


def query_prometheus(base, queries, variables, window, out, timeout=15):
    """Runs each dashboard query as an instant query; returns (with data, total)."""
    good = 0
    for where, expr in queries:
        sub, _ = substitute(expr, variables, window)
        url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": sub})
        try:
            body = get_json(url, timeout)
        except (urllib.error.URLError, OSError, ValueError) as e:
            detail = ""
            if isinstance(e, urllib.error.HTTPError):
                try:
                    detail = json.load(e).get("error", "")
                except ValueError:
                    pass
            out(f"FAIL {where}: query failed: {e} {detail}\n     expr: {sub}")
            continue
        data = body.get("data") or {}
        result = data.get("result")
        if data.get("resultType") == "scalar":
            result = [{"metric": {}, "value": result}]
        if body.get("status") != "success" or not result:
            out(f"FAIL {where}: no series\n     expr: {sub}")
            continue
        good += 1
        first = result[0]
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(first.get("metric", {}).items()))
        value = (first.get("value") or [None, "?"])[1]
        out(f"ok   {where}: {len(result)} series, e.g. {{{labels}}} {value}")
    return good, len(queries)


# --- the self-test -----------------------------------------------------------------

SELF_TEST_SCRAPE = """\
# TYPE http_request_duration_ms histogram
http_request_duration_ms_bucket{method="GET",route="/healthz",le="5"} 1
http_request_duration_ms_bucket{method="GET",route="/healthz",le="+Inf"} 1
http_request_duration_ms_sum{method="GET",route="/healthz"} 3
http_request_duration_ms_count{method="GET",route="/healthz"} 1
# TYPE http_cache_requests_total counter
http_cache_requests_total{result="hit"} 1
# TYPE tepi_worker_queue_depth gauge
tepi_worker_queue_depth{queue_name="uploads"} 0
# TYPE tepi_worker_jobs_active gauge
tepi_worker_jobs_active{queue_name="uploads"} 0
# TYPE tepi_worker_job_lag_seconds histogram
# TYPE tepi_wasm_memory_limit_ratio gauge
tepi_wasm_memory_limit_ratio{instance="isolate_0a1b"} 0.1
# TYPE tepi_metrics_series gauge
tepi_metrics_series 1
# TYPE tepi_metrics_series_limit gauge
tepi_metrics_series_limit 10
"""

# (expression, the names it must yield exactly)
SELF_TEST_VALID = [
    ('sum by (le, route) (rate(http_request_duration_ms_bucket{route!~"/metrics.*"}[5m])) '
     '/ ignoring(le) group_left sum(up)',
     {"http_request_duration_ms_bucket", "up"}),
    ('histogram_quantile(0.95, sum without (instance) (rate(tepi_worker_job_lag_seconds_bucket'
     '{queue_name=~"${queue_name:regex}"}[$__rate_interval] offset 1h)))',
     {"tepi_worker_job_lag_seconds_bucket"}),
    ('label_replace(tepi_wasm_memory_limit_ratio{instance=~"isolate_.*"}, "isolate", "$1", '
     '"instance", "isolate_(.*)")',
     {"tepi_wasm_memory_limit_ratio"}),
    ("{__name__=\"tepi_worker_queue_depth\", queue_name='uploads'} > bool on (queue_name) "
     "group_left() tepi_worker_jobs_active unless absent(up)",
     {"tepi_worker_queue_depth", "tepi_worker_jobs_active", "up"}),
    ("max_over_time(tepi_metrics_series[1h:5m] @ end()) atan2 tepi_metrics_series_limit offset -5m",
     {"tepi_metrics_series", "tepi_metrics_series_limit"}),
    ('count_values("sum(by) fake_metric", http_cache_requests_total{result="hit"}) * 2e-1 '
     '+ 0x1F - Inf # a comment naming not_a_metric',
     {"http_cache_requests_total"}),
    ("sum(rate(http_request_duration_ms_count[$__interval])) / "
     "sum(rate(http_request_duration_ms_sum[${__range}])) and on() vector(1) > NaN",
     {"http_request_duration_ms_count", "http_request_duration_ms_sum"}),
    ("sum(ALERTS{alertstate=\"firing\"}) or sum(tepi:selftest:ratio5m)",
     {"ALERTS", "tepi:selftest:ratio5m"}),
]
SELF_TEST_UNKNOWN = ("sum(rate(tepi_no_such_metric_total[5m])) / sum(tepi_worker_queue_depth_bucket)",
                     {"tepi_no_such_metric_total", "tepi_worker_queue_depth_bucket"})
SELF_TEST_BAD_LABEL = 'tepi_worker_queue_depth{queue="uploads"}'
SELF_TEST_UNPARSEABLE = ["sum(rate(http_requests_total[5m])", "rate(up[5m]) by (job)"]
SELF_TEST_UNDEFINED = 'rate(up{job=~"$no_such_variable"}[5m])'


def self_test(out):
    """Proves the checker finds what it must; returns the failures."""
    problems = []
    variables = {"queue_name": ".+"}
    ex = exported_from([SELF_TEST_SCRAPE], ["tepi:selftest:ratio5m"])

    for expr, expected in SELF_TEST_VALID:
        sub, undefined = substitute(expr, variables, "5m")
        got = metric_names(sub)
        if got != expected:
            problems.append(f"names of {expr!r}: got {sorted(got)}, expected {sorted(expected)}")
        if undefined:
            problems.append(f"{expr!r}: variables reported undefined: {undefined}")
        bad, label_errors, _ = name_problems(sub, ex)
        if bad or label_errors:
            problems.append(f"{expr!r}: reported {bad + label_errors}, expected nothing")

    expr, expected = SELF_TEST_UNKNOWN
    bad, _, _ = name_problems(expr, ex)
    if set(bad) != expected:
        problems.append(f"unknown names of {expr!r}: got {sorted(bad)}, expected {sorted(expected)}")
    _, label_errors, _ = name_problems(SELF_TEST_BAD_LABEL, ex)
    if len(label_errors) != 1 or "'queue'" not in label_errors[0]:
        problems.append(f"the unknown label of {SELF_TEST_BAD_LABEL!r} was not reported: {label_errors}")
    _, undefined = substitute(SELF_TEST_UNDEFINED, variables, "5m")
    if undefined != ["$no_such_variable"]:
        problems.append(f"the undefined variable of {SELF_TEST_UNDEFINED!r} was not reported: {undefined}")

    planted = {
        "templating": {"list": [{"name": "queue_name", "type": "query", "multi": True}]},
        "panels": [
            {"type": "row", "id": 1, "title": "r", "gridPos": {}, "panels": [
                {"id": 2, "title": "ok", "gridPos": {}, "description": "d",
                 "fieldConfig": {"defaults": {"unit": "short"}},
                 "targets": [{"refId": "A", "expr": 'sum(up{job=~"$queue_name"})'}]},
                {"id": 2, "title": "dup", "gridPos": {}, "description": "d",
                 "fieldConfig": {"defaults": {}},
                 "targets": [{"refId": "A", "expr": 'sum(tepi_worker_queue_depth{queue_name="$queue_name"})'}]},
            ]},
        ],
    }
    lint = lint_dashboard(planted)
    expected_lint = ["panel id 2", "'dup' has no unit", "use =~"]
    if len(lint) != len(expected_lint) or not all(any(e in l for l in lint) for e in expected_lint):
        problems.append(f"dashboard lint of a planted dashboard: got {lint}, expected {expected_lint}")
    if [w for w, _ in dashboard_queries(planted)] != ["r / ok [A]", "r / dup [A]"]:
        problems.append(f"nested panels' targets not found: {dashboard_queries(planted)}")

    # One promtool run over good and bad: exactly the bad ones must be named.
    batch = [substitute(e, variables, "5m")[0] for e, _ in SELF_TEST_VALID] + SELF_TEST_UNPARSEABLE
    expected_bad = set(range(len(SELF_TEST_VALID), len(batch)))
    failures = promtool_failures(batch)
    if set(failures) != expected_bad:
        problems.append(f"promtool flagged {sorted(failures)} ({failures}), expected {sorted(expected_bad)}")

    if problems:
        for p in problems:
            out(f"FAIL self-test: {p}")
    else:
        out(f"self-test: ok ({len(SELF_TEST_VALID)} valid expressions yield exactly their names; "
            f"planted unknown names, an unknown label, an undefined variable, dashboard lint "
            f"and {len(SELF_TEST_UNPARSEABLE)} unparseable expressions are caught)")
    return problems


# --- main --------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dashboard", help="Grafana dashboard JSON")
    ap.add_argument("--rules", action="extend", nargs="+", default=[], metavar="FILE",
                    help="rules files or globs (quoted globs are expanded here); may match nothing")
    ap.add_argument("--scrape", action="extend", nargs="+", default=[], metavar="FILE",
                    help="Prometheus exposition texts of the service, files or globs")
    ap.add_argument("--prometheus", help="base URL of a Prometheus to run the dashboard's queries on")
    ap.add_argument("--window", default="1m",
                    help="$__rate_interval, $__interval and $__range for --prometheus (default 1m)")
    ap.add_argument("--allow", action="extend", nargs="+", default=[], metavar="GLOB",
                    help="metric names (globs) exported by something else, e.g. 'prometheus_*'")
    ap.add_argument("--self-test", action="store_true", help="prove the checker, then stop")
    args = ap.parse_args(argv)

    def out(line):
        print(line, flush=True)

    if not shutil.which("promtool"):
        out("promtool is missing (Debian package prometheus)")
        return 2

    if self_test(out):
        return 1
    if args.self_test:
        return 0
    if not args.dashboard or not args.scrape:
        ap.error("--dashboard and --scrape are required (or --self-test)")

    ok = True
    generator = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.dashboard))), "generate.py")
    if os.path.isfile(generator):
        p = subprocess.run([sys.executable, generator, "--check"], capture_output=True, text=True)
        out((p.stdout + p.stderr).strip())
        ok &= p.returncode == 0

    with open(args.dashboard, encoding="utf-8") as f:
        dash = json.load(f)
    for e in lint_dashboard(dash):
        ok = False
        out(f"FAIL dashboard: {e}")

    dq = dashboard_queries(dash)
    rq, records, notes, errors, rule_files = rules_queries(args.rules or [])
    for n in notes:
        out(f"note {n}")
    for e in errors:
        ok = False
        out(f"FAIL rules: {e}")
    try:
        texts, scrape_files = read_scrapes(args.scrape)
    except OSError as e:
        out(f"FAIL scrape: {e}")
        return 1
    ex = exported_from(texts, records)
    ex.allow = list(args.allow)
    variables = dashboard_variables(dash)

    queries = [("dashboard", w, e) for w, e in dq] + [("rules", w, e) for w, e in rq]
    good, names = check(queries, ex, variables, "5m", out)
    ok &= good
    t_ok, t_names = check_templating(dash, ex, out)
    ok &= t_ok
    names |= t_names

    out(f"inputs: {args.dashboard}; {len(rule_files)} rules file(s); "
        f"{len(scrape_files)} scrape file(s) with {len(ex.scraped)} exported names "
        f"(histogram series included), {len(records)} recording rule(s)")
    summary = None
    if ok:
        summary = (f"{len(queries)} expressions ({len(dq)} dashboard, {len(rq)} rules) parse; "
                   f"they read {len(names)} metric names, all exported")
    if args.prometheus:
        v_got, v_total = prometheus_variables(args.prometheus, dash, out)
        got, total = query_prometheus(args.prometheus, dq, variables, args.window, out)
        ok &= got == total and v_got == v_total
        summary = (summary + "; " if summary else "") + f"{got}/{total} panel queries return data"
    if summary:
        out(summary)
    if not ok:
        out("ops-queries: FAILED")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
