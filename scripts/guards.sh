#!/usr/bin/env bash
# Architecture guards, checked by the gates rather than by review:
#  1. tepi-core depends on no runtime crate, at any depth, for any target;
#  2. tepi-core never reads a clock itself;
#  3. the Workers Wasm (which contains the core) imports nothing from "env":
#     every import goes through wasm-bindgen, so nothing expects a C runtime.
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

[[ -f $WORKER_WASM ]] || die "no Workers build at $WORKER_WASM (run make build)"
if env_imports=$("$WASM_TOOLS_BIN" print --skeleton "$WORKER_WASM" | grep -E '\(import "env"'); then
  echo "FAIL: the Workers Wasm imports from \"env\":"
  echo "$env_imports"
  failed=1
else
  echo "ok: the Workers Wasm imports nothing from \"env\""
fi

exit "$failed"
