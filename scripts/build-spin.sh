#!/usr/bin/env bash
# Builds the Spin component (edge/spin/build/tepi_spin.wasm), optimised for
# size the way worker-build optimises the Workers module:
#
#   1. cargo links tepi-spin's core module only (wasm-component-ld's
#      --skip-wit-component, passed to the final link alone so dependencies
#      keep their build cache);
#   2. wasm-opt -Oz over that core module, allowed only the Wasm features
#      rustc already emits for wasm32-wasip2, so it introduces none;
#   3. wasm-tools wraps it into the component from the WIT metadata the
#      module carries (the same imports and exports cargo's own component
#      has) and strips custom sections (names, producers).
#
# spin.toml's build command runs this script, so `spin build` gives the same
# artifact. About 5 % smaller gzip than cargo's component (docs/performance.md).
source "$(dirname "$0")/lib.sh"

[[ -x $WASM_OPT_BIN ]] || die "wasm-opt missing at $WASM_OPT_BIN: run scripts/tools.sh (or make setup)"
[[ -x $WASM_TOOLS_BIN ]] || die "wasm-tools missing at $WASM_TOOLS_BIN: run scripts/tools.sh (or make setup)"

core_module="$TEPI_ROOT/target/wasm32-wasip2/release/tepi_spin.wasm"
cargo_ rustc -p tepi-spin --target wasm32-wasip2 --release --quiet -- -Clink-arg=--skip-wit-component
[[ $(head -c 8 "$core_module" | od -An -tx1 | tr -d ' \n') == 0061736d01000000 ]] \
  || die "$core_module is not a core module (did --skip-wit-component reach the linker?)"

mkdir -p "$(dirname "$SPIN_WASM")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$WASM_OPT_BIN" -Oz \
  --enable-bulk-memory --enable-bulk-memory-opt --enable-sign-ext --enable-mutable-globals \
  --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types \
  --enable-call-indirect-overlong \
  "$core_module" -o "$work/core.wasm"
"$WASM_TOOLS_BIN" component new "$work/core.wasm" -o "$work/component.wasm"
"$WASM_TOOLS_BIN" strip --all "$work/component.wasm" -o "$work/stripped.wasm"
"$WASM_TOOLS_BIN" validate "$work/stripped.wasm"
mv "$work/stripped.wasm" "$SPIN_WASM"
