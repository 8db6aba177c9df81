#!/usr/bin/env bash
# Builds the Spin components, optimised for size the way worker-build
# optimises the Workers module:
#   api      edge/spin/build/tepi_spin.wasm, the API (tepi-spin)
#   console  edge/spin-console/build/tepi_spin_console.wasm, the operator
#            console's files under /console/ (tepi-spin-console, ADR 0013);
#            the console is built first by scripts/build-console.sh
#
#   scripts/build-spin.sh [api|console]...    (no argument: both)
#
# Each component:
#   1. cargo links the crate's core module only (wasm-component-ld's
#      --skip-wit-component, passed to the final link alone so dependencies
#      keep their build cache);
#   2. wasm-opt -Oz over that core module, allowed only the Wasm features
#      rustc already emits for wasm32-wasip2, so it introduces none;
#   3. wasm-tools wraps it into the component from the WIT metadata the
#      module carries (the same imports and exports cargo's own component
#      has) and strips custom sections (names, producers).
#
# spin.toml's build commands run this script, one component each, so
# `spin build` gives the same artifacts. About 5 % smaller gzip than cargo's
# component (docs/performance.md).
source "$(dirname "$0")/lib.sh"

[[ -x $WASM_OPT_BIN ]] || die "wasm-opt missing at $WASM_OPT_BIN: run scripts/tools.sh (or make setup)"
[[ -x $WASM_TOOLS_BIN ]] || die "wasm-tools missing at $WASM_TOOLS_BIN: run scripts/tools.sh (or make setup)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# build_component CRATE OUT — the optimised component of CRATE at OUT.
build_component() {
  local crate=$1 out=$2
  local core_module="$TEPI_ROOT/target/wasm32-wasip2/release/${crate//-/_}.wasm"
  cargo_ rustc -p "$crate" --target wasm32-wasip2 --release --quiet -- -Clink-arg=--skip-wit-component
  [[ $(head -c 8 "$core_module" | od -An -tx1 | tr -d ' \n') == 0061736d01000000 ]] \
    || die "$core_module is not a core module (did --skip-wit-component reach the linker?)"
  mkdir -p "$(dirname "$out")"
  "$WASM_OPT_BIN" -Oz \
    --enable-bulk-memory --enable-bulk-memory-opt --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types \
    --enable-call-indirect-overlong \
    "$core_module" -o "$work/core.wasm"
  "$WASM_TOOLS_BIN" component new "$work/core.wasm" -o "$work/component.wasm"
  "$WASM_TOOLS_BIN" strip --all "$work/component.wasm" -o "$work/stripped.wasm"
  "$WASM_TOOLS_BIN" validate "$work/stripped.wasm"
  mv "$work/stripped.wasm" "$out"
  log "${out#"$TEPI_ROOT"/}: $(stat -c %s "$out") B raw, $(gzip -9 -c "$out" | wc -c) B gzip"
}

(($# > 0)) || set -- api console
for part in "$@"; do
  case $part in
    api) build_component tepi-spin "$SPIN_WASM" ;;
    console)
      # The console's files are embedded at compile time (the crate's
      # build.rs reads console/dist/console/ and console/headers.json).
      if [[ -f $TEPI_ROOT/scripts/build-console.sh ]]; then
        bash "$TEPI_ROOT/scripts/build-console.sh"
      fi
      build_component tepi-spin-console "$SPIN_CONSOLE_WASM"
      ;;
    *) die "unknown component '$part' (api or console)" ;;
  esac
done
