#!/usr/bin/env bash
# Operations as code, checked offline: the Prometheus configuration, rules and
# rule tests under ops/prometheus, and the Alertmanager configuration under
# ops/alertmanager (docs/ops.md, "Prometheus rules and alerts"). Nothing is
# built and no server runs.
#
#   promtool check config   ops/prometheus/prometheus.yml, in a temporary copy
#                           with throwaway key files (promtool insists that a
#                           credentials_file exists; the real keys stay out of
#                           git, in ops/*/secrets/)
#   promtool check rules    ops/prometheus/rules/*.yml
#   promtool test rules     ops/prometheus/tests/*.yml, file by file
#   amtool check-config     ops/alertmanager/alertmanager.yml, and both
#                           severities routed to the receiver `tepi`
#   scripts/ops-rules.py    every alert has severity, summary, description and
#                           a runbook_url whose anchor is a heading of
#                           docs/ops.md's Runbooks, a firing and a silent test
#
# Prints a line per alert and fails (exit 1) on the first problem of any
# step, after running them all.
source "$(dirname "$0")/lib.sh"

OPS="$TEPI_ROOT/ops"
PROM_DIR="$OPS/prometheus"
AM_CONFIG="$OPS/alertmanager/alertmanager.yml"

ensure_promtool
ensure_alertmanager
PYTHON="$TEPI_VENV/bin/python"
[[ -x $PYTHON ]] || PYTHON=python3
"$PYTHON" -c 'import yaml' 2>/dev/null || die "PyYAML is missing for $PYTHON: run scripts/tools.sh"
log "$(promtool --version 2>&1 | head -n1); $(amtool --version 2>&1 | head -n1)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tepi-ops-rules.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

failures=0
fail() { printf 'FAIL %s\n' "$*" >&2; failures=$((failures + 1)); }

# step NAME CMD... — runs CMD quietly; its output is shown when it fails.
step() {
  local name=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  if ((rc == 0)); then
    echo "ok   $name"
  else
    sed 's/^/       /' <<<"$out" >&2
    fail "$name (exit $rc)"
  fi
}

log "Prometheus configuration"
# A copy of the configuration and its rules, with a throwaway file for each
# relative credentials_file it names.
mkdir -p "$TMP/prometheus"
cp "$PROM_DIR/prometheus.yml" "$TMP/prometheus/"
cp -r "$PROM_DIR/rules" "$TMP/prometheus/"
while read -r file; do
  [[ -n $file && $file != /* ]] || continue
  mkdir -p "$(dirname "$TMP/prometheus/$file")"
  printf 'throwaway-not-a-key\n' >"$TMP/prometheus/$file"
done < <(sed -n 's/^[[:space:]]*credentials_file:[[:space:]]*//p' "$PROM_DIR/prometheus.yml" | tr -d "\"'" | sort -u)
step "promtool check config ops/prometheus/prometheus.yml" promtool check config "$TMP/prometheus/prometheus.yml"
step "promtool check rules ops/prometheus/rules/*.yml" promtool check rules "$PROM_DIR"/rules/*.yml

log "Prometheus rule tests"
# A failed file's output goes to ops-rules.py, which names the alerts whose
# cases failed in it.
failed_tests=()
for test in "$PROM_DIR"/tests/*.yml; do
  rc=0
  promtool test rules "$test" >"$TMP/test.out" 2>&1 || rc=$?
  if ((rc == 0)); then
    echo "ok   promtool test rules ops/prometheus/tests/${test##*/}"
  else
    sed 's/^/       /' "$TMP/test.out" >&2
    fail "promtool test rules ops/prometheus/tests/${test##*/} (exit $rc)"
    cp "$TMP/test.out" "$TMP/${test##*/}.out"
    failed_tests+=(--failed "$test=$TMP/${test##*/}.out")
  fi
done

log "Alertmanager configuration"
step "amtool check-config ops/alertmanager/alertmanager.yml" amtool check-config "$AM_CONFIG"
for severity in critical warning; do
  receiver=$(amtool config routes test --config.file="$AM_CONFIG" alertname=TepiRoutingCheck "severity=$severity" 2>/dev/null) || true
  if [[ $receiver == tepi ]]; then
    echo "ok   severity=$severity routes to the receiver tepi"
  else
    fail "severity=$severity routes to '$receiver', not the receiver tepi"
  fi
done

log "Alerts: labels, annotations, runbooks, tests"
rc=0
out=$("$PYTHON" "$TEPI_ROOT/scripts/ops-rules.py" --rules "$PROM_DIR/rules" --tests "$PROM_DIR/tests" \
  --docs "$TEPI_ROOT/docs/ops.md" "${failed_tests[@]}") || rc=$?
sed '$d' <<<"$out"
figure=$(tail -n1 <<<"$out")
((rc == 0)) || fail "alert checks (scripts/ops-rules.py exited $rc)"

((failures == 0)) || die "$failures ops check(s) failed: $figure"
gate_note "$figure, configs clean"
