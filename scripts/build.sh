#!/usr/bin/env bash
# Builds both Wasm artifacts in release mode and prints their sizes.
#   Workers: edge/cloudflare/build/index_bg.wasm (worker-build, wasm-opt on)
#   Spin:    target/wasm32-wasip2/release/tepi_spin.wasm
source "$(dirname "$0")/lib.sh"

log "building the Workers artifact"
bash "$TEPI_ROOT/scripts/build-worker.sh" "$@"
log "building the Spin artifact"
cargo_ build -p tepi-spin --target wasm32-wasip2 --release --quiet

size_row() {
  local name=$1 file=$2 raw gz
  raw=$(stat -c %s "$file")
  gz=$(gzip -9 -c "$file" | wc -c)
  printf '%-22s %10d %10d   %s\n' "$name" "$raw" "$gz" "${file#"$TEPI_ROOT"/}"
}
echo
echo "Wasm size report (bytes)"
printf '%-22s %10s %10s   %s\n' artifact raw gzip path
size_row "cloudflare-workers" "$WORKER_WASM"
size_row "spin" "$SPIN_WASM"
echo
gate_note "gzip: workers $(gzip -9 -c "$WORKER_WASM" | wc -c) B, spin $(gzip -9 -c "$SPIN_WASM" | wc -c) B"
