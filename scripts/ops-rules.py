#!/usr/bin/env python3
"""Static checks of Tepi's alerting rules, for scripts/ops-rules.sh.

For every alert rule in ops/prometheus/rules/*.yml:
  - labels: `severity` is critical or warning;
  - `for:` of at least a minute;
  - annotations: `summary`, `description` and `runbook_url`, the URL being
    RUNBOOK_BASE + the GitHub anchor of a `###` heading under "## Runbooks"
    in docs/ops.md named after the alert;
  - ops/prometheus/tests/*.yml has a firing case (an alert_rule_test whose
    exp_alerts holds an alert with the rule's labels, and summary,
    description and runbook_url among its exp_annotations) and a silent case
    (an alert_rule_test of that alert with `exp_alerts: []`).
Also: every rule file is loaded by at least one test file.

promtool runs the tests (scripts/ops-rules.sh); each test file it failed is
passed as --failed FILE=OUTPUT, OUTPUT being promtool's report: the cases it
names (`alertname: X, time: …` and `exp:[]` for a silent one) are reported
as failed, or every case in FILE when the report names none and is not about
recording-rule (`expr:`) cases only.

Prints one line per alert name, then a last line with the figure:
  N alerts (R rules), M recording rules, T rule test cases
Exits 1 when anything is missing.
"""
import argparse
import re
import sys
from pathlib import Path

import yaml

RUNBOOK_BASE = "https://git.example.com/tepi/blob/main/docs/ops.md#"
SEVERITIES = ("critical", "warning")
ANNOTATIONS = ("summary", "description", "runbook_url")


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading (before de-duplication)."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(markdown):
    """(level, text) of each heading outside fenced code blocks."""
    out, fence = [], None
    for line in markdown.splitlines():
        m = re.match(r"^\s*(```|~~~)", line)
        if m:
            fence = None if fence == m.group(1) else (fence or m.group(1))
            continue
        if fence:
            continue
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            out.append((len(m.group(1)), m.group(2)))
    return out


def runbook_anchors(markdown):
    """Anchors of the `###` headings under `## Runbooks`, and of all headings."""
    every, runbooks, seen, section = set(), set(), {}, None
    for level, text in headings(markdown):
        base = github_anchor(text)
        n = seen.get(base, 0)
        seen[base] = n + 1
        anchor = base if n == 0 else f"{base}-{n}"
        every.add(anchor)
        if level <= 2:
            section = text
        elif level == 3 and section == "Runbooks":
            runbooks.add(anchor)
    return runbooks, every


def duration_seconds(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", str(text))
    if not parts or "".join(a + b for a, b in parts) != str(text):
        return None
    return sum(int(a) * units[b] for a, b in parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", required=True, type=Path)
    ap.add_argument("--tests", required=True, type=Path)
    ap.add_argument("--docs", required=True, type=Path)
    ap.add_argument("--failed", action="append", default=[],
                    help="FILE=OUTPUT: a test file promtool failed, and its report")
    args = ap.parse_args()

    problems = []
    # test file -> {(alert name, "firing" or "silent")} of its failed cases,
    # or None: all of them.
    failed = {}
    for item in args.failed:
        file, _, output = item.partition("=")
        report = Path(output).read_text(errors="replace") if output else ""
        named = {(m.group(1), "silent" if m.group(2) else "firing")
                 for m in re.finditer(r"alertname: (\S+?), time: [^\n]*\n\s*exp:(\[\])?", report)}
        failed[Path(file).resolve()] = named if named or "expr: " in report else None

    # Rules.
    alerts, records = [], 0
    rule_files = sorted(args.rules.glob("*.yml"))
    for path in rule_files:
        doc = yaml.safe_load(path.read_text()) or {}
        for group in doc.get("groups") or []:
            for rule in group.get("rules") or []:
                if "record" in rule:
                    records += 1
                elif "alert" in rule:
                    alerts.append({**rule, "_file": path.name})
    if not alerts:
        problems.append(f"no alert rules in {args.rules}")

    runbooks, every_anchor = runbook_anchors(args.docs.read_text())

    # Tests: each alert_rule_test, with the file it is in.
    cases = []  # (file, alertname, exp_alerts)
    test_cases = 0
    loaded = set()
    for path in sorted(args.tests.glob("*.yml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for rf in doc.get("rule_files") or []:
            loaded.add((path.parent / rf).resolve())
        for group in doc.get("tests") or []:
            for t in group.get("alert_rule_test") or []:
                cases.append((path, t.get("alertname"), t.get("exp_alerts") or []))
                test_cases += 1
            test_cases += len(group.get("promql_expr_test") or [])
    for path in rule_files:
        if path.resolve() not in loaded:
            problems.append(f"{path.name}: no test file loads it (rule_files)")

    # Per alert rule.
    by_name = {}
    for rule in alerts:
        by_name.setdefault(rule["alert"], []).append(rule)
    lines = []
    for name, rules in by_name.items():
        firing_files, silent_files, firing_ok = set(), set(), 0
        descr = []
        for rule in rules:
            where = f"{rule['_file']}: {name}"
            labels = {k: str(v) for k, v in (rule.get("labels") or {}).items()}
            annotations = rule.get("annotations") or {}
            sev = labels.get("severity")
            if sev not in SEVERITIES:
                problems.append(f"{where}: severity {sev!r} is not one of {', '.join(SEVERITIES)}")
            secs = duration_seconds(rule.get("for", ""))
            if secs is None or secs < 60:
                problems.append(f"{where}: `for` is {rule.get('for')!r}, not a duration of a minute or more")
            for key in ANNOTATIONS:
                if not str(annotations.get(key, "")).strip():
                    problems.append(f"{where}: no `{key}` annotation")
            url = str(annotations.get("runbook_url", ""))
            anchor = url[len(RUNBOOK_BASE):] if url.startswith(RUNBOOK_BASE) else None
            if url and anchor is None:
                problems.append(f"{where}: runbook_url {url} does not start with {RUNBOOK_BASE}")
            elif url:
                if anchor != github_anchor(name):
                    problems.append(f"{where}: runbook_url anchor #{anchor} is not #{github_anchor(name)}")
                if anchor not in every_anchor:
                    problems.append(f"{where}: runbook_url anchor #{anchor} is no heading of {args.docs}")
                elif anchor not in runbooks:
                    problems.append(f"{where}: #{anchor} is not a `###` heading under `## Runbooks` in {args.docs}")
            descr.append(" ".join(labels[k] for k in sorted(labels) if k != "alertname") + f", for {rule.get('for')}")

            # A firing case with this rule's labels and the three annotations.
            found = False
            for path, alertname, exp in cases:
                if alertname != name:
                    continue
                for a in exp:
                    got = {k: str(v) for k, v in (a.get("exp_labels") or {}).items()}
                    ann = a.get("exp_annotations") or {}
                    if all(got.get(k) == v for k, v in labels.items()) and all(k in ann for k in ANNOTATIONS):
                        found = True
                        firing_files.add(path)
            if found:
                firing_ok += 1
            else:
                problems.append(f"{where} {labels}: no test case expects it to fire with these labels "
                                "(exp_labels, and exp_annotations with summary, description, runbook_url)")
        for path, alertname, exp in cases:
            if alertname == name and not exp:
                silent_files.add(path)
        if not silent_files:
            problems.append(f"{name}: no test case expects it silent (exp_alerts: [])")

        def verdict(ok, files, what):
            if not ok:
                return f"{what} MISSING"
            kind = what.split()[0]
            bad = sorted(f.name for f in files if f.resolve() in failed
                         and (failed[f.resolve()] is None or (name, kind) in failed[f.resolve()]))
            return f"{what} FAILED ({', '.join(bad)})" if bad else f"{what} ok"

        firing = verdict(firing_ok == len(rules), firing_files, "firing case")
        if len(rules) > 1:
            firing += f" ({firing_ok}/{len(rules)} rules)"
        silent = verdict(bool(silent_files), silent_files, "silent case")
        if "FAILED" in firing + silent:
            problems.append(f"{name}: promtool failed a test file with its cases")
        lines.append(f"  {name} [{'; '.join(descr)}]: {firing}, {silent}")

    print("\n".join(lines))
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    print(f"{len(by_name)} alerts ({len(alerts)} rules), {records} recording rules, {test_cases} rule test cases")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
