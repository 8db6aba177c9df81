#!/usr/bin/env bash
# Architecture guards, checked by the gates rather than by review:
#  1. tepi-core depends on no runtime crate, at any depth, for any target;
#  2. tepi-core never reads a clock itself;
#  3. the Workers Wasm (which contains the core) imports nothing from "env":
#     every import goes through wasm-bindgen, so nothing expects a C runtime;
#  4. the Spin WIT that tools/spin-test-host implements is byte-for-byte the
#     WIT shipped by the spin-sdk crate the Spin adapter is built with;
#  5. no import cycle between tepi-core's top-level modules
#     (scripts/modgraph.py), after proving the check fails on a planted one;
#  6. Cargo.lock keeps idna's stub back end (idna_adapter 1.0.x, which
#     refuses non-ASCII hosts): the url crate inside workers-rs would
#     otherwise link ICU4X's Unicode tables, 51 KB of gzipped Wasm, for
#     hosts the core refuses anyway (http::Uri takes ASCII only). A plain
#     `cargo update` moves it back to 1.2.x; pin it again with
#     `cargo update -p idna_adapter --precise 1.0.0`.
source "$(dirname "$0")/lib.sh"

RUNTIME_CRATES='worker|worker-sys|worker-macros|spin-sdk|spin-executor|spin-macro|wasm-bindgen|js-sys|web-sys|tokio|async-std|wit-bindgen|wit-bindgen-rt|wasi|wasip2|getrandom'
failed=0

deps=$(cd "$TEPI_ROOT" && cargo_ tree -p tepi-core --edges normal,build --target all --prefix none --format '{p}' | awk '{print $1}' | sort -u)
if bad=$(grep -xE "$RUNTIME_CRATES" <<<"$deps"); then
  echo "FAIL: tepi-core depends on runtime crates: $(tr '\n' ' ' <<<"$bad")"
  failed=1
else
  echo "ok: tepi-core depends on no runtime crate ($(wc -l <<<"$deps") crates checked)"
fi

if clocks=$(grep -rnE 'SystemTime::now|Instant::now|Date::now' "$TEPI_ROOT/core/src"); then
  echo "FAIL: tepi-core reads a clock; time must come in through App::handle or the Clock port:"
  echo "$clocks"
  failed=1
else
  echo "ok: tepi-core reads no clock"
fi

if python3 "$TEPI_ROOT/scripts/modgraph.py" --self-test && python3 "$TEPI_ROOT/scripts/modgraph.py"; then
  gate_note "core: $(python3 "$TEPI_ROOT/scripts/modgraph.py" | sed -n 's/.*core.s \([0-9]*\) top-level modules (\([0-9]*\) arrows).*/\1 modules, \2 arrows, no cycle/p')"
else
  failed=1
fi

[[ -f $WORKER_WASM ]] || die "no Workers build at $WORKER_WASM (run make build)"
skeleton=$("$WASM_TOOLS_BIN" print --skeleton "$WORKER_WASM") || die "wasm-tools could not read $WORKER_WASM"
grep -q '(import ' <<<"$skeleton" || die "no imports found in $WORKER_WASM: the check would prove nothing"
if env_imports=$(grep -E '\(import "env"' <<<"$skeleton"); then
  echo "FAIL: the Workers Wasm imports from \"env\":"
  echo "$env_imports"
  failed=1
else
  echo "ok: the Workers Wasm imports nothing from \"env\""
fi

sdk_manifest=$(cd "$TEPI_ROOT" && cargo_ metadata --format-version 1 --locked |
  python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "spin-sdk"))')
sdk_wit="$(dirname "$sdk_manifest")/wit/deps/spin@2.0.0"
wit_ok=1
for f in sqlite key-value variables; do
  if ! cmp -s "$sdk_wit/$f.wit" "$SPIN_HOST_SRC/wit/deps/spin/$f.wit"; then
    echo "FAIL: tools/spin-test-host/wit/deps/spin/$f.wit differs from spin-sdk's $sdk_wit/$f.wit"
    wit_ok=0
    failed=1
  fi
done
[[ $wit_ok == 1 ]] && echo "ok: spin-test-host implements spin-sdk's own WIT (sqlite, key-value, variables)"

adapter=$(awk '/^name = "idna_adapter"$/ {getline; print $3}' "$TEPI_ROOT/Cargo.lock" | tr -d '"')
if [[ $adapter == 1.0.* ]]; then
  echo "ok: idna_adapter $adapter (no Unicode tables in the Workers build)"
else
  echo "FAIL: Cargo.lock has idna_adapter ${adapter:-none}; run cargo update -p idna_adapter --precise 1.0.0"
  failed=1
fi

exit "$failed"
