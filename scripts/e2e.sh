#!/usr/bin/env bash
# The browser gate: the operator console in Chromium, driven by Playwright
# (e2e/), against both builds started here on 127.0.0.1 with throwaway
# secrets and the operator tenant bootstrapped:
#
#   workers  the Workers build under wrangler dev: the smoke (sign-in,
#            dashboard, request ids and traces, CSP), the operator's journey
#            (traffic on the dashboard, a baseline compared, an alert firing
#            and resolving, Web Vitals beacons, the access log, sign-out) and
#            axe-core on every page (no serious or critical violation);
#   spin     the Spin build under tools/spin-test-host: the smoke.
#
# Outputs, kept after the run (open the reports with
# `npx playwright show-report target/e2e/report/workers`):
#   target/e2e/report/{workers,spin}   HTML reports (traces of failures)
#   target/e2e/screenshots/            <page>-<project>.png, full page
#   target/e2e/axe/                    each page's violations by impact
#
#   TEPI_E2E_WORKERS_PORT=18850  TEPI_E2E_SPIN_PORT=18851
#   CHROMIUM_BIN=/usr/bin/chromium (Debian's package, installed by make setup)
#   E2E_ARGS="--grep ..."             extra arguments for playwright test
source "$(dirname "$0")/lib.sh"
source "$TEPI_ROOT/scripts/serve.sh"
trap cleanup_services EXIT

WORKERS_PORT=${TEPI_E2E_WORKERS_PORT:-18850}
SPIN_PORT=${TEPI_E2E_SPIN_PORT:-18851}
export CHROMIUM_BIN=${CHROMIUM_BIN:-/usr/bin/chromium}
OUT="$TEPI_ROOT/target/e2e"
CONSOLE_INDEX="$TEPI_ROOT/console/dist/console/index.html"

[[ -x $CHROMIUM_BIN ]] ||
  die "no Chromium at $CHROMIUM_BIN: run make setup as root (it installs Debian's chromium), or apt-get install chromium"
[[ -f $WORKER_WASM ]] || die "no Workers build at $WORKER_WASM (run make build)"
[[ -f $SPIN_WASM ]] || die "no Spin build at $SPIN_WASM (run make build)"
[[ -x $SPIN_HOST_BIN ]] || die "no spin-test-host at $SPIN_HOST_BIN (run make setup)"
[[ -x $TEPI_ROOT/node_modules/.bin/playwright && -x $TEPI_ROOT/node_modules/.bin/tsc ]] ||
  die "Playwright or TypeScript missing in node_modules (run make setup)"

cd "$TEPI_ROOT"
log "type-checking e2e/"
tsc -p e2e/tsconfig.json || die "the browser tests do not type-check"

# The console's static files: built when missing or older than a source.
if [[ ! -f $CONSOLE_INDEX ]] ||
  [[ -n $(find console -path console/dist -prune -o -path console/node_modules -prune -o \
    -type f -newer "$CONSOLE_INDEX" -print -quit) ]]; then
  [[ -f scripts/build-console.sh ]] || die "no console build at $CONSOLE_INDEX and no scripts/build-console.sh"
  log "building the console (scripts/build-console.sh) and the Spin component that embeds it"
  bash scripts/build-console.sh
  [[ -f $CONSOLE_INDEX ]] || die "scripts/build-console.sh did not write $CONSOLE_INDEX"
  bash scripts/build-spin.sh console
fi

rm -rf "$OUT"
mkdir -p "$OUT"

# Nothing here is meant to be throttled (every test signs in from
# 127.0.0.1); isolates flush their counts every second, so the dashboard
# sees the traffic the journey sends within seconds.
export TEPI_TEST_RATE_LIMITS="RATE_LIMIT_LOGIN=1000/1s RATE_LIMIT_PUBLIC=1000/1s RATE_LIMIT_API=1000/1s RATE_LIMIT_ADMIN=1000/1s RATE_LIMIT_PUSH=1000/1s RATE_LIMIT_ALERTS=1000/1s"
export TEPI_TEST_JOB_VARS="WEBHOOK_HTTP_HOSTS=127.0.0.1 WEBHOOK_ALLOWED_HOSTS=127.0.0.1 METRICS_FLUSH_SECS=1"
load_test_secrets

start_workers "$WORKERS_PORT"
start_spin "$SPIN_PORT"
export E2E_WORKERS_URL="http://127.0.0.1:$WORKERS_PORT" E2E_SPIN_URL="http://127.0.0.1:$SPIN_PORT"
export E2E_WORKERS_LOG="$TEPI_RUN_DIR/wrangler.log"
# The operator tenant on each build, with the documented bootstrap; the
# tests sign in as its admin (and log in through the API for their setup).
operator_token "$E2E_WORKERS_URL" >/dev/null
operator_token "$E2E_SPIN_URL" >/dev/null
export E2E_TENANT=ops E2E_EMAIL=root@ops.test E2E_PASSWORD="op-${TEPI_TEST_BOOTSTRAP_TOKEN:0:24}" # pragma: allowlist secret (derived from this run's random token)
export E2E_SCREENSHOT_DIR="$OUT/screenshots" E2E_AXE_DIR="$OUT/axe"

failures=()
declare -A passed

# stats FILE — "passed flaky failed skipped" from Playwright's JSON report.
stats() {
  python3 - "$1" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))["stats"]
except (OSError, ValueError, KeyError):
    print("0 0 0 0")
else:
    print(s["expected"], s["flaky"], s["unexpected"], s["skipped"])
PY
}

# run PROJECT — the project's specs; its report in target/e2e/report/PROJECT.
run() {
  local project=$1 rc=0 ok flaky failed skipped
  log "$project: playwright test --project=$project"
  # shellcheck disable=SC2086 # E2E_ARGS is a list of arguments
  E2E_REPORT_DIR="$OUT/report/$project" E2E_OUTPUT_DIR="$OUT/results/$project" \
    E2E_JSON_REPORT="$OUT/$project.json" \
    playwright test -c e2e/playwright.config.ts --project="$project" ${E2E_ARGS:-} || rc=$?
  read -r ok flaky failed skipped < <(stats "$OUT/$project.json")
  passed[$project]="$((ok + flaky)) passed$( ((flaky == 0)) || echo " ($flaky after a retry)")$( ((skipped == 0)) || echo ", $skipped skipped")"
  if ((rc != 0)); then
    failures+=("$project: $failed failed (playwright exit $rc; report: npx playwright show-report target/e2e/report/$project)")
  elif ((ok + flaky == 0)); then
    failures+=("$project: no test ran")
  fi
}

run workers
run spin

# axe: pages audited and their violations (target/e2e/axe/<page>.json).
axe=$(python3 - "$OUT/axe" <<'PY'
import glob, json, os, sys
pages = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.json")))]
blocking = sum(p["blocking"] for p in pages)
other = sum(n for p in pages for impact, n in p["violations"].items() if impact not in ("serious", "critical"))
print(f"axe {len(pages)} pages {blocking} serious" + (f" ({other} minor or moderate)" if other else ""))
PY
)

log "screenshots in target/e2e/screenshots: $(cd "$OUT/screenshots" 2>/dev/null && ls | tr '\n' ' ')"
if ((${#failures[@]} > 0)); then
  printf 'FAIL %s\n' "${failures[@]}" >&2
  die "${#failures[@]} browser run(s) failed (service logs in $TEPI_RUN_DIR)"
fi
gate_note "workers journey ${passed[workers]}, spin smoke ${passed[spin]}, $axe"
log "e2e: the console passed on both builds"
