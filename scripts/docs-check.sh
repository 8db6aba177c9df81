#!/usr/bin/env bash
# The docs test: every make task, path, variable, metric and route the docs
# mention exists (scripts/docs-check.py; its docstring has the rules). It
# first proves it reports a planted mistake of each kind, then checks
# README.md, console/README.md, docs/**/*.md and docs/openapi.yaml's
# operations. Standard-library Python, about a second, no service.
#
#   scripts/docs-check.sh                  # the gate (make docs)
#   python3 scripts/docs-check.py --list=paths --list=metrics   # what it read
source "$(dirname "$0")/lib.sh"

cd "$TEPI_ROOT"
rc=0
out=$(python3 scripts/docs-check.py) || rc=$?
[[ -n $out ]] && printf '%s\n' "$out"
((rc == 0)) || die "the docs name things that do not exist, or the check proved nothing (see above)"
gate_note "$(tail -n 1 <<<"$out")"
