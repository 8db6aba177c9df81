#!/usr/bin/env bash
# Deploys the Workers build to Cloudflare (make deploy; the Deploy workflow
# runs it after make build on main's green CI):
#
#  1. checks, before anything changes: the real D1 and KV ids are in
#     wrangler.toml (not the placeholder zeros of the lines marked
#     "deploy:"), the release build is there (make build), the credentials
#     are set, and each secret that is set looks like what README.md,
#     "Secrets", asks for;
#  2. applies the D1 migrations (wrangler d1 migrations apply DB --remote),
#     so the schema is in place before the code that needs it;
#  3. puts each secret that is set (JWT_SIGNING_KEYS, BOOTSTRAP_TOKEN,
#     WEBHOOK_SIGNING_SECRET) with wrangler secret put, the value on
#     standard input: never an argument, never printed; an unset one keeps
#     the value the Worker already has;
#  4. wrangler deploy, of the build make build left (TEPI_SKIP_BUILD=1:
#     wrangler.toml's [build] command does not build again).
#
#   CLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID   required (not for a dry run)
#   JWT_SIGNING_KEYS, BOOTSTRAP_TOKEN, WEBHOOK_SIGNING_SECRET   optional
#   DEPLOY_DRY_RUN=1   the checks, then wrangler deploy --dry-run --outdir
#                      target/deploy: offline, needs no credentials, changes
#                      nothing (no migration, no secret)
#   DEPLOY_CONFIG      the wrangler configuration (default wrangler.toml; a
#                      copy must sit next to it, since its paths are relative)
source "$(dirname "$0")/lib.sh"

cd "$TEPI_ROOT"
config=${DEPLOY_CONFIG:-wrangler.toml}
dry=${DEPLOY_DRY_RUN:-0}
[[ $dry == 0 || $dry == 1 ]] || die "DEPLOY_DRY_RUN is 0 or 1, got '$dry'"
[[ -f $config ]] || die "no wrangler configuration at $config"
wrangler=("$TEPI_ROOT/node_modules/.bin/wrangler")
[[ -x ${wrangler[0]} ]] || die "wrangler missing in node_modules (run make setup)"

# 1. Checks.
# The ids wrangler.toml ships with are all zeros: a deploy with them would
# fail half-way (or bind to nothing).
if placeholders=$(grep -nE '"0{8}-?0{4}-?0{4}-?0{4}-?0{12}"' "$config"); then
  printf '  %s\n' "$placeholders" >&2
  die "$config still has the placeholder ids above: create the resources and put their ids on the lines marked \"deploy:\"
  npx wrangler d1 create tepi                 -> database_id of [[d1_databases]] DB
  npx wrangler kv namespace create CACHE      -> id of [[kv_namespaces]] CACHE
(README.md, \"Deploying\"), commit them, and deploy again"
fi
[[ -f $WORKER_WASM && -f $WORKER_OUT/index.js ]] || die "no Workers build in ${WORKER_OUT#"$TEPI_ROOT"/} (run make build first)"
[[ -f console/dist/console/index.html ]] || die "no console build in console/dist (run make build first)"
grep -q '^  Content-Security-Policy: ' console/dist/_headers 2>/dev/null ||
  die "console/dist/_headers has no Content-Security-Policy: rebuild the console (scripts/build-console.sh)"

if [[ $dry == 0 ]]; then
  for var in CLOUDFLARE_API_TOKEN CLOUDFLARE_ACCOUNT_ID; do
    [[ -n ${!var:-} ]] || die "set $var (a Cloudflare API token allowed to edit Workers and D1, and its account id)"
  done
fi

secrets=()
for name in JWT_SIGNING_KEYS BOOTSTRAP_TOKEN WEBHOOK_SIGNING_SECRET; do
  [[ -n ${!name:-} ]] && secrets+=("$name")
done
# The shapes README.md, "Secrets", documents; a value is never printed.
if [[ -n ${JWT_SIGNING_KEYS:-} ]]; then
  IFS=',' read -ra pairs <<<"$JWT_SIGNING_KEYS"
  for pair in "${pairs[@]}"; do
    [[ $pair =~ ^[[:space:]]*[A-Za-z0-9._-]{1,64}:[A-Za-z0-9_-]{43}=*[[:space:]]*$ ]] ||
      die "JWT_SIGNING_KEYS is not kid:seed[,kid:seed] with 32-byte base64url seeds (scripts/dev-secrets.sh --print makes one)"
  done
fi
for name in BOOTSTRAP_TOKEN WEBHOOK_SIGNING_SECRET; do
  value=${!name:-}
  [[ -z $value || ${#value} -ge 32 ]] || die "$name is shorter than 32 characters"
done
unset value

if [[ $dry == 1 ]]; then
  log "dry run: wrangler deploy --dry-run --outdir target/deploy (nothing is changed)"
  log "would apply the D1 migrations in migrations/ ($(find migrations -name '*.sql' | wc -l) files) to DB --remote"
  log "would put the secrets: ${secrets[*]:-none (each keeps its current value)}"
  rm -rf target/deploy
  TEPI_SKIP_BUILD=1 "${wrangler[@]}" deploy --config "$config" --dry-run --outdir target/deploy
  [[ -f target/deploy/index.js ]] || die "wrangler deploy --dry-run wrote no target/deploy/index.js"
  log "dry run passed: the bundle is in target/deploy"
  exit 0
fi

# 2. Migrations first: the code deployed next may need them (a migration is
# written so that the code still running meanwhile keeps working).
log "applying the D1 migrations (DB, remote)"
"${wrangler[@]}" d1 migrations apply DB --remote --config "$config"

# 3. Secrets, each from standard input.
for name in "${secrets[@]}"; do
  log "putting the secret $name"
  printf '%s' "${!name}" | "${wrangler[@]}" secret put "$name" --config "$config"
done
((${#secrets[@]})) || log "no secret set in the environment: the Worker keeps the ones it has"

# 4. The code.
log "deploying the Worker"
TEPI_SKIP_BUILD=1 "${wrangler[@]}" deploy --config "$config"
log "deployed; bootstrap the first tenant once (README.md, \"Secrets\"), then delete BOOTSTRAP_TOKEN"
