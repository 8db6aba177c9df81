#!/usr/bin/env python3
"""The docs test: everything the documentation names exists.

    python3 scripts/docs-check.py                  # the self-test, then the check
    python3 scripts/docs-check.py --quiet          # problems and the counts only
    python3 scripts/docs-check.py --list=paths     # also each mention of a kind
                                                   # (make, paths, links, variables,
                                                   # metrics, route, generated, …)

Reads README.md, console/README.md and docs/**/*.md, and docs/openapi.yaml
for its operations only. CHANGELOG.md is not read: history names things
that no longer exist. The ADRs are held to the same rules as the other
docs: a decision names the paths and variables of the code it decided, and
those should stay true; the few names an ADR uses for what is deliberately
not in the repository (history, other tools' files) are in ELSEWHERE.
Prints one line per problem, `file:line: kind: name (why)`, then the counts,
and exits 1 on any problem. First it runs the checks over the real docs
plus a planted doc with one mistake of each kind, a planted route and
variable that nothing documents, a route table without a documented route
and a non-.PHONY task named like a folder, and fails ("the check would not
catch …") unless every mistake is reported. Standard library only; about a second.

What a doc "mentions" and what "exists" means, kind by kind:

make tasks
    `make X` in a code span (the span starts with `make`, after optional
    `VAR=value` words), in a code block (at a command's start: a line's
    start, after `$ ` or `VAR=value` words, or after `&&`, `||`, `;`, `|`,
    `(`; shell comments dropped), or in prose. In spans and blocks every
    following word is a task (`make X Y`), except `VAR=value` words and
    options; in prose only the first word is, and `make` followed by a word
    of PROSE_MAKE_WORDS ("16 characters make a token") is English. Exists: a
    target of the Makefile (a line `name:`, not `name :=`). A task with a
    placeholder (`make <gate>`) is counted, not checked. And a task the
    docs name, or a gate of GATES, that is also a file or folder at the
    root (`console`, `docs`) must be .PHONY: else make finds it up to date
    and runs nothing.

paths
    Words of code spans (`--flag=path` gives its value) and the targets of
    markdown links. A word is a repository path when it starts with a
    top-level entry of the repository (`scripts/`, `core/`, `wrangler.toml`,
    `.dev.vars.example`, …), with `~/` or a GENERATED entry; or when it has
    a slash and ends in `/` or a file extension of RELATIVE_EXTENSIONS; or
    is a bare file name with such an extension (`routes.rs`; not `.snap`,
    a type). Not paths: words with `://` or `@`; words starting with `/`
    (URL paths: routes, `/console/`) or `$`; media types (`text/plain`) and
    policies (`10/1m`), which have neither a trailing `/` nor an extension.
    Exists: a tracked file (`git ls-files`, plus new files git does not
    ignore) or a folder holding one, or the tail of one, segment by segment:
    the docs name files relative to the folder under discussion
    (`app/routes.rs` and `ops/history.rs` in core/src/, `tests/http.yml` in
    ops/prometheus/, `src/main.ts` in console/). A link's target is resolved
    from the doc's folder and must exist as written; an `#anchor` into a
    markdown doc must be a GitHub slug of one of its headings (lower case,
    punctuation but `-` and `_` dropped, each space a `-`, `-1`, `-2`… for
    repeats). Build outputs, caches and the operators' key files are not
    tracked: a path under a GENERATED entry, or a relative word naming the
    tail of one (`dist/`), is counted, not checked; each entry inside the
    repository must be one git ignores (checked first), so the list cannot
    excuse a tracked path. A path with a placeholder (`<name>`, `{id}`, `*`,
    `…`, `...`, `$X`, a leading `SUMMARY_DIR/`) is a pattern: the folder
    before the placeholder must exist; with none before it, it is skipped.
    ELSEWHERE names the files that are deliberately not here (another
    tool's, or an ADR's history).

variables
    UPPER_SNAKE_CASE names with at least one `_`, anywhere in a code span:
    `METRICS_FLUSH_SECS`, `FUZZ_SECONDS=120`, `${TEPI_CACHE:-…}`. Single
    words (`DB`, `GET`, `CACHE`) never match, nor lower-case error codes and
    metric names, header names (`X-Request-ID`), SQL keywords (single words,
    and in code blocks, which are not read for variables), or a shorthand
    starting with `_` (`_PUBLIC` after `RATE_LIMITER_LOGIN`). Exists: a word
    of a tracked file outside the docs (code, scripts, manifests, the
    Makefile, tests, CI; not CHANGELOG.md, markdown, docs/, lock files or
    this check, whose planted names must stay unknown). A family written
    with a placeholder or a trailing `_` (`RATE_LIMIT_<CLASS>`, `PUSH_MAX_*`,
    `RATE_LIMIT_`; a prefix's first word has two letters or more, so
    `[a-zA-Z_]` is none) needs a word starting with its prefix.
    `SPIN_VARIABLE_X` is Spin's environment form of the variable `x`: `X`
    must be a word of the code. TOOL_VARIABLES lists variables that only
    another tool reads (k6, insta). Conversely, each variable of
    `config::vars::ALL` (core/src/config.rs) needs a row in docs/api.md's
    Configuration table.

metrics
    In code spans and code blocks: words starting with a family Tepi
    exposes (METRIC_PREFIXES: `tepi_`, `http_`), not part of a Rust path,
    an attribute (`#[http_service]`), a format (`%{http_code}`), a label
    set or a file name (`tepi_spin.wasm`); the names after `# HELP` and
    `# TYPE` of an exposition example; recording rules,
    `level:metric:operations` (two colons, not quoted: `"urn:tepi:api"` is
    a CloudEvents source). Exists: a word of core/src, edge/,
    queue-consumer/, ops/ or k6/ (k6's own `http_req_duration`), the name
    or its family without `_bucket`, `_sum` or `_count`; a recording rule:
    a word of ops/prometheus/rules/ (`ratio_rate<w>`: some rule starting
    so). EXAMPLE_METRICS lists what users push in examples (a batch job's,
    the web frontend's): no metric of Tepi's.

routes
    The route table is the snapshot ROUTE_SNAPSHOT (METHOD and PATTERN of
    each row; a pattern ending in `…` takes the rest of the path). Each
    route must be documented three times: a row of docs/api.md's Endpoints
    table, a `### `METHOD PATH`` section of docs/api.md, and its method
    under its path in docs/openapi.yaml; and each row, section and
    operation must name a route (nothing stale). README.md's API table must
    list every route too, and nothing else: it is a summary that merges
    rows (`GET`, `POST` | `/v1/users`; `DELETE /v1/api-keys/{id}`), where
    `…/tail` continues the row's first path at any of its segments
    (`…/runs/{run_id}` after `/v1/workflows/{id}/runs`). Any code span
    `METHOD /path` in any doc must match a route: a concrete value may fill
    a parameter (`PUT /v1/ops/baselines/main`), `?query` is dropped, a
    trailing `…` stands for any rest (`GET /v1/ops/baselines…`); HEAD
    matches GET. OTHER_SERVERS are not the API's routes: the webhook
    receiver's `GET /stats`, and the console's files under `/console`.
    How paths compare: `{x}` and `<x>` are parameters. A rest route
    `/a/{p}…` is written `/a/{p}` (the sections, openapi.yaml, the baselines'
    row) or with the Pushgateway grouping key's repetition,
    `/metrics/job/<job>{/<label>/<value>}`: a path with a `{/…}` group
    matches the rest route whose fixed segments (`/metrics/`) it starts
    with. Any other path matches a route only segment for segment.

An allowlist entry (ELSEWHERE, TOOL_VARIABLES, EXAMPLE_METRICS) that no doc
mentions any more is itself a problem, so the lists stay minimal.
"""

from __future__ import annotations

import bisect
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent

# The docs read. CHANGELOG.md is left out on purpose (see above).
DOC_GLOBS = ("README.md", "console/README.md", "docs/**/*.md")
OPENAPI = "docs/openapi.yaml"
ROUTE_SNAPSHOT = "core/src/app/tests/snapshots/tepi_core__app__tests__snapshots__route_table.snap"
API_DOC = "docs/api.md"
CONFIG = "core/src/config.rs"
README = "README.md"

# Paths that builds, caches, tools and operators create: never tracked.
# Entries inside the repository must be ignored by git (checked at start).
GENERATED = (
    "target/",  # cargo, and the gates' reports (target/k6/, target/e2e/)
    "node_modules/",  # npm ci
    "edge/cloudflare/build/",  # worker-build
    "edge/spin/build/",  # scripts/build-spin.sh
    "edge/spin-console/build/",
    "console/dist/",  # scripts/build-console.sh
    ".wrangler/",  # wrangler dev's state and logs
    ".dev.vars",  # local secrets (scripts/dev-secrets.sh)
    ".wrangler-gates.toml",  # scripts/serve.sh: the gates' wrangler config
    "fuzz/artifacts/",  # cargo-fuzz: a crash's input
    "console/dist/console/app.js",  # scripts/build-console.sh (named bare)
    "console/dist/console/app.css",
    "ops/prometheus/secrets/",  # API keys an operator writes
    "ops/alertmanager/secrets/",
    "~/.cache/tepi",  # scripts/tools.sh (TEPI_CACHE)
    "/usr/bin/",  # Debian packages
    "/tmp/",
)

# Extensions that make a slash-less or relative word a file name.
RELATIVE_EXTENSIONS = (
    ".rs", ".sh", ".py", ".md", ".sql", ".toml", ".yml", ".yaml", ".json",
    ".js", ".ts", ".html", ".css", ".png", ".snap", ".wit", ".txt", ".lock",
)

# `make` + one of these, in prose, is English ("16 characters make a token",
# "every make task", "make would find it up to date").
PROSE_MAKE_WORDS = frozenset(
    "a an the it one many more partial about sure task tasks target targets"
    " would will can could may must should does is finds runs".split()
)

# Names of files that are not this repository's, by design: another tool's
# (a doc names them to say Tepi does without), or history an ADR records.
ELSEWHERE = {
    "runtime-config.toml": "Spin's runtime configuration, which Tepi does not use (ADR 0004)",
    ".spin/": "the state folder of `spin up`, not of the test host (ADR 0004)",
    "k6/bench-seam.js": "ADR 0003's benchmark, since generalised into k6/bench.js",
}

# Variables that other tools read, named by the docs that explain them.
TOOL_VARIABLES = {
    "INSTA_UPDATE": "insta, the snapshot tests' crate",
    "K6_WEB_DASHBOARD_PORT": "k6's web dashboard",
    "K6_WEB_DASHBOARD_PERIOD": "k6's web dashboard",
}

# Metric families Tepi exposes: a backticked word starting so is a metric.
METRIC_PREFIXES = ("tepi_", "http_")

# Metrics a user pushes in the docs' examples: not Tepi's own.
EXAMPLE_METRICS = frozenset({
    "batch_rows_total",  # docs/api.md, docs/ops.md: a batch job's push
    "batch_last_success_timestamp_seconds",  # docs/ops.md: the same push
    "next_requests_total",  # docs/api.md: the web frontend's push (job `web`)
})

# `METHOD /path` spans that are not the API's routes: another server's, or
# the console's files (Workers Static Assets, the tepi-spin-console
# component), whose paths begin so.
OTHER_SERVERS = (
    "GET /stats",  # scripts/webhook-receiver.py
    "/console",  # the console's files (ADR 0013)
)

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
PLACEHOLDER = re.compile(r"<[^>]*>|\{[^}]*\}|\*|…|\.\.\.|\$|^[A-Z][A-Z0-9_]*(?=/)")
SPAN = re.compile(r"(?<!`)(`+)(?!`)((?:[^\n]|\n(?![ \t]*\n))+?)(?<!`)\1(?!`)")
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(\S+)", re.M)
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
VAR = re.compile(r"(?<![A-Za-z0-9_])[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+(?![A-Za-z0-9_<{*…])")
VAR_FAMILY = re.compile(
    r"(?<![A-Za-z0-9_-])([A-Z][A-Z0-9]+(?:_[A-Z0-9]+)*_)(?:<[^>]*>|\{[^}]*\}|\*|…|\.\.\.)?(?![A-Za-z0-9_])"
)
METRIC = re.compile(
    r"(?<![A-Za-z0-9_:./\[{%%$-])((?:%s)[a-z0-9_]*[a-z0-9])(?![A-Za-z0-9_:(]|\.\w)" % "|".join(METRIC_PREFIXES)
)
RECORDING = re.compile(
    r"(?<![A-Za-z0-9_:./\"'-])([a-z_][a-z0-9_]*:[a-z0-9_]+:[a-z0-9_]+)(<[^>]*>)?(?![A-Za-z0-9_:\"']|\.\w)"
)
EXPOSITION = re.compile(r"^\s*#\s*(?:HELP|TYPE)\s+([A-Za-z_:][A-Za-z0-9_:]*)")
ROUTE_SPAN = re.compile(r"^(%s)\s+(/\S*)$" % "|".join(METHODS))
SHELL_OPS = {"&&", "||", ";", "|", "(", "{", "then", "do", "time", "exec", "sudo"}


# --------------------------------------------------------------------- facts


@dataclass
class Facts:
    """What exists: files, targets, words of the code, routes, operations."""

    files: set[str]
    dirs: set[str]
    top: set[str]
    targets: dict[str, int]  # Makefile target, its line
    phony: set[str]
    gates: set[str]
    code_words: set[str]
    metric_words: set[str]
    rule_words: set[str]
    routes: list[tuple[str, str, int]]  # method, pattern, snapshot line
    openapi: list[tuple[str, str, int]]  # method, path, line
    config_vars: list[tuple[str, int]]  # config::vars::ALL, line in config.rs

    @cached_property
    def tails(self) -> set[str]:
        """Every tracked path and folder, and each tail of one."""
        return {"/".join(p.split("/")[i:]) for p in self.files | self.dirs for i in range(p.count("/") + 1)}

    def exists(self, rel: str) -> bool:
        return rel.rstrip("/") in self.tails


def git_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode()
    return sorted({f for f in out.split("\0") if f and os.path.lexists(ROOT / f)})


def words(text: str, pattern: str = r"[A-Za-z0-9_]+") -> set[str]:
    return set(re.findall(pattern, text))


def read(rel: str) -> str:
    try:
        return (ROOT / rel).read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError):
        return ""


def is_doc(rel: str) -> bool:
    return rel.endswith(".md") or rel.startswith("docs/")


def load_facts() -> Facts:
    files = git_files()
    dirs = {str(Path(f).parents[i]) for f in files for i in range(len(Path(f).parents) - 1)}
    top = {f.split("/")[0] for f in files}
    makefile = read("Makefile")
    targets = {m.group(1): makefile.count("\n", 0, m.start()) + 1
               for m in re.finditer(r"^([A-Za-z0-9_./-]+)\s*:(?!=)", makefile, re.M) if m.group(1) != ".PHONY"}
    phony = {w for line in re.findall(r"^\.PHONY\s*:(.*)$", makefile, re.M) for w in line.split()}
    gates = {w for line in re.findall(r"^GATES\s*[:+]?=(.*)$", makefile, re.M) for w in line.split()}
    code_words: set[str] = set()
    metric_words: set[str] = set()
    rule_words: set[str] = set()
    this = {"scripts/docs-check.py", "scripts/docs-check.sh"}
    for rel in files:
        if is_doc(rel) or rel in this or rel.endswith((".lock", "package-lock.json", ".png")):
            continue
        text = read(rel)
        code_words |= words(text)
        if rel.startswith(("core/src/", "edge/", "queue-consumer/", "ops/", "k6/")):
            metric_words |= words(text)
        if rel.startswith("ops/prometheus/rules/"):
            rule_words |= words(text, r"[A-Za-z0-9_:]+")
    return Facts(
        files=set(files), dirs=dirs, top=top, targets=targets, phony=phony, gates=gates,
        code_words=code_words, metric_words=metric_words, rule_words=rule_words,
        routes=parse_routes(read(ROUTE_SNAPSHOT)), openapi=parse_openapi(read(OPENAPI)),
        config_vars=parse_config_vars(read(CONFIG)),
    )


def parse_config_vars(text: str) -> list[tuple[str, int]]:
    """`vars::ALL` of core/src/config.rs: each entry a constant of `vars`
    (`pub const NAME: &str = "NAME"`) or a string literal."""
    consts = dict(re.findall(r'pub const (\w+): &str = "([A-Z0-9_]+)"', text))
    m = re.search(r"pub const ALL: \[&str; \d+\] = \[(.*?)\];", text, re.S)
    if not m:
        return []
    out = []
    for e in re.finditer(r'"([A-Z0-9_]+)"|\b([A-Z][A-Z0-9_]*)\b', m.group(1)):
        name = e.group(1) or consts.get(e.group(2), e.group(2))
        out.append((name, text.count("\n", 0, m.start(1) + e.start()) + 1))
    return out


def parse_routes(text: str) -> list[tuple[str, str, int]]:
    routes = []
    for n, line in enumerate(text.split("\n"), 1):
        parts = line.split()
        if len(parts) >= 2 and parts[0] in METHODS and parts[1].startswith("/"):
            routes.append((parts[0], parts[1], n))
    return routes


def parse_openapi(text: str) -> list[tuple[str, str, int]]:
    ops, path = [], None
    for n, line in enumerate(text.split("\n"), 1):
        if m := re.match(r"^  (/\S*):\s*$", line):
            path = m.group(1)
        elif re.match(r"^\S", line):
            path = None
        elif path and (m := re.match(r"^    (get|put|post|patch|delete|head|options):", line)):
            ops.append((m.group(1).upper(), path, n))
    return ops


def has_extension(word: str) -> bool:
    return word.endswith(RELATIVE_EXTENSIONS)


# --------------------------------------------------------------- the docs


@dataclass
class Doc:
    rel: str
    text: str
    prose: str = ""  # the text with code blocks blanked (lines kept)
    blocks: list[tuple[int, str, list[tuple[int, str]]]] = field(default_factory=list)
    spans: list[tuple[int, str]] = field(default_factory=list)  # line, content
    bare: str = ""  # prose with code spans blanked
    newlines: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        prose, block = [], None
        for n, line in enumerate(self.text.split("\n"), 1):
            m = FENCE.match(line)
            if block is None:
                if m:
                    block = (m.group(2), m.group(3).lower(), n, [])
                    prose.append("")
                else:
                    prose.append(line)
                continue
            if m and m.group(2)[0] == block[0][0] and len(m.group(2)) >= len(block[0]) and not m.group(3):
                self.blocks.append((block[2], block[1], block[3]))
                block = None
            else:
                block[3].append((n, line))
            prose.append("")
        self.prose = "\n".join(prose)
        self.newlines = [i for i, ch in enumerate(self.prose) if ch == "\n"]
        bare = list(self.prose)
        for m in SPAN.finditer(self.prose):
            content = m.group(2)
            if re.search(r"\n\s*\n", content):
                continue
            self.spans.append((self.line_of(m.start()), " ".join(content.split())))
            for i in range(m.start(), m.end()):
                if bare[i] != "\n":
                    bare[i] = " "
        self.bare = "".join(bare)

    def line_of(self, offset: int) -> int:
        return bisect.bisect_left(self.newlines, offset) + 1


def load_docs() -> dict[str, str]:
    docs = {}
    for pattern in DOC_GLOBS:
        for p in sorted(ROOT.glob(pattern)):
            docs[p.relative_to(ROOT).as_posix()] = p.read_text(encoding="utf-8")
    return docs


def slug_set(doc: Doc) -> set[str]:
    """GitHub's heading anchors of a markdown doc."""
    slugs, seen = set(), {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", doc.prose, re.M):
        heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
        s = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        k = seen.get(s, 0)
        seen[s] = k + 1
        slugs.add(s if k == 0 else f"{s}-{k}")
    return slugs


# ------------------------------------------------------------------ checks


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    items: list[tuple[str, str, int, str]] = field(default_factory=list)  # for --list

    def count(self, kind: str, n: int = 1, where: str = "", line: int = 0, name: str = "") -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n
        if name:
            self.items.append((kind, where, line, name))

    def problem(self, where: str, line: int, kind: str, name: str, why: str) -> None:
        self.problems.append(f"{where}:{line}: {kind}: {name} ({why})")


def make_tasks(words_: list[str], prose: bool) -> list[str]:
    tasks = []
    for w in words_:
        if w in SHELL_OPS or w.startswith("#"):
            break
        if "=" in w or w.startswith("-"):
            continue
        tasks.append(w)
        if prose:
            break
    return tasks


def check_make(doc: Doc, facts: Facts, rep: Report) -> None:
    found: list[tuple[int, str]] = []
    for line, span in doc.spans:
        ws = span.split()
        while ws and re.match(r"^[A-Z_][A-Z0-9_]*=", ws[0]):
            ws = ws[1:]
        if len(ws) > 1 and ws[0] == "make":
            found += [(line, t) for t in make_tasks(ws[1:], False)]
    for _, _, lines in doc.blocks:
        for n, text in lines:
            text = re.sub(r"(^|\s)#.*", "", text)
            ws = re.findall(r"&&|\|\||[;|(]|[^\s;|(&]+", text)
            for i, w in enumerate(ws):
                if w != "make":
                    continue
                before = [x for x in ws[:i] if not re.match(r"^[A-Z_][A-Z0-9_]*=", x)]
                if not before or before[-1] in SHELL_OPS or before[-1] == "$":
                    found += [(n, t) for t in make_tasks(ws[i + 1:], False)]
    for m in re.finditer(r"(?<![\w-])make\s+([a-z][a-z0-9-]*)(?![\w-])", doc.bare):
        if m.group(1) not in PROSE_MAKE_WORDS:
            found.append((doc.line_of(m.start()), m.group(1)))
    for line, task in found:
        if PLACEHOLDER.search(task):
            rep.count("make placeholders", 1, doc.rel, line, task)
            continue
        rep.count("make tasks", 1, doc.rel, line, task)
        if task not in facts.targets:
            rep.problem(doc.rel, line, "make", f"make {task}", "no such target in the Makefile")


def check_phony(facts: Facts, rep: Report, mentioned: set[str]) -> None:
    """A task named like a file or folder at the root (`console`, `docs`)
    that is not .PHONY never runs: make finds it up to date."""
    for task in sorted((mentioned | facts.gates) & set(facts.targets)):
        if task in facts.top and task not in facts.phony:
            why = f"{task} exists at the root and the target is not .PHONY: make finds it up to date, runs nothing"
            rep.problem("Makefile", facts.targets[task], "make", task, why)


def generated_prefix(path: str) -> bool:
    """Under a GENERATED entry (`target/k6/smoke.json`, `.dev.vars`)."""
    return any(path == g.rstrip("/") or path.startswith(g.rstrip("/") + "/") for g in GENERATED)


def is_generated(path: str) -> bool:
    """Under a GENERATED entry, or a relative word naming one's tail
    (`dist/` for console/dist/, `app.js`)."""
    if generated_prefix(path):
        return True
    tail = "/" + path.rstrip("/")
    return not path.startswith(("/", "~")) and any(("/" + g.rstrip("/")).endswith(tail) for g in GENERATED)


def path_words(span: str) -> list[str]:
    out = []
    for w in span.split():
        if "=" in w:
            w = w.split("=", 1)[1]
        w = w.strip("\"'(),;[]")
        w = re.sub(r":\d+$", "", w.rstrip(":."))
        if w:
            out.append(w)
    return out


def classify_path(word: str, facts: Facts) -> str | None:
    """'root', 'relative', 'home' or None (not a repository path)."""
    if "://" in word or "@" in word:
        return None
    if word.startswith("~/"):
        return "home"
    if word.startswith(("/", "$", "#", "~")):
        # URL paths (routes, /console/), variables, anchors; but /usr/bin/…
        return "root" if generated_prefix(word) else None
    if word.split("/")[0] in facts.top or generated_prefix(word):
        return "root"
    if "/" in word and (word.endswith("/") or has_extension(word)) and re.match(r"^[\w.<{*-]", word):
        return "relative"
    if "/" not in word and has_extension(word) and re.match(r"^[\w.-]*\w\.\w+$", word):
        return "relative"
    return None


def check_path(where: str, line: int, word: str, kind: str, facts: Facts, rep: Report,
               seen: set[str]) -> None:
    if word in ELSEWHERE:
        seen.add(word)
        rep.count("paths elsewhere", 1, where, line, word)
        return
    if kind == "home" or is_generated(word):
        rep.count("generated paths", 1, where, line, word)
        if not is_generated(word):
            rep.problem(where, line, "path", word, "outside the repository and not a GENERATED path")
        return
    m = PLACEHOLDER.search(word)
    if m:
        prefix = word[: m.start()]
        prefix = prefix[: prefix.rfind("/") + 1] if "/" in prefix else ""
        if not prefix.strip("/"):
            rep.count("path patterns skipped", 1, where, line, word)
            return
        rep.count("path patterns", 1, where, line, word)
        word = prefix
    else:
        rep.count("paths", 1, where, line, word)
    if not facts.exists(word):
        rep.problem(where, line, "path", word, "no tracked file or folder is or ends with it")


def check_paths(doc: Doc, docs: dict[str, str], facts: Facts, rep: Report, slugs: dict[str, set[str]],
                seen: set[str]) -> None:
    for line, span in doc.spans:
        if ROUTE_SPAN.match(span):
            continue
        for w in path_words(span):
            kind = classify_path(w, facts)
            if kind:
                check_path(doc.rel, line, w, kind, facts, rep, seen)
    targets = [(doc.line_of(m.start()), m.group(1)) for m in LINK.finditer(doc.bare)]
    targets += [(doc.line_of(m.start()), m.group(1)) for m in REF_LINK.finditer(doc.bare)]
    base = os.path.dirname(doc.rel)
    for line, target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            rep.count("external links", 1, doc.rel, line, target)
            continue
        path, _, anchor = unquote(target).partition("#")
        rel = os.path.normpath(os.path.join(base, path)) if path else doc.rel
        rep.count("links", 1, doc.rel, line, target)
        if path and rel not in facts.files and rel not in facts.dirs and rel not in docs:
            rep.problem(doc.rel, line, "link", target, f"{rel} does not exist")
            continue
        if anchor and rel.endswith(".md"):
            if rel not in slugs:
                slugs[rel] = slug_set(Doc(rel, read(rel)))
            if anchor not in slugs[rel]:
                rep.problem(doc.rel, line, "link", target, f"no heading of {rel} has the anchor #{anchor}")


def check_variables(doc: Doc, facts: Facts, rep: Report, seen: set[str]) -> None:
    for line, span in doc.spans:
        for m in VAR.finditer(span):
            name = m.group(0)
            rep.count("variables", 1, doc.rel, line, name)
            if name in TOOL_VARIABLES:
                seen.add(name)
            elif name.startswith("SPIN_VARIABLE_"):
                rest = name[len("SPIN_VARIABLE_"):]
                if rest not in facts.code_words and rest.lower() not in facts.code_words:
                    why = f"Spin variable {rest.lower()} is not in the code"
                    rep.problem(doc.rel, line, "variable", name, why)
            elif name not in facts.code_words:
                rep.problem(doc.rel, line, "variable", name, "not in any tracked file outside the docs")
        for m in VAR_FAMILY.finditer(span):
            prefix = m.group(1)
            rep.count("variables", 1, doc.rel, line, m.group(0))
            if not any(w.startswith(prefix) for w in facts.code_words):
                why = f"no variable in the code starts with {prefix}"
                rep.problem(doc.rel, line, "variable", m.group(0), why)


def metric_exists(name: str, facts: Facts) -> bool:
    family = re.sub(r"_(bucket|sum|count)$", "", name)
    return name in facts.metric_words or family in facts.metric_words


def check_metrics(doc: Doc, facts: Facts, rep: Report, seen: set[str]) -> None:
    found: list[tuple[int, str, bool]] = []
    for line, span in doc.spans:
        found += [(line, m.group(1), False) for m in METRIC.finditer(span)]
        found += [(line, m.group(1), bool(m.group(2))) for m in RECORDING.finditer(span)]
    for _, _, lines in doc.blocks:
        for n, text in lines:
            found += [(n, m.group(1), False) for m in METRIC.finditer(text)]
            found += [(n, m.group(1), bool(m.group(2))) for m in RECORDING.finditer(text)]
            if m := EXPOSITION.match(text):
                found.append((n, m.group(1), False))
    for line, name, open_ in sorted(set(found)):
        if name in EXAMPLE_METRICS:
            seen.add(name)
            rep.count("example metrics", 1, doc.rel, line, name)
            continue
        rep.count("metrics", 1, doc.rel, line, name)
        if name.count(":") == 2:
            # `tepi:slo_latency_slow:ratio_rate<w>`: a family of rules
            family = open_ and any(w.startswith(name) for w in facts.rule_words)
            if not (name in facts.rule_words or family):
                rep.problem(doc.rel, line, "metric", name, "no such recording rule in ops/prometheus/rules/")
        elif not metric_exists(name, facts):
            rep.problem(doc.rel, line, "metric", name, "not in core/src, edge/, queue-consumer/, ops/ or k6/")


# ------------------------------------------------------------------ routes


def segments(path: str) -> tuple[list[str], bool]:
    """A doc path's segments, parameters as '{}', and whether it repeats."""
    path = path.split("?")[0]
    group = bool(re.search(r"\{/", path))
    path = re.sub(r"\{/.*$", "", path)
    segs = [s for s in path.strip("/").split("/") if s != ""] if path.strip("/") else []
    return ["{}" if re.fullmatch(r"<[^>]*>|\{[^}]*\}", s) else s for s in segs], group


def route_matches(pattern: str, doc_path: str, concrete: bool = False) -> bool:
    """Whether a doc's path names the route pattern (see the docstring)."""
    rest = pattern.endswith("…")
    r, _ = segments(pattern.rstrip("…"))
    d, group = segments(doc_path)

    def seg_ok(rs: str, ds: str) -> bool:
        return rs == ds or (rs == "{}" and (ds == "{}" or (concrete and ds not in ("", "…"))))

    if not rest:
        return not group and len(d) == len(r) and all(map(seg_ok, r, d))
    fixed = r[:-1]
    if len(d) < len(fixed) or not all(map(seg_ok, fixed, d[: len(fixed)])):
        return False
    tail = d[len(fixed):]
    if group:
        return True
    if concrete:
        return len(tail) >= 1
    return tail == ["{}"]


def table_after(doc: Doc, heading: str) -> list[tuple[int, list[str]]]:
    """The rows (line, cells) of the first table under a heading."""
    lines = doc.prose.split("\n")
    rows, inside, seen_table = [], False, False
    for n, line in enumerate(lines, 1):
        if re.match(r"^#{1,6}\s", line):
            if inside and seen_table:
                break
            inside = line.strip("# ").strip() == heading
            continue
        if not inside:
            continue
        if line.startswith("|"):
            seen_table = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append((n, cells))
        elif seen_table:
            break
    return rows[1:]  # without the header row


Row = tuple[int, str, list[str], str]  # line, method, the paths it may mean, as written


def readme_rows(line: int, cells: list[str]) -> list[Row]:
    """README's merged rows: `GET`, `POST` | `/a`; `DELETE /a/{id}`; `…/b`."""
    default = re.findall(r"`(%s)`" % "|".join(METHODS), cells[0])
    rows, first = [], None
    for part in cells[1].split(";"):
        methods, paths = [], []
        for span in re.findall(r"`([^`]+)`", part):
            bits = span.split()
            while bits and bits[0] in METHODS:
                methods.append(bits.pop(0))
            paths += [b for b in bits if b.startswith(("/", "…"))]
        for p in paths:
            first = first or p
            cands = [p]
            if p.startswith("…"):  # continues the row's first path, at any segment
                base = first.split("?")[0].split("/")
                cands = ["/".join(base[:i]) + p[1:] for i in range(2, len(base) + 1)]
            rows += [(line, m, cands, p) for m in (methods or default)]
    return rows


def names_route(method: str, pattern: str, row: Row) -> bool:
    return row[1] == method and any(route_matches(pattern, c) for c in row[2])


def check_routes(docs: dict[str, Doc], facts: Facts, rep: Report) -> None:
    api, readme = docs.get(API_DOC), docs.get(README)
    routes = facts.routes
    rep.count("routes", len(routes))
    sources: list[tuple[str, list[Row], str, str]] = []  # where, rows, a row is, missing
    if api:
        table = [(n, c[0].strip("`"), [c[1].strip("`")], c[1].strip("`"))
                 for n, c in table_after(api, "Endpoints") if len(c) >= 2]
        heading = re.compile(r"^###\s+`(%s)\s+(/\S*)`\s*$" % "|".join(METHODS))
        sections = [(n, m.group(1), [m.group(2)], m.group(2))
                    for n, line in enumerate(api.prose.split("\n"), 1) if (m := heading.match(line))]
        sources += [
            (API_DOC, table, "a row of the Endpoints table", f"no row of {API_DOC}'s Endpoints table"),
            (API_DOC, sections, "a ### section", f"no ### section in {API_DOC}"),
        ]
    ops = [(n, m, [p], p) for m, p, n in facts.openapi]
    sources.append((OPENAPI, ops, "an operation", f"no operation in {OPENAPI}"))
    if readme and (rows := table_after(readme, "API")):
        pairs = [r for n, cells in rows if len(cells) >= 2 for r in readme_rows(n, cells)]
        sources.append((README, pairs, "a row of the API table", f"no row of {README}'s API table"))
    for where, rows, row_is, missing in sources:
        for row in rows:
            if not any(names_route(m, p, row) for m, p, _ in routes):
                why = f"{row_is}, but no route of the route table"
                rep.problem(where, row[0], "route", f"{row[1]} {row[3]}", why)
        for method, pattern, line in routes:
            if not any(names_route(method, pattern, row) for row in rows):
                why = f"not documented: {missing}"
                rep.problem(ROUTE_SNAPSHOT, line, "route", f"{method} {pattern}", why)
    others = tuple(o for o in OTHER_SERVERS if o.startswith("/"))
    for doc in docs.values():
        for line, span in doc.spans:
            if not (m := ROUTE_SPAN.match(span)):
                continue
            method, path = m.group(1), m.group(2).split("?")[0].rstrip(".,")
            rep.count("route mentions", 1, doc.rel, line, f"{method} {path}")
            if f"{method} {path}" in OTHER_SERVERS or path.startswith(others):
                continue
            # HEAD answers as GET; every route's path answers OPTIONS
            methods = {"HEAD": ("HEAD", "GET"), "OPTIONS": METHODS}.get(method, (method,))
            if path.endswith("…"):  # `GET /v1/ops/baselines…`, `DELETE /metrics/job/…`
                stem = path[:-1]
                ok = any(rp.startswith(stem) or route_matches(rp, stem.rstrip("/") + "/{x}", concrete=True)
                         for rm, rp, _ in routes if rm in methods)
            else:
                ok = any(route_matches(rp, path, concrete=True) for rm, rp, _ in routes if rm in methods)
            if not ok:
                rep.problem(doc.rel, line, "route", f"{method} {path}", "no route of the route table matches")


def check_config(docs: dict[str, Doc], facts: Facts, rep: Report) -> None:
    """Conversely: every variable the core reads has a row in docs/api.md's
    Configuration table."""
    api = docs.get(API_DOC)
    rows = {c[0].strip("`") for _, c in table_after(api, "Configuration")} if api else set()
    for name, line in facts.config_vars:
        rep.count("configuration variables", 1, CONFIG, line, name)
        if name not in rows:
            why = f"read by the core, but no row of {API_DOC}'s Configuration table"
            rep.problem(CONFIG, line, "variable", name, why)


# -------------------------------------------------------------------- main


def run(texts: dict[str, str], facts: Facts) -> Report:
    rep = Report()
    docs = {rel: Doc(rel, text) for rel, text in texts.items()}
    slugs = {rel: slug_set(doc) for rel, doc in docs.items()}
    seen: set[str] = set()
    for doc in docs.values():
        check_make(doc, facts, rep)
    check_phony(facts, rep, {name for kind, _, _, name in rep.items if kind == "make tasks"})
    for doc in docs.values():
        check_paths(doc, texts, facts, rep, slugs, seen)
        check_variables(doc, facts, rep, seen)
        check_metrics(doc, facts, rep, seen)
    check_routes(docs, facts, rep)
    check_config(docs, facts, rep)
    # the allowlists stay minimal: an entry no doc needs any more goes
    for listed, kind in ((EXAMPLE_METRICS, "metric"), (ELSEWHERE, "path"), (TOOL_VARIABLES, "variable")):
        for name in sorted(set(listed) - seen):
            why = "allowlisted here, but no doc mentions it any more"
            rep.problem("scripts/docs-check.py", 1, kind, name, why)
    return rep


PLANTED = """# Planted

Run `make no-such-task`, then make smoke-test; see `scripts/no-such-script.sh`,
[the runbook](ops.md#no-such-anchor) and [gone](no-such.md). Set `TEPI_NO_SUCH_VAR`;
watch `tepi_no_such_metric_total` and `tepi:no_such:rate5m`; call `GET /v1/no-such-route`.
"""


def self_test(facts: Facts, texts: dict[str, str]) -> int:
    """The check must report each planted mistake, or it proves nothing:
    a doc with one mistake of each kind, a route and a configuration
    variable nothing documents, and a route the docs list that is gone."""
    planted = run(
        texts | {"docs/planted.md": PLANTED},
        replace(
            facts,
            routes=facts.routes + [("GET", "/v1/no-such-route/{id}", 999)],
            config_vars=facts.config_vars + [("TEPI_UNDOCUMENTED", 998)],
        ),
    ).problems
    gone = run(texts, replace(facts, routes=[r for r in facts.routes if r[1] != "/healthz"])).problems
    phony = run(texts, replace(facts, top=facts.top | {"dev"}, phony=facts.phony - {"dev"})).problems
    expected = {
        "a make task that is no target": (planted, "docs/planted.md:3: make: make no-such-task "),
        "a make task in prose": (planted, "docs/planted.md:3: make: make smoke-test "),
        "a missing path": (planted, "docs/planted.md:3: path: scripts/no-such-script.sh "),
        "a broken anchor": (planted, "docs/planted.md:4: link: ops.md#no-such-anchor "),
        "a link to a missing file": (planted, "docs/planted.md:4: link: no-such.md "),
        "an unknown variable": (planted, "docs/planted.md:4: variable: TEPI_NO_SUCH_VAR "),
        "an unknown metric": (planted, "docs/planted.md:5: metric: tepi_no_such_metric_total "),
        "an unknown recording rule": (planted, "docs/planted.md:5: metric: tepi:no_such:rate5m "),
        "a route mention that matches no route": (planted, "docs/planted.md:5: route: GET /v1/no-such-route "),
        "an undocumented route": (
            planted, f"{ROUTE_SNAPSHOT}:999: route: GET /v1/no-such-route/{{id}} (not documented: no row of {API_DOC}'s"
        ),
        "an undocumented configuration variable": (planted, f"{CONFIG}:998: variable: TEPI_UNDOCUMENTED "),
        "a documented route that is gone": (gone, f"{API_DOC}:*: route: GET /healthz (a row of the Endpoints table, but no route"),
        "a task that make finds up to date": (phony, "Makefile:*: make: dev (dev exists at the root"),
        "a README row of a route that is gone": (gone, f"{README}:*: route: GET /healthz (a row of the API table, but no route"),
    }

    def reported(problems: list[str], start: str) -> bool:
        pattern = re.compile(re.escape(start).replace(r":\*:", r":\d+:"))
        return any(pattern.match(p) for p in problems)

    missed = [what for what, (problems, start) in expected.items() if not reported(problems, start)]
    if missed:
        sys.exit("docs-check: the check would not catch " + ", ".join(missed))
    return len(expected)


def check_generated(facts: Facts) -> None:
    """Each GENERATED entry inside the repository is one git ignores (a
    folder: what it holds), so the list cannot excuse a tracked path."""
    inside = [g + "x" if g.endswith("/") else g for g in GENERATED if not g.startswith(("/", "~"))]
    out = subprocess.run(
        ["git", "check-ignore", "--no-index", *inside], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    if missing := sorted(set(inside) - set(out)):
        sys.exit(f"docs-check: GENERATED lists paths git does not ignore: {', '.join(missing)}")


def main() -> int:
    quiet = "--quiet" in sys.argv[1:]
    listing = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--list=")]
    facts = load_facts()
    for what, got in (("Makefile targets", facts.targets), (f"routes in {ROUTE_SNAPSHOT}", facts.routes),
                      (f"operations in {OPENAPI}", facts.openapi), (f"vars::ALL in {CONFIG}", facts.config_vars)):
        if not got:
            sys.exit(f"docs-check: found no {what}: the check would prove nothing")
    check_generated(facts)
    texts = load_docs()
    caught = self_test(facts, texts)
    rep = run(texts, facts)
    for kind, where, line, name in rep.items:
        if any(kind.startswith(k) for k in listing):
            print(f"{where}:{line}: {kind}: {name}")
    for p in rep.problems:
        print(p)
    c = rep.counts
    if not quiet:
        print(f"self-test: each of {caught} planted mistakes reported")
        print(
            f"also: {c.get('route mentions', 0)} `METHOD /path` mentions matched, "
            f"{c.get('configuration variables', 0)} configuration variables each with a row in {API_DOC}; "
            f"not checked: {c.get('generated paths', 0)} generated paths, {c.get('path patterns skipped', 0)} "
            f"patterns without a fixed folder, {c.get('paths elsewhere', 0)} other tools' files, "
            f"{c.get('external links', 0)} external links, {c.get('make placeholders', 0)} `make <placeholder>`, "
            f"{c.get('example metrics', 0)} pushed example metrics"
        )
    print(
        f"checked {c.get('paths', 0) + c.get('path patterns', 0)} paths, {c.get('links', 0)} links, "
        f"{c.get('make tasks', 0)} make tasks, {c.get('variables', 0)} variables, {c.get('metrics', 0)} metrics, "
        f"{c.get('routes', 0)} routes in {len(texts)} docs: "
        f"{len(rep.problems)} problem{'' if len(rep.problems) == 1 else 's'}"
    )
    return 1 if rep.problems else 0


if __name__ == "__main__":
    sys.exit(main())
