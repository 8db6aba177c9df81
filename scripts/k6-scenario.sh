#!/usr/bin/env bash
# Runs one load scenario of k6/ (smoke, stress, soak or spike: the mixed
# traffic of k6/lib/traffic.js) against a running Tepi API — wrangler dev,
# a Spin app, or a deployed Worker — and writes its summary, then, when
# asked, compares it with the branch's baseline (scripts/k6-compare.py).
# Starts no server and builds nothing. docs/ops.md, "Load tests (k6)".
#
#   scripts/k6-scenario.sh smoke|stress|soak|spike
#
#   BASE_URL        the API's origin, e.g. http://127.0.0.1:8787 (required)
#   TENANT, EMAIL, PASSWORD   an admin of the tenant under load (required;
#                   the password from the environment, never an argument)
#   METRICS_KEY     an API key with metrics:read (required)
#   PUSH_KEY        an API key with metrics:push (required unless
#                   WEIGHTS=metrics_push=0)
#   DRAIN_KEY       an API key with jobs:drain (optional; Spin: lets the
#                   teardown drain what the app's own drains left)
#   SUMMARY_DIR     where <scenario>.json and .txt go (default target/k6)
#   K6_WEB_DASHBOARD=true K6_WEB_DASHBOARD_EXPORT=FILE.html   k6's HTML report
#   each scenario's own variables (RATE, DURATION, MAX_RATE, STAGE, …): see
#   the header of k6/<scenario>.js
#
# Comparison with a baseline, after the run:
#   COMPARE=1       compare; needs BASELINE_FILE, or BASELINE_KEY (a
#                   baselines:write key of the API that keeps baselines)
#   BASELINE_FILE   a summary JSON (or a stored baseline record) to compare with
#   BASELINE_URL    the API that keeps baselines (default BASE_URL)
#   BRANCH          the branch whose baseline to use (default: the checkout's
#                   branch); the API falls back to main's
#   RECORD=1        also record this run as the branch's baseline (API only)
#   TOLERANCE=20, MIN_MS=5, ERROR_PP=0.5, MIN_COUNT=1   see scripts/k6-compare.py
#
# Exit status: k6's (0 passed, 99 a threshold crossed, other: k6 failed),
# else the comparison's (1 a regression, 2 a usage or I/O error).
source "$(dirname "$0")/lib.sh"

scenario=${1:-}
case $scenario in
  smoke | stress | soak | spike) ;;
  *) die "usage: scripts/k6-scenario.sh smoke|stress|soak|spike" ;;
esac
(($# == 1)) || die "usage: scripts/k6-scenario.sh smoke|stress|soak|spike"
[[ -n ${BASE_URL:-} ]] || die "set BASE_URL, the API's origin (e.g. http://127.0.0.1:8787)"
for var in TENANT EMAIL PASSWORD METRICS_KEY; do
  [[ -n ${!var:-} ]] || die "set $var (see scripts/k6-scenario.sh)"
done
[[ -x $K6_BIN ]] || die "k6 missing at $K6_BIN (run scripts/tools.sh)"

SUMMARY_DIR=${SUMMARY_DIR:-$TEPI_ROOT/target/k6}
mkdir -p "$SUMMARY_DIR"
SUMMARY_DIR=$(cd "$SUMMARY_DIR" && pwd)
export SUMMARY_DIR BASE_URL
if [[ -n ${K6_WEB_DASHBOARD_EXPORT:-} ]]; then
  mkdir -p "$(dirname "$K6_WEB_DASHBOARD_EXPORT")"
fi

compare=()
if [[ ${COMPARE:-0} == 1 ]]; then
  if [[ -n ${BASELINE_FILE:-} ]]; then
    [[ -r $BASELINE_FILE ]] || die "BASELINE_FILE $BASELINE_FILE cannot be read"
    compare=(--baseline "$BASELINE_FILE")
  elif [[ -n ${BASELINE_KEY:-} ]]; then
    branch=${BRANCH:-$(git -C "$TEPI_ROOT" rev-parse --abbrev-ref HEAD 2>/dev/null || true)}
    [[ -n $branch && $branch != HEAD ]] || die "set BRANCH (the checkout is on no branch)"
    compare=(--api "${BASELINE_URL:-$BASE_URL}" --branch "$branch")
    if [[ ${RECORD:-0} == 1 ]]; then
      compare+=(--record)
      commit=$(git -C "$TEPI_ROOT" rev-parse HEAD 2>/dev/null || true)
      [[ -z $commit ]] || compare+=(--commit "$commit")
    fi
  else
    die "COMPARE=1 needs BASELINE_FILE or BASELINE_KEY (and BRANCH)"
  fi
  compare+=(--tolerance "${TOLERANCE:-20}" --min-ms "${MIN_MS:-5}" --error-pp "${ERROR_PP:-0.5}"
    --min-count "${MIN_COUNT:-1}")
fi

log "k6 $scenario against $BASE_URL (load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores)"
rm -f "$SUMMARY_DIR/$scenario.json" "$SUMMARY_DIR/$scenario.txt"
# k6's progress bar on a terminal; elsewhere (CI, a pipe) only the summary.
quiet=(--quiet --no-color)
[[ -t 1 ]] && quiet=()
rc=0
"$K6_BIN" run "${quiet[@]}" --no-usage-report "$TEPI_ROOT/k6/$scenario.js" || rc=$?
summary="$SUMMARY_DIR/$scenario.json"
[[ -f $summary ]] || die "k6 exited $rc and wrote no $summary"
case $rc in
  0) log "$scenario: every threshold held ($summary)" ;;
  99) log "$scenario: a threshold was crossed ($summary)" ;;
  *) log "$scenario: k6 exited $rc" ;;
esac

if ((${#compare[@]})); then
  # The key travels in the environment, never on the command line.
  crc=0
  BASELINE_KEY=${BASELINE_KEY:-} python3 "$TEPI_ROOT/scripts/k6-compare.py" "$summary" "${compare[@]}" || crc=$?
  ((rc != 0)) || rc=$crc
fi
exit "$rc"
