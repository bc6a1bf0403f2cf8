#!/usr/bin/env bash
# The main job from a fresh machine of this kind: install what the demo needs (MiniZinc, the
# pinned toolchain, sbpf-linker), build the attestor and memzinc, run `memzinc demo` on an
# embedded localnet. Setup and build progress go to stderr; the demo's own output to stdout.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$MEMZINC_ROOT"
if [ -x "$CARGO_TARGET_DIR/release/memzinc" ] && [ -x "$CARGO_TARGET_DIR/release/healme" ]; then
  echo "memzinc demo: already built once here; starts in seconds (a few minutes if the sources changed)" >&2
else
  echo "memzinc demo: first run here: installing the tools and building the attestor and memzinc" \
    "(release) takes about 25-40 min on 2 cores (this machine: $(nproc)); cargo shows its progress" \
    "below. Later runs start in seconds." >&2
fi
scripts/install-tools.sh apt toolchain sbpf-linker cargo-build-sbf >&2
echo "memzinc demo: building the attestor program (target/deploy/attestor.so)" >&2
scripts/build-program.sh >&2
echo "memzinc demo: building memzinc and healme (release)" >&2
cargo build --locked --release -p memzinc -p healme
exec "$CARGO_TARGET_DIR/release/memzinc" demo --program target/deploy/attestor.so "$@"
