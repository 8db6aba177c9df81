#!/usr/bin/env bash
# Builds the Workers artifact (edge/cloudflare/build/) with worker-build,
# offline: wasm-bindgen, wasm-opt and esbuild come from the tool cache.
#
#   scripts/build-worker.sh           release build with wasm-opt (deploys, size report)
#   scripts/build-worker.sh --no-opt  release build without wasm-opt (dev loop)
#
# The console's assets (console/dist, served by Workers Static Assets) are
# built first: wrangler needs the directory wrangler.toml names.
#
# wrangler runs this as its [build] command; TEPI_SKIP_BUILD=1 makes that a
# no-op when a script has just built the worker itself, and
# TEPI_WORKER_BUILD_FLAGS adds flags (make dev sets --no-opt).
source "$(dirname "$0")/lib.sh"

if [[ ${TEPI_SKIP_BUILD:-} == 1 && -f $WORKER_WASM && -f $TEPI_ROOT/console/dist/console/index.html ]]; then
  exit 0
fi
bash "$TEPI_ROOT/scripts/build-console.sh" >&2
[[ -x $WORKER_BUILD_BIN ]] || die "worker-build missing: run scripts/tools.sh (or make setup)"
cd "$TEPI_ROOT/edge/cloudflare"
# wasm-bindgen picks its glue (reference types or not) from the module's
# `target_features` section, which the release profile's symbol strip
# would remove: this build keeps sections through wasm-bindgen and wasm-opt,
# and the names are stripped from the finished module below.
# shellcheck disable=SC2086 # flags are words
CARGO_PROFILE_RELEASE_STRIP=debuginfo "$WORKER_BUILD_BIN" --release ${TEPI_WORKER_BUILD_FLAGS:-} "$@" >&2
[[ -x $WASM_TOOLS_BIN ]] || die "wasm-tools missing at $WASM_TOOLS_BIN: run scripts/tools.sh (or make setup)"
"$WASM_TOOLS_BIN" strip --all "$WORKER_WASM" -o "$WORKER_WASM.stripped"
mv "$WORKER_WASM.stripped" "$WORKER_WASM"
