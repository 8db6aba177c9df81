#!/usr/bin/env bash
# Local development secrets. Never used in production: there, set them with
# `wrangler secret put` (Workers) or Spin variables (see README: secrets).
#
#   dev-secrets.sh            create .dev.vars with fresh keys unless it has them
#   dev-secrets.sh --print    print a fresh set as NAME=value lines (for tests)
#
# JWT_SIGNING_KEYS is `kid:seed` with a 32-byte random seed in base64url;
# BOOTSTRAP_TOKEN enables POST /v1/bootstrap while no tenant exists;
# WEBHOOK_SIGNING_SECRET is the key each tenant's webhook secret (the key of
# Tepi-Signature) is derived from.
source "$(dirname "$0")/lib.sh"

random_b64url() { head -c "$1" /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '='; }

fresh() {
  echo "JWT_SIGNING_KEYS=dev-$(date -u +%Y%m%d):$(random_b64url 32)"
  echo "BOOTSTRAP_TOKEN=$(random_b64url 32)"
  echo "WEBHOOK_SIGNING_SECRET=$(random_b64url 32)"
}

if [[ ${1:-} == --print ]]; then
  fresh
  exit 0
fi

file="$TEPI_ROOT/.dev.vars"
touch "$file"
chmod 600 "$file"
while IFS= read -r line; do
  name=${line%%=*}
  if grep -q "^$name=" "$file"; then
    log "$name: kept from .dev.vars"
  else
    echo "$line" >>"$file"
    log "$name: generated into .dev.vars (git-ignored)"
  fi
done < <(fresh)
