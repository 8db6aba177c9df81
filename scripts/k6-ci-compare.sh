#!/usr/bin/env bash
# Compares the smoke runs make smoke kept (target/k6/smoke-<build>.json,
# see scripts/k6-smoke-gate.sh) with an earlier run's summaries of the same
# names in a folder: in CI, the k6-baseline artifact of the branch's last
# successful run, else main's (docs/ops.md, "Hosted CI"). Downloads
# nothing; a build without a file in the folder (or no folder at all: a
# first run) has nothing to compare and passes.
#
#   scripts/k6-ci-compare.sh [BASELINE_DIR]     (make smoke-compare)
#
#   BASELINE_DIR   default target/k6-baseline; its file SOURCE, when there,
#                  says where the summaries came from
#   SMOKE_TOLERANCE=100  SMOKE_MIN_MS=50  SMOKE_MIN_COUNT=50  ERROR_PP=0.5   see
#                  scripts/k6-compare.py; the smoke gate's own tolerances by
#                  default, since two runs on different shared machines
#                  differ for reasons that are not the code
#
# Exit status: 0 no regression, 1 a regression, 2 a usage or I/O error.
source "$(dirname "$0")/lib.sh"

dir=${1:-${BASELINE_DIR:-$TEPI_ROOT/target/k6-baseline}}
TOLERANCE=${SMOKE_TOLERANCE:-100}
MIN_MS=${SMOKE_MIN_MS:-50}
MIN_COUNT=${SMOKE_MIN_COUNT:-50}
ERROR_PP=${ERROR_PP:-0.5}

shopt -s nullglob
runs=("$TEPI_ROOT"/target/k6/smoke-*.json)
((${#runs[@]})) || die "no smoke summaries in target/k6 (run make smoke first)"
if [[ -f $dir/SOURCE ]]; then
  log "baselines from $(head -n 1 "$dir/SOURCE")"
fi

rc=0 notes=()
for run in "${runs[@]}"; do
  file=$(basename "$run")
  build=${file#smoke-}
  build=${build%.json}
  if [[ ! -f $dir/$file ]]; then
    log "$build: no earlier summary in $dir: nothing to compare"
    notes+=("$build: no baseline")
    continue
  fi
  crc=0
  python3 "$TEPI_ROOT/scripts/k6-compare.py" "$run" --baseline "$dir/$file" \
    --tolerance "$TOLERANCE" --min-ms "$MIN_MS" --error-pp "$ERROR_PP" --min-count "$MIN_COUNT" || crc=$?
  case $crc in
    0) notes+=("$build: no regression") ;;
    1) notes+=("$build: REGRESSION") ;;
    *) notes+=("$build: compare failed (exit $crc)") ;;
  esac
  ((crc <= rc)) || rc=$crc
done
printf -v joined '%s, ' "${notes[@]}"
gate_note "${joined%, } (p95 +${TOLERANCE} % and +${MIN_MS} ms, errors +${ERROR_PP} pp)"
exit "$rc"
