#!/usr/bin/env bash
# The unit and route tests under cargo-llvm-cov (source-based coverage):
# the same tests `make unit` runs, instrumented, with
#
#   target/coverage/lcov.info   for tools (Codecov, an editor's gutter)
#   target/coverage/html/       to read: per file, per line
#
# and a floor: the run fails when the workspace's line coverage is under
# COVERAGE_FLOOR percent (default below). The floor rises with the
# measured figure, never falls to let a change through.
#
#   COVERAGE_FLOOR=88   the floor, in percent of lines (measured: 89.1 %)
source "$(dirname "$0")/lib.sh"
FLOOR=${COVERAGE_FLOOR:-88}
[[ -x $CARGO_LLVM_COV_BIN ]] || die "cargo-llvm-cov missing: run scripts/tools.sh (or make setup)"
[[ -f $TEPI_ROOT/console/dist/console/index.html ]] || bash "$TEPI_ROOT/scripts/build-console.sh" >/dev/null
cd "$TEPI_ROOT"
out=target/coverage
rm -rf "$out"
mkdir -p "$out"
# Its own target dir, so the instrumented build never invalidates the
# plain one the other gates use.
export CARGO_LLVM_COV_TARGET_DIR="$TEPI_ROOT/target/llvm-cov-target"
cov() { "$CARGO_LLVM_COV_BIN" llvm-cov "$@"; }
log "unit and route tests, instrumented"
cov --workspace --exclude tepi-conformance --locked --no-report
cov report --lcov --output-path "$out/lcov.info"
cov report --html --output-dir "$out" >/dev/null
summary=$(cov report --summary-only 2>/dev/null | awk '/^TOTAL/ {print}')
lines=$(awk '{print $(NF-3)}' <<<"$summary" | tr -d '%')
[[ $lines =~ ^[0-9.]+$ ]] || die "could not read the line coverage from: $summary"
log "line coverage $lines % (floor $FLOOR %); report: $out/html/index.html"
gate_note "lines $lines % (floor $FLOOR %), regions $(awk '{print $4}' <<<"$summary"); lcov and HTML in $out/"
awk -v l="$lines" -v f="$FLOOR" 'BEGIN { exit !(l + 0 >= f + 0) }' ||
  die "line coverage $lines % is under the floor of $FLOOR %"
