#!/usr/bin/env bash
# The main job from a fresh machine of this kind: install what the demo needs (MiniZinc, the
# pinned toolchain, sbpf-linker), build the attestor and memzinc, run `memzinc demo` on an
# embedded localnet.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$MEMZINC_ROOT"
scripts/install-tools.sh apt toolchain sbpf-linker cargo-build-sbf >&2
scripts/build-program.sh >&2
cargo build --locked --release -q -p memzinc -p healme
exec "$CARGO_TARGET_DIR/release/memzinc" demo --program target/deploy/attestor.so "$@"
