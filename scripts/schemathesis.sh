#!/usr/bin/env bash
# Contract fuzzing: schemathesis generates requests from docs/openapi.yaml and
# sends them to the Workers build under `wrangler dev`, as an operator admin
# (so protected routes are reached). It fails on any 5xx and on any answer
# whose status, media type or body the document does not allow; the number
# of test cases is printed. Nothing here measures speed: a request may take
# up to 60 s, and Hypothesis' too_slow health check (which times how fast
# cases are generated, i.e. the machine) is off.
#
#   SCHEMATHESIS_MAX_EXAMPLES=25   examples per operation and phase
source "$(dirname "$0")/lib.sh"
source "$TEPI_ROOT/scripts/serve.sh"
trap cleanup_services EXIT

PORT=${TEPI_SCHEMATHESIS_PORT:-18793}
[[ -f $WORKER_WASM ]] || die "no Workers build at $WORKER_WASM (run make build)"
[[ -x $SCHEMATHESIS_BIN ]] || die "schemathesis missing at $SCHEMATHESIS_BIN (run scripts/tools.sh)"

# Fuzzing sends many requests from one address: no class may throttle it.
export TEPI_TEST_RATE_LIMITS="RATE_LIMIT_LOGIN=1000/1s RATE_LIMIT_PUBLIC=1000/1s RATE_LIMIT_API=1000/1s RATE_LIMIT_ADMIN=1000/1s RATE_LIMIT_PUSH=1000/1s RATE_LIMIT_ALERTS=1000/1s"
start_workers "$PORT"
url="http://127.0.0.1:$PORT"
password="st-${TEPI_TEST_BOOTSTRAP_TOKEN:0:24}" # pragma: allowlist secret
export BOOTSTRAP_TOKEN=$TEPI_TEST_BOOTSTRAP_TOKEN
TEPI_BOOTSTRAP_PASSWORD=$password bash "$TEPI_ROOT/scripts/bootstrap.sh" "$url" fuzz admin@fuzz.test Fuzz >/dev/null
token=$(curl -fsS "$url/v1/auth/login" -H 'content-type: application/json' \
  --data-binary @<(TENANT=fuzz EMAIL=admin@fuzz.test PASSWORD=$password python3 -c '
import json, os
print(json.dumps({"tenant": os.environ["TENANT"], "email": os.environ["EMAIL"], "password": os.environ["PASSWORD"]}))') |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

log "schemathesis against $url"
report="$TEPI_RUN_DIR/schemathesis.txt"
rc=0
"$SCHEMATHESIS_BIN" run "$TEPI_ROOT/docs/openapi.yaml" --url "$url" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --header "Authorization: Bearer $token" \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-25}" --phases examples,coverage,fuzzing,stateful \
  --workers 1 --seed 1 --no-color \
  --request-timeout 60 --suppress-health-check too_slow 2>&1 | tee "$report" || rc=$?
cases=$(grep -Eo '[0-9]+ generated' "$report" | tail -n1 || true)
gate_note "${cases:-? generated} test cases"
exit "$rc"
