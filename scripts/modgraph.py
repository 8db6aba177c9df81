#!/usr/bin/env python3
"""The import graph between tepi-core's top-level modules, and its cycles.

A top-level module is `core/src/NAME.rs` or `core/src/NAME/`. An arrow
A -> B is any `crate::B` path (a `use` line, a `crate::{B, ...}` group or a
path inline in code) in a file of A. Test code does not count: files named
`tests.rs` or under a `tests/` folder, the `testing` module, and what
follows `#[cfg(test)]` in a file.

    modgraph.py [SRC]             fail (exit 1) when the graph has a cycle
    modgraph.py --report [SRC]    also print every arrow and the layers
    modgraph.py --self-test       prove the check fails on a planted cycle

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


def strip_comments_and_tests(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    # Each item marked #[cfg(test)]: up to its `;` or its closing brace.
    while True:
        marker = re.search(r"#\[cfg\(test\)\]", text)
        if not marker:
            return text
        depth, end = 0, len(text)
        for i in range(marker.end(), len(text)):
            ch = text[i]
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
        text = text[: marker.start()] + text[end:]


def group_heads(text, start):
    """Top-level names of the `{...}` group opening at text[start]."""
    depth, item, heads = 0, "", []
    for ch in text[start:]:
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
        m = re.match(r"\s*(" + IDENT + ")", head)
        if m:
            names.append(m.group(1))
    return names


def references(text):
    names = set()
    for m in re.finditer(r"\bcrate::(\{|" + IDENT + ")", text):
        if m.group(1) == "{":
            names.update(group_heads(text, m.start(1)))
        else:
            names.add(m.group(1))
    return names


def graph(src):
    mods = top_level_modules(src)
    edges = {m: set() for m in mods}
    for mod, files in mods.items():
        for path in files:
            with open(path, encoding="utf-8") as f:
                text = strip_comments_and_tests(f.read())
            for name in references(text):
                if name in mods and name != mod:
                    edges[mod].add(name)
    return edges


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
    edges = graph(src)
    if not edges:
        print(f"FAIL: no modules found under {src}: the check would prove nothing")
        return 1
    arrows = sum(len(v) for v in edges.values())
    found = cycles(edges)
    if report:
        height = layers(edges)
        for mod in sorted(edges, key=lambda m: (height[m], m)):
            print(f"  {height[mod]:>2} {mod:<16} -> {', '.join(sorted(edges[mod])) or '-'}")
    if found:
        for comp in found:
            print(f"FAIL: import cycle through {len(comp)} of core's top-level modules: {', '.join(comp)}")
            for mod in comp:
                inside = sorted(edges[mod] & set(comp))
                print(f"    {mod} -> {', '.join(inside)}")
        return 1
    print(f"ok: no import cycle between core's {len(edges)} top-level modules ({arrows} arrows)")
    return 0


def self_test(src):
    edges = graph(src)
    height = layers(edges)
    low = min(edges, key=lambda m: (height[m], m))
    high = max(edges, key=lambda m: (height[m], m))
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "src")
        shutil.copytree(src, copy)
        target = os.path.join(copy, low + ".rs")
        if not os.path.exists(target):
            target = os.path.join(copy, low, "mod.rs")
        with open(target, encoding="utf-8") as f:
            text = f.read()
        # At the top, before any test module (test code does not count).
        with open(target, "w", encoding="utf-8") as f:
            f.write(f"use crate::{{{high} as _planted}};\n" + text)
        devnull = open(os.devnull, "w")
        saved, sys.stdout = sys.stdout, devnull
        try:
            caught = check(copy) == 1
        finally:
            sys.stdout = saved
            devnull.close()
    if not caught:
        print(f"FAIL: a cycle planted from {low} to {high} went unnoticed")
        return 1
    print(f"ok: the cycle check fails on a planted cycle ({low} -> {high})")
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
