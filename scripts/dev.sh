#!/usr/bin/env bash
# Sets up and serves the API under `wrangler dev` on 127.0.0.1:8787, with
# local D1, KV, R2, Queues, Durable Objects and rate limiting simulated by
# wrangler (state in .wrangler/state). Rebuilds when core or adapter
# sources change. PORT=... picks another port. Local secrets (signing keys,
# bootstrap token) are generated into .dev.vars when absent.
source "$(dirname "$0")/lib.sh"

PORT=${PORT:-8787}
export TEPI_WORKER_BUILD_FLAGS=--no-opt # wasm-opt only for release artifacts

bash "$TEPI_ROOT/scripts/tools.sh" dev
log "building the Workers artifact (no wasm-opt)"
bash "$TEPI_ROOT/scripts/build-worker.sh"

bash "$TEPI_ROOT/scripts/dev-secrets.sh"

cd "$TEPI_ROOT"
if compgen -G "migrations/*.sql" >/dev/null; then
  log "applying D1 migrations locally"
  wrangler d1 migrations apply DB --local
fi
log "serving on http://127.0.0.1:$PORT (Ctrl-C stops)"
# Locally a client can send CF-Connecting-IP itself; Cloudflare sets it in
# production. Not believed here: anonymous callers share one budget.
exec wrangler dev --ip 127.0.0.1 --port "$PORT" --show-interactive-dev-session=false \
  --var TRUST_PLATFORM_PEER:false
