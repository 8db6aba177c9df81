#!/usr/bin/env bash
# Builds both Wasm artifacts in release mode, prints their sizes and fails
# when either is over its gzip budget.
#   Workers: edge/cloudflare/build/index_bg.wasm (worker-build, wasm-opt on)
#   Spin:    edge/spin/build/tepi_spin.wasm (scripts/build-spin.sh, wasm-opt on)
#            and the console component, edge/spin-console/build/tepi_spin_console.wasm,
#            reported without a budget of its own: it is the console's files
#            (held to their own gzip limit by scripts/build-console.sh) and a
#            small server (docs/adr/0013-console-assets.md)
#
# Budgets (bytes of `gzip -9`), a ceiling each build must stay under. The
# goal for both is 400,000 B (docs/performance.md, "Size"). A budget moves
# down, to just above what the build measures, when a cut lands; it moves
# up only with a feature, by what that feature measured, logged in
# docs/performance.md ("The budget's log").
#   TEPI_BUDGET_WORKERS  default 535500
#   TEPI_BUDGET_SPIN     default 440500
source "$(dirname "$0")/lib.sh"

BUDGET_WORKERS=${TEPI_BUDGET_WORKERS:-467500}
BUDGET_SPIN=${TEPI_BUDGET_SPIN:-385500}
for b in "$BUDGET_WORKERS" "$BUDGET_SPIN"; do
  [[ $b =~ ^[0-9]+$ ]] || die "size budgets are whole numbers of bytes, got '$b'"
done

log "building the Workers artifact"
bash "$TEPI_ROOT/scripts/build-worker.sh" "$@"
log "building the Spin artifacts"
bash "$TEPI_ROOT/scripts/build-spin.sh"

over=()
size_row() {
  local name=$1 file=$2 budget=$3 raw gz verdict=ok
  raw=$(stat -c %s "$file")
  gz=$(gzip -9 -c "$file" | wc -c)
  if ((gz > budget)); then
    verdict="OVER by $((gz - budget))"
    over+=("$name")
  fi
  printf '%-20s %10d %10d %10d  %-14s %s\n' "$name" "$raw" "$gz" "$budget" "$verdict" "${file#"$TEPI_ROOT"/}"
  GZ[$name]=$gz
}
declare -A GZ
echo
echo "Wasm size report (bytes; budget applies to gzip -9)"
printf '%-20s %10s %10s %10s  %-14s %s\n' artifact raw gzip budget verdict path
size_row "cloudflare-workers" "$WORKER_WASM" "$BUDGET_WORKERS"
size_row "spin" "$SPIN_WASM" "$BUDGET_SPIN"
console_raw=$(stat -c %s "$SPIN_CONSOLE_WASM")
console_gz=$(gzip -9 -c "$SPIN_CONSOLE_WASM" | wc -c)
printf '%-20s %10d %10d %10s  %-14s %s\n' "spin-console" "$console_raw" "$console_gz" - "no budget" \
  "${SPIN_CONSOLE_WASM#"$TEPI_ROOT"/}"
echo "goal: 400000 B gzip each; by crate: python3 scripts/wasm-crates.py (docs/performance.md)"
echo
gate_note "gzip: workers ${GZ[cloudflare-workers]} B (budget $BUDGET_WORKERS), spin ${GZ[spin]} B (budget $BUDGET_SPIN)"
gate_note "gzip: spin console component $console_gz B (no budget)"
((${#over[@]} == 0)) || die "over the size budget: ${over[*]}"
