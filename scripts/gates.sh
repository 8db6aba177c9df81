#!/usr/bin/env bash
# Runs the gates named on the command line (`make test` passes its GATES
# list) one after another, each as `make GATE`, and stops at the first that
# fails. Whatever happens (a failure, Ctrl-C, a kill by CI's time limit), it
# ends with a table of every gate: its time, its result and the figure it
# measured (a gate reports one with `gate_note`, see lib.sh), then the line
# `gates: N passed, N failed, N skipped`.
#
#   scripts/gates.sh GATE...
source "$(dirname "$0")/lib.sh"

(($# > 0)) || die "usage: scripts/gates.sh GATE..."
gates=("$@")
declare -A took result
notes_dir=$(mktemp -d "${TMPDIR:-/tmp}/tepi-gates.XXXXXX")
started=$SECONDS

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

table() {
  local rc=$? gate passed=0 failed=0 skipped=0 note
  trap - EXIT INT TERM
  echo
  echo "Gates ($(fmt_secs $((SECONDS - started))) in all)"
  printf '  %-14s %8s  %-8s %s\n' gate time result "measured"
  for gate in "${gates[@]}"; do
    case ${result[$gate]:-} in
      passed) passed=$((passed + 1)) ;;
      FAILED | stopped) failed=$((failed + 1)) ;;
      *)
        skipped=$((skipped + 1))
        result[$gate]="not run"
        ;;
    esac
    note=""
    [[ -f $notes_dir/$gate ]] && note=$(awk 'NR > 1 { printf " | " } { printf "%s", $0 }' "$notes_dir/$gate")
    printf '  %-14s %8s  %-8s %s\n' "$gate" "${took[$gate]:-}" "${result[$gate]}" "$note"
  done
  rm -rf "$notes_dir"
  echo
  echo "gates: $passed passed, $failed failed, $skipped skipped"
  exit "$rc"
}
trap table EXIT
# A signal ends the running gate; the table still says where it stopped.
trap 'result[$current]=stopped; took[$current]=$(fmt_secs $((SECONDS - t0))); exit 130' INT TERM

for current in "${gates[@]}"; do
  t0=$SECONDS
  log "gate: $current"
  rc=0
  TEPI_GATE_NOTES="$notes_dir/$current" make --no-print-directory -C "$TEPI_ROOT" "$current" || rc=$?
  took[$current]=$(fmt_secs $((SECONDS - t0)))
  if ((rc != 0)); then
    result[$current]=FAILED
    log "gate $current failed (exit $rc)"
    exit "$rc"
  fi
  result[$current]=passed
done
echo "all gates passed"
