#!/usr/bin/env bash
# The deploy script's gate (make deploy-check), offline and without
# credentials, after make build:
#  1. scripts/deploy.sh refuses wrangler.toml as committed (the placeholder
#     ids of the lines marked "deploy:") and says how to fill them in;
#  2. against a copy of wrangler.toml with made-up ids, it refuses a real
#     deploy without CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID, and a
#     secret shorter than README.md, "Secrets", allows;
#  3. the copy's dry run (DEPLOY_DRY_RUN=1: wrangler deploy --dry-run
#     --outdir target/deploy) passes with the three secrets set, bundles
#     the Worker, names the secrets it would put and prints none of their
#     values.
source "$(dirname "$0")/lib.sh"

cd "$TEPI_ROOT"
[[ -f $WORKER_WASM ]] || die "no Workers build at $WORKER_WASM (run make build)"
# Next to wrangler.toml, so that its relative paths hold.
copy="$TEPI_ROOT/.wrangler-deploy-check.toml"
out=$(mktemp -d "${TMPDIR:-/tmp}/tepi-deploy-check.XXXXXX")
trap 'rm -rf "$out" "$copy"' EXIT
unset CLOUDFLARE_API_TOKEN CLOUDFLARE_ACCOUNT_ID JWT_SIGNING_KEYS BOOTSTRAP_TOKEN WEBHOOK_SIGNING_SECRET DEPLOY_CONFIG

# expect_refusal NAME WORDS ENV... — scripts/deploy.sh must exit non-zero
# with WORDS in its message.
expect_refusal() {
  local name=$1 words=$2 rc=0
  shift 2
  env "$@" bash scripts/deploy.sh >"$out/$name.txt" 2>&1 || rc=$?
  if ((rc == 0)) || ! grep -q "$words" "$out/$name.txt"; then
    cat "$out/$name.txt" >&2
    die "scripts/deploy.sh did not refuse: $name (exit $rc; want a failure saying \"$words\")"
  fi
  log "refused as it should: $name"
}

expect_refusal "the placeholder ids" 'placeholder ids' DEPLOY_DRY_RUN=1

sed -E -e 's/"0{8}-0{4}-0{4}-0{4}-0{12}"/"11111111-2222-3333-4444-555555555555"/' \
  -e 's/"0{32}"/"deadbeefdeadbeefdeadbeefdeadbeef"/' wrangler.toml >"$copy"
! grep -qE '"0{8}-?0{4}-?0{4}-?0{4}-?0{12}"' "$copy" || die "the copy of wrangler.toml still has a placeholder id"
expect_refusal "no credentials" 'CLOUDFLARE_API_TOKEN' DEPLOY_CONFIG="$copy"
expect_refusal "a short BOOTSTRAP_TOKEN" 'shorter than 32' DEPLOY_CONFIG="$copy" DEPLOY_DRY_RUN=1 BOOTSTRAP_TOKEN=short

# This run's throwaway secrets, in the shapes production uses.
while IFS= read -r line; do export "${line?}"; done < <(bash scripts/dev-secrets.sh --print)
rc=0
DEPLOY_CONFIG=$copy DEPLOY_DRY_RUN=1 bash scripts/deploy.sh >"$out/dry-run.txt" 2>&1 || rc=$?
if ((rc != 0)); then
  cat "$out/dry-run.txt" >&2
  die "the dry run failed (exit $rc)"
fi
grep -q 'would put the secrets: JWT_SIGNING_KEYS BOOTSTRAP_TOKEN WEBHOOK_SIGNING_SECRET' "$out/dry-run.txt" ||
  { cat "$out/dry-run.txt" >&2; die "the dry run did not name the three secrets it would put"; }
for name in JWT_SIGNING_KEYS BOOTSTRAP_TOKEN WEBHOOK_SIGNING_SECRET; do
  ! grep -qF "${!name#*:}" "$out/dry-run.txt" || die "the dry run printed the value of $name"
done
if [[ ! -f target/deploy/index.js ]] || ! compgen -G 'target/deploy/*.wasm' >/dev/null; then
  die "the dry run left no bundle (index.js and the Wasm) in target/deploy"
fi
upload=$(grep -oE 'Total Upload: .*' "$out/dry-run.txt" | head -n 1)
gate_note "3 refusals (placeholder ids, no credentials, a short secret); dry run ${upload:-passed}, no secret value printed"
