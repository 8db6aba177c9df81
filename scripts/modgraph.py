#!/usr/bin/env python3
"""The import graph between tepi-core's top-level modules, and its cycles.

A top-level module is `core/src/NAME.rs` or `core/src/NAME/`. An arrow
A -> B is any path into B from a file of A: `crate::B…`, a `crate::{B, …}`
group, `super::…` that climbs out of A into B, or `crate::Name` where
`lib.rs` re-exports `Name` from B. Paths in `use` lines and inline in code
count alike. A glob of the crate root (`crate::*`) or renaming the crate
(`crate as x`) would hide arrows, so they fail the check. Test code does
not count: files named `tests.rs` or under a `tests/` folder, the `testing`
module, and every item marked `#[cfg(test)]`.

    modgraph.py [SRC]             fail (exit 1) when the graph has a cycle
    modgraph.py --report [SRC]    also print every arrow and the layers
    modgraph.py --self-test       prove the check fails on planted cycles

Used by scripts/guards.sh; docs/ARCHITECTURE.md says which way arrows run.
"""

import os
import re
import shutil
import sys
import tempfile

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
TEST_ONLY = {"testing"}


def top_level_modules(src):
    mods = {}
    for entry in sorted(os.listdir(src)):
        path = os.path.join(src, entry)
        if entry in ("lib.rs", "main.rs"):
            continue
        if entry.endswith(".rs") and os.path.isfile(path):
            mods.setdefault(entry[:-3], []).append(path)
        elif os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if d != "tests"]
                for f in files:
                    if f.endswith(".rs") and f != "tests.rs":
                        mods.setdefault(entry, []).append(os.path.join(root, f))
    return {m: files for m, files in mods.items() if m not in TEST_ONLY}


def module_path(src, path):
    """`core/src/jobs/drain.rs` -> ["jobs", "drain"]; `jobs/mod.rs` -> ["jobs"]."""
    parts = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


def code_only(text):
    """The text with comments, strings and char literals blanked out."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            out.append(" ")
        elif re.match(r'b?r#*"', text[i:i + 260]) and (i == 0 or not re.match(r"[A-Za-z0-9_]", text[i - 1])):
            m = re.match(r'b?r(#*)"', text[i:])
            close = '"' + m.group(1)
            j = text.find(close, i + m.end())
            i = n if j < 0 else j + len(close)
            out.append('""')
        elif c == '"' or (c == "b" and text.startswith('b"', i) and (i == 0 or not re.match(r"[A-Za-z0-9_]", text[i - 1]))):
            i = i + 1 if c == '"' else i + 2
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'":
            # A char literal ('x', '\n', '\u{1f}') or a lifetime ('a).
            m = re.match(r"'(\\(?:u\{[0-9A-Fa-f]+\}|x[0-9A-Fa-f]{2}|.)|[^\\'])'", text[i:i + 12])
            if m:
                i += m.end()
                out.append("' '")
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def strip_tests(code):
    """Removes each item marked #[cfg(test)]: up to its `;` or closing brace."""
    while True:
        marker = re.search(r"#\[cfg\(test\)\]", code)
        if not marker:
            return code
        depth, end = 0, len(code)
        for i in range(marker.end(), len(code)):
            ch = code[i]
            if ch in "{([":
                depth += 1
            elif ch in "})]":
                depth -= 1
                if depth == 0 and ch == "}":
                    end = i + 1
                    break
            elif ch == ";" and depth == 0:
                end = i + 1
                break
        code = code[: marker.start()] + code[end:]


def group_heads(code, start):
    """Top-level names of the `{...}` group opening at code[start]."""
    depth, item, heads = 0, "", []
    for ch in code[start:]:
        if ch == "{":
            depth += 1
            if depth == 1:
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                heads.append(item)
                break
        if depth == 1 and ch == ",":
            heads.append(item)
            item = ""
        elif depth >= 1:
            item += ch
    names = []
    for head in heads:
        m = re.match(r"\s*(" + IDENT + r"|\*)", head)
        if m:
            names.append(m.group(1))
    return names


def inline_modules(code):
    """(start, end, name) of each `mod name { … }` written inline."""
    spans = []
    for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", code):
        depth = 0
        for i in range(m.end() - 1, len(code)):
            if code[i] == "{":
                depth += 1
            elif code[i] == "}":
                depth -= 1
                if depth == 0:
                    spans.append((m.end(), i, m.group(1)))
                    break
    return spans


def references(code, file_path):
    """(first segments below the crate root, problems) of the paths in `code`,
    a file whose module path is `file_path`."""
    names, problems = set(), []
    spans = inline_modules(code)
    for m in re.finditer(r"\b(crate|(?:super\s*::\s*)*super)\s*::\s*(\{|\*|" + IDENT + ")", code):
        root, head = m.group(1), m.group(2)
        here = file_path + [name for start, end, name in spans if start <= m.start() < end]
        if root == "crate":
            base = []
        else:
            ups = root.count("super")
            if ups > len(here):
                problems.append(f"{'/'.join(here)}: `{root}::` climbs above the crate")
                continue
            base = here[: len(here) - ups]
        heads = group_heads(code, m.start(2)) if head == "{" else [head]
        for h in heads:
            if h == "*" and not base:
                problems.append(f"{'/'.join(here)}: a glob of the crate root hides arrows")
            elif h not in ("*", "self") and not base:
                names.add(h)
            elif h not in ("*", "self") and base:
                names.add(base[0])
    if re.search(r"\bcrate\s+as\s+" + IDENT, code):
        problems.append(f"{'/'.join(file_path)}: renaming the crate hides arrows")
    return names, problems


def reexports(src, mods):
    """Names `lib.rs` re-exports from a module: `pub use app::App;` -> App: app."""
    path = os.path.join(src, "lib.rs")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        code = strip_tests(code_only(f.read()))
    names = {}
    for m in re.finditer(r"\bpub\s+use\s+(?:crate\s*::\s*)?(" + IDENT + r")\s*::\s*([^;]*);", code):
        module, rest = m.group(1), m.group(2).strip()
        if module not in mods:
            continue
        items = group_heads(rest, 0) if rest.startswith("{") else [rest]
        for item in items:
            last = re.findall(IDENT, item.split(" as ")[-1])
            if last:
                names[last[-1]] = module
    return names


def graph(src):
    mods = top_level_modules(src)
    exported = reexports(src, mods)
    edges = {m: set() for m in mods}
    problems = []
    for mod, files in mods.items():
        for path in files:
            with open(path, encoding="utf-8") as f:
                code = strip_tests(code_only(f.read()))
            names, found = references(code, module_path(src, path))
            problems += found
            for name in names:
                target = name if name in mods else exported.get(name)
                if target and target != mod:
                    edges[mod].add(target)
    return edges, problems


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def layers(edges):
    """Each module's height: 0 imports nothing of core, else 1 + the highest import."""
    height = {}

    def h(v, seen=()):
        if v in height:
            return height[v]
        if v in seen:
            return 0
        height[v] = 1 + max((h(w, seen + (v,)) for w in edges[v]), default=-1)
        return height[v]

    for v in edges:
        h(v)
    return height


def check(src, report=False):
    edges, problems = graph(src)
    if not edges:
        print(f"FAIL: no modules found under {src}: the check would prove nothing")
        return 1
    arrows = sum(len(v) for v in edges.values())
    found = cycles(edges)
    if report:
        height = layers(edges)
        for mod in sorted(edges, key=lambda m: (height[m], m)):
            print(f"  {height[mod]:>2} {mod:<16} -> {', '.join(sorted(edges[mod])) or '-'}")
    for problem in problems:
        print(f"FAIL: {problem}")
    for comp in found:
        print(f"FAIL: import cycle through {len(comp)} of core's top-level modules: {', '.join(comp)}")
        for mod in comp:
            inside = sorted(edges[mod] & set(comp))
            print(f"    {mod} -> {', '.join(inside)}")
    if found or problems:
        return 1
    print(f"ok: no import cycle between core's {len(edges)} top-level modules ({arrows} arrows)")
    return 0


def self_test(src):
    """Plants each kind of path from the lowest module to the highest, in a
    copy, below code that has fooled naive scanners (a multi-line string
    ending in a backslash, a URL, a char literal); each must be caught."""
    edges, _ = graph(src)
    height = layers(edges)
    low = min(edges, key=lambda m: (height[m], m))
    high = max(edges, key=lambda m: (height[m], m))
    exported = reexports(src, top_level_modules(src))
    reexported = next((name for name, module in sorted(exported.items()) if module == high), None)
    decoy = 'const _D: &str = "a \\\n   b\\\n   c";\nconst _U: &str = "https://x.invalid/y";\nconst _C: char = \'"\';\n'
    plants = {
        "use line": f"use crate::{high};\n",
        "group": f"use crate::{{{high} as _planted}};\n",
        "inline path": f"fn _planted() {{ let _ = crate::{high}::__x; }}\n",
        "super path": f"use super::{high};\n",
        "glob of the crate root": "use crate::*;\n",
        "renamed crate": "use crate as _c;\n",
    }
    if reexported:
        plants["re-exported name"] = f"use crate::{reexported};\n"
    targets = {kind: None for kind in plants}
    # From a file two levels down in a module the highest one imports.
    nested = sorted(
        path
        for mod in edges[high]
        for path in top_level_modules(src)[mod]
        if len(module_path(src, path)) == 2
    )
    if nested:
        plants["super::super path"] = f"use super::super::{high};\n"
        targets["super::super path"] = os.path.relpath(nested[0], src)
    failed = []
    for kind, line in plants.items():
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "src")
            shutil.copytree(src, copy)
            target = os.path.join(copy, low + ".rs")
            if not os.path.exists(target):
                target = os.path.join(copy, low, "mod.rs")
            if targets[kind]:
                target = os.path.join(copy, targets[kind])
            with open(target, encoding="utf-8") as f:
                text = f.read()
            # After the file's own code, before any test module.
            marker = re.search(r"^#\[cfg\(test\)\]", text, re.M)
            at = marker.start() if marker else len(text)
            with open(target, "w", encoding="utf-8") as f:
                f.write(text[:at] + "\n" + decoy + line + text[at:])
            devnull = open(os.devnull, "w")
            saved, sys.stdout = sys.stdout, devnull
            try:
                caught = check(copy) == 1
            finally:
                sys.stdout = saved
                devnull.close()
        if not caught:
            failed.append(kind)
    if failed:
        print(f"FAIL: planted from {low} to {high}, these went unnoticed: {', '.join(failed)}")
        return 1
    print(f"ok: the cycle check fails on each of {len(plants)} kinds of planted path to {high}")
    return 0


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    args = [a for a in argv if not a.startswith("--")]
    src = args[0] if args else os.path.join(here, "..", "core", "src")
    if "--self-test" in argv:
        return self_test(src)
    return check(src, report="--report" in argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
