#!/usr/bin/env bash
# A k6 scenario (smoke, stress, soak, spike) against BASE_URL when it is
# set (scripts/k6-scenario.sh: a running API, local or deployed, with its
# credentials in the environment), or else against a local build this
# script starts on 127.0.0.1 with throwaway secrets and stops at the end:
# it bootstraps the operator tenant, creates the keys the traffic needs
# and runs the scenario. The summary goes to SUMMARY_DIR (default
# target/k6/<target>).
#
#   scripts/k6-local.sh smoke|stress|soak|spike
#   TARGET=workers|spin   the local build (default workers)
#   TEPI_K6_PORT=18850    its port
#   the scenario's own variables (RATE, DURATION, MAX_RATE, …): k6/<scenario>.js
source "$(dirname "$0")/lib.sh"

scenario=${1:-}
[[ $scenario =~ ^(smoke|stress|soak|spike)$ ]] || die "usage: scripts/k6-local.sh smoke|stress|soak|spike"
if [[ -n ${BASE_URL:-} ]]; then
  exec bash "$TEPI_ROOT/scripts/k6-scenario.sh" "$scenario"
fi

source "$TEPI_ROOT/scripts/serve.sh"
trap cleanup_services EXIT
TARGET=${TARGET:-workers}
PORT=${TEPI_K6_PORT:-18850}
export TEPI_TEST_RATE_LIMITS="RATE_LIMIT_LOGIN=100000/1s RATE_LIMIT_PUBLIC=100000/1s RATE_LIMIT_API=100000/1s RATE_LIMIT_ADMIN=100000/1s RATE_LIMIT_PUSH=100000/1s RATE_LIMIT_ALERTS=100000/1s"
export TEPI_TEST_JOB_VARS="WEBHOOK_HTTP_HOSTS=127.0.0.1 WEBHOOK_ALLOWED_HOSTS=127.0.0.1"
case $TARGET in
  workers) start_workers "$PORT" ;;
  spin) start_spin "$PORT" ;;
  *) die "TARGET is workers or spin, not '$TARGET'" ;;
esac
url="http://127.0.0.1:$PORT"
token=$(operator_token "$url")
export BASE_URL=$url TENANT=ops EMAIL=root@ops.test PASSWORD="op-${TEPI_TEST_BOOTSTRAP_TOKEN:0:24}" # pragma: allowlist secret (derived from this run's random token)
METRICS_KEY=$(api_key "$url" "$token" "k6 scrape" metrics:read)
PUSH_KEY=$(api_key "$url" "$token" "k6 push" metrics:push)
DRAIN_KEY=$(api_key "$url" "$token" "k6 drain" jobs:drain)
export METRICS_KEY PUSH_KEY DRAIN_KEY LOOPBACK_ONLY=1
export SUMMARY_DIR=${SUMMARY_DIR:-$TEPI_ROOT/target/k6/$TARGET}
bash "$TEPI_ROOT/scripts/k6-scenario.sh" "$scenario"
