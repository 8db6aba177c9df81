#!/usr/bin/env bash
# The console gate: TypeScript's strict type check of the console and of the
# browser tests, then scripts/build-console.sh (the figures' unit tests, the
# bundle, and the first-load budget: 150 KB gzip).
source "$(dirname "$0")/lib.sh"
cd "$TEPI_ROOT"
tsc=node_modules/.bin/tsc
[[ -x $tsc ]] || die "typescript missing: run scripts/tools.sh (or make setup)"
log "type-checking console/ and e2e/"
"$tsc" -p console/tsconfig.json
"$tsc" -p e2e/tsconfig.json
report=$(bash scripts/build-console.sh)
echo "$report"
gate_note "$(awk '/^first load/ {printf "first load %s B gzip (budget %s B)", $3, $5}' <<<"$report")"
