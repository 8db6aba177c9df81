#!/usr/bin/env bash
# Gates for tools/spin-test-host, which lives outside the product workspace:
# rustfmt, clippy -D warnings and its unit tests (release profile, sharing the
# cached target dir with the installed binary's build).
source "$(dirname "$0")/lib.sh"
export CARGO_TARGET_DIR="$SPIN_HOST_TARGET"
manifest="$SPIN_HOST_SRC/Cargo.toml"
cargo_ fmt --manifest-path "$manifest" -- --check
cargo_ clippy --manifest-path "$manifest" --locked --release --all-targets -- -D warnings
cargo_ test --manifest-path "$manifest" --locked --release
