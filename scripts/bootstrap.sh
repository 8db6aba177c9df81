#!/usr/bin/env bash
# Creates the first (operator) tenant and its admin through POST /v1/bootstrap.
# Works once per deployment: afterwards the API answers 409 already_bootstrapped.
#
#   scripts/bootstrap.sh URL TENANT EMAIL [NAME]
#
#   URL       the API, e.g. http://127.0.0.1:8787 (make dev) or your deployment
#   TENANT    the tenant id: 1-63 characters of a-z, 0-9 and '-'
#   EMAIL     the admin's email
#   NAME      the tenant's display name (default: TENANT)
#
# The bootstrap token comes from BOOTSTRAP_TOKEN, else from .dev.vars (local).
# The admin password comes from TEPI_BOOTSTRAP_PASSWORD, else it is asked for
# twice without echo. Nothing is stored; no default password exists.
#
# The API's answer goes to stdout (log lines to stderr). It holds the tenant's
# webhook signing secret (`webhook_secret`, `whsec_…`, or null without
# WEBHOOK_SIGNING_SECRET), shown this once: give it to the tenant's webhook
# receivers. Lost, an admin rotates it (POST /v1/webhook-secret/rotate).
source "$(dirname "$0")/lib.sh"

(($# >= 3 && $# <= 4)) || die "usage: scripts/bootstrap.sh URL TENANT EMAIL [NAME]"
url=${1%/} tenant=$2 email=$3 name=${4:-$2}

token=${BOOTSTRAP_TOKEN:-}
if [[ -z $token && -f $TEPI_ROOT/.dev.vars ]]; then
  token=$(sed -n 's/^BOOTSTRAP_TOKEN=//p' "$TEPI_ROOT/.dev.vars" | tail -n1)
fi
[[ -n $token ]] || die "set BOOTSTRAP_TOKEN (wrangler secret put BOOTSTRAP_TOKEN sets it on the Worker)"

password=${TEPI_BOOTSTRAP_PASSWORD:-}
if [[ -z $password ]]; then
  [[ -t 0 ]] || die "set TEPI_BOOTSTRAP_PASSWORD or run interactively"
  read -rsp "Password for $email (12-128 characters): " password && echo
  read -rsp "Again: " again && echo
  [[ $password == "$again" ]] || die "the passwords differ"
fi

body=$(TENANT=$tenant NAME=$name EMAIL=$email PASSWORD=$password python3 -c '
import json, os
print(json.dumps({k.lower(): os.environ[k] for k in ("TENANT", "NAME", "EMAIL", "PASSWORD")}))')

# The token and body go through stdin/a header file, never the process list.
response=$(mktemp)
trap 'rm -f "$response"' EXIT
status=$(curl -sS --max-time 120 -o "$response" -w '%{http_code}' -X POST "$url/v1/bootstrap" \
  -H 'content-type: application/json' -H @- --data-binary @<(printf '%s' "$body") \
  <<<"authorization: Bearer $token") || die "could not reach $url"
cat "$response" && echo
case $status in
  201) log "tenant $tenant bootstrapped; log in with POST $url/v1/auth/login"
    log "its webhook_secret above is shown only this once: keep it for the tenant's webhook receivers" ;;
  409) die "already bootstrapped: a tenant exists" ;;
  *) die "bootstrap failed with HTTP $status" ;;
esac
