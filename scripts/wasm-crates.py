#!/usr/bin/env python3
"""Where the bytes of a Wasm module go, by section and by crate.

    scripts/wasm-crates.py MODULE.wasm [--top N] [--json OUT]

MODULE must still carry its `name` section (cargo's own output under
target/<triple>/release/, before wasm-opt and strip). Function bodies are
attributed to the crate their (mangled) name starts with; for trait
impls (`<a::T as b::Tr>::f`) the crate of the implementing type counts.
Data segments are reported as one row: they hold string literals, tables
and panic locations of every crate alike. A Spin component is a module
wrapped in a component: the largest embedded core module is analysed.
"""
import json
import re
import sys
from collections import defaultdict


def leb(buf, pos):
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def sections(buf, start=8, end=None):
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        sid = buf[pos]
        size, body = leb(buf, pos + 1)
        yield sid, body, body + size
        pos = body + size


def core_module(buf):
    """The module itself, or a component's largest embedded core module."""
    if buf[4:8] == b"\x01\x00\x00\x00":
        return buf
    best = None
    for sid, start, end in sections(buf):
        if sid == 1 and (best is None or end - start > len(best)):  # core module section
            best = buf[start:end]
    if best is None:
        sys.exit("no core module inside this component")
    return best


def name_of(buf, start, end):
    n, pos = leb(buf, start)
    return buf[pos : pos + n].decode("utf-8", "replace"), pos + n


GENERIC = {"T", "U", "F", "S", "E", "K", "V", "A", "B", "I", "R", "W", "str", "u8", "u16", "u32", "u64",
           "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize", "f32", "f64", "bool", "char", ""}


def crate_of(symbol):
    """The crate a mangled symbol belongs to (for `<T as Trait>`, T's crate, or
    the trait's when T is generic or primitive)."""
    s = symbol
    if s.startswith("_ZN"):
        m = re.match(r"_ZN(\d+)", s)
        if not m:
            return "?"
        ident = s[len(m.group(0)) : len(m.group(0)) + int(m.group(1))]
        if "$LT$" in ident[:6]:
            inner = ident.split("$LT$", 1)[1]
            inner = re.sub(r"^(\$RF\$|mut\$u20\$|dyn\$u20\$|\$u5b\$|\$LP\$|\$BP\$)+", "", inner)
            first = re.split(r"\.\.|\$", inner)[0]
            if first in GENERIC and "$u20$as$u20$" in inner:
                trait = inner.split("$u20$as$u20$", 1)[1]
                trait = re.sub(r"^(\$RF\$|mut\$u20\$|dyn\$u20\$)+", "", trait)
                return re.split(r"\.\.|\$", trait)[0] or "<generic>"
            return first or "<generic>"
        return ident
    if s.startswith("_R"):
        m = re.search(r"C(?:s[0-9A-Za-z]*_)?(\d+)([A-Za-z_][A-Za-z0-9_]*)", s)
        if m:
            return m.group(2)[: int(m.group(1))]
        return "?"
    if s.startswith("__wbg") or s.startswith("__wbindgen") or s.startswith("__externref"):
        return "wasm-bindgen (glue)"
    if s.startswith("__") or s in ("memcpy", "memset", "memmove", "memcmp", "bcmp"):
        return "compiler builtins"
    return "(unmangled)" if s else "?"


def analyse(buf):
    imports = 0
    bodies = []
    names = {}
    section_bytes = defaultdict(int)
    data_bytes = 0
    kinds = {0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory",
             6: "global", 7: "export", 8: "start", 9: "element", 10: "code", 11: "data", 12: "datacount"}
    for sid, start, end in sections(buf):
        label = kinds.get(sid, str(sid))
        if sid == 0:
            cname, _ = name_of(buf, start, end)
            label = f"custom:{cname}"
        section_bytes[label] += end - start
        if sid == 2:
            count, pos = leb(buf, start)
            for _ in range(count):
                _, pos = name_of(buf, pos, end)
                _, pos = name_of(buf, pos, end)
                kind = buf[pos]
                pos += 1
                if kind == 0:
                    imports += 1
                    _, pos = leb(buf, pos)
                elif kind == 1:
                    pos += 1
                    flags, pos = leb(buf, pos)
                    _, pos = leb(buf, pos)
                    if flags & 1:
                        _, pos = leb(buf, pos)
                elif kind == 2:
                    flags, pos = leb(buf, pos)
                    _, pos = leb(buf, pos)
                    if flags & 1:
                        _, pos = leb(buf, pos)
                elif kind == 3:
                    pos += 2
                else:
                    _, pos = leb(buf, pos)
        elif sid == 10:
            count, pos = leb(buf, start)
            for _ in range(count):
                size, body = leb(buf, pos)
                bodies.append(body + size - pos)
                pos = body + size
        elif sid == 11:
            data_bytes += end - start
        elif sid == 0 and label == "custom:name":
            _, pos = name_of(buf, start, end)
            while pos < end:
                sub = buf[pos]
                size, body = leb(buf, pos + 1)
                if sub == 1:
                    count, p = leb(buf, body)
                    for _ in range(count):
                        idx, p = leb(buf, p)
                        nm, p = name_of(buf, p, end)
                        names[idx] = nm
                pos = body + size
    by_crate = defaultdict(lambda: [0, 0])
    for i, size in enumerate(bodies):
        crate = crate_of(names.get(imports + i, ""))
        by_crate[crate][0] += size
        by_crate[crate][1] += 1
    return dict(total=len(buf), sections=dict(section_bytes), code=sum(bodies),
                functions=len(bodies), named=len(names) > 0, data=data_bytes,
                crates={k: dict(bytes=v[0], functions=v[1]) for k, v in by_crate.items()})


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    top = 25
    out = None
    path = args[0]
    if "--top" in args:
        top = int(args[args.index("--top") + 1])
    if "--json" in args:
        out = args[args.index("--json") + 1]
    buf = core_module(open(path, "rb").read())
    r = analyse(buf)
    if not r["named"]:
        print(f"{path}: no name section (analyse cargo's output before wasm-opt)", file=sys.stderr)
    print(f"{path}: {r['total']} bytes; code {r['code']} in {r['functions']} functions; data {r['data']}")
    print(f"{'section':<28} {'bytes':>10}")
    for k, v in sorted(r["sections"].items(), key=lambda kv: -kv[1]):
        print(f"{k:<28} {v:>10}")
    print(f"\n{'crate':<36} {'code bytes':>10} {'share':>6} {'fns':>6}")
    rows = sorted(r["crates"].items(), key=lambda kv: -kv[1]["bytes"])
    for k, v in rows[:top]:
        print(f"{k[:36]:<36} {v['bytes']:>10} {100 * v['bytes'] / r['code']:>5.1f}% {v['functions']:>6}")
    rest = rows[top:]
    if rest:
        print(f"{'(' + str(len(rest)) + ' more)':<36} {sum(v['bytes'] for _, v in rest):>10}")
    if out:
        with open(out, "w") as f:
            json.dump(r, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
