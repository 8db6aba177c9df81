#!/usr/bin/env bash
# Fuzzes the Prometheus text-format parser (tepi_core::exposition::parse)
# with cargo-fuzz and libFuzzer. The target, fuzz/fuzz_targets/exposition.rs,
# feeds it arbitrary bytes and checks what must hold: no panic, refusals name
# a line, accepted bodies are well formed and, written again with the core's
# encoder, parse to the same families. Any crash fails the gate; its input is
# kept in fuzz/artifacts/exposition/ and the command to replay it is printed.
#
#   scripts/fuzz.sh [SECONDS] [-- LIBFUZZER_FLAGS...]
#
#   SECONDS / FUZZ_SECONDS=60  how long to fuzz (make fuzz FUZZ_SECONDS=3600)
#   FUZZ_SANITIZER=none        or `address`: AddressSanitizer, which needs the
#                              pinned nightly ($FUZZ_NIGHTLY, installed with
#                              rustup on first use). The parser is safe Rust
#                              (core forbids unsafe_code), so the default runs
#                              without it on the pinned stable toolchain, at
#                              about three times the executions per second.
#
# Also runs rustfmt and clippy -D warnings on the fuzz crate. Its own
# fuzz/Cargo.lock started as a copy of the workspace's; cargo adds to it when
# the core's dependencies change (no --locked here): commit the change.
# cargo-fuzz is installed once into the tool cache by scripts/tools.sh; builds go to
# $TEPI_CACHE/fuzz/target-<sanitizer>/ and the corpus grows across runs in
# $TEPI_CACHE/fuzz/corpus/exposition/ (minimised past 4,000 inputs), seeded
# from fuzz/seeds/exposition/ (real exposition text).
source "$(dirname "$0")/lib.sh"

seconds=${FUZZ_SECONDS:-60}
if [[ ${1:-} =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
[[ ${1:-} == -- ]] && shift
flags=("$@")
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "FUZZ_SECONDS must be a positive number of seconds"

sanitizer=${FUZZ_SANITIZER:-none}
case $sanitizer in
  none) toolchain=$RUST_TOOLCHAIN ;;
  address) toolchain=$FUZZ_NIGHTLY ;;
  *) die "FUZZ_SANITIZER must be none or address" ;;
esac

target=exposition
fuzz_dir="$TEPI_ROOT/fuzz"
work="$TEPI_CACHE/fuzz"
corpus="$work/corpus/$target"

[[ -x $CARGO_FUZZ_BIN ]] || die "cargo-fuzz missing at $CARGO_FUZZ_BIN (run scripts/tools.sh)"
PATH="$(dirname "$CARGO_FUZZ_BIN"):$PATH"
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
  log "installing Rust $toolchain (for the sanitizer)"
  rustup toolchain install "$toolchain" --profile minimal
fi

log "fuzz crate: rustfmt and clippy"
cargo_ fmt --manifest-path "$fuzz_dir/Cargo.toml" -- --check
CARGO_TARGET_DIR="$work/clippy-target" \
  cargo_ clippy --manifest-path "$fuzz_dir/Cargo.toml" --all-targets --quiet -- -D warnings

log "building fuzz target $target (sanitizer: $sanitizer, Rust $toolchain)"
cd "$TEPI_ROOT"
build=(--fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer" --target-dir "$work/target-$sanitizer")
cargo "+$toolchain" fuzz build "${build[@]}" "$target"

mkdir -p "$corpus"
# Runs keep adding inputs with new coverage features; past a few thousand,
# merge the corpus down to a set that covers the same (seconds).
if (($(find "$corpus" -type f | wc -l) > 4000)); then
  log "minimising the corpus ($(find "$corpus" -type f | wc -l) inputs)"
  cargo "+$toolchain" fuzz cmin "${build[@]}" "$target" "$corpus" >/dev/null 2>&1 ||
    die "cargo fuzz cmin failed"
fi
report=$(mktemp "${TMPDIR:-/tmp}/tepi-fuzz.XXXXXX")
trap 'rm -f "$report"' EXIT
log "fuzzing $target for ${seconds}s (corpus: $(find "$corpus" -type f | wc -l) inputs in $corpus)"
rc=0
# libFuzzer prints a line per new input: keep it in the report, show the end.
cargo "+$toolchain" fuzz run "${build[@]}" "$target" "$corpus" "$fuzz_dir/seeds/$target" -- \
  -max_total_time="$seconds" -timeout=10 -dict="$fuzz_dir/$target.dict" -print_final_stats=1 \
  "${flags[@]}" >"$report" 2>&1 || rc=$?

fuzz_stat() { sed -n "s/^stat::$1: *//p" "$report" | tail -n1; }
if ((rc != 0)); then
  tail -n 80 "$report" >&2
  die "fuzz target $target failed (exit $rc): the input is in fuzz/artifacts/$target/; replay it with
  PATH=\"$(dirname "$CARGO_FUZZ_BIN"):\$PATH\" cargo +$toolchain fuzz run ${build[*]} $target fuzz/artifacts/$target/<file>"
fi
grep -E '^(INFO: Seed|Done [0-9]+ runs)' "$report" || true
gate_note "$target: $(fuzz_stat number_of_executed_units) runs at $(fuzz_stat average_exec_per_sec) exec/s," \
  "corpus now $(find "$corpus" -type f | wc -l) inputs, no crash"
