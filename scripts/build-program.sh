#!/usr/bin/env bash
# Builds programs/attestor into target/deploy/attestor.so (SBPF v3) without Solana's
# platform-tools: upstream Rust's bpfel-unknown-none target with build-std, linked by the
# sbpf-linker crate. Reproducible: the output does not depend on where the repo or the caches
# live (paths are remapped), so two clean builds give the same sha256.
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$MEMZINC_ROOT/scripts/install-tools.sh" toolchain sbpf-linker

out_dir=${1:-$MEMZINC_ROOT/target/deploy}
program_target=${MEMZINC_PROGRAM_TARGET:-$MEMZINC_CACHE/program-target}
sysroot=$(rustc +"$MEMZINC_TOOLCHAIN" --print sysroot)
cargo_home=${CARGO_HOME:-$HOME/.cargo}

flags=(
  -C "linker=$MEMZINC_TOOLS/bin/sbpf-linker"
  -C panic=abort
  -C relocation-model=static
  -C target-cpu=v3
  -C target-feature=+allows-misaligned-mem-access
  -C link-arg=--arch=v3
  -C link-arg=--llvm-args=--bpf-stack-size=4096
  --remap-path-prefix "$MEMZINC_ROOT=/memzinc"
  --remap-path-prefix "$cargo_home=/cargo"
  --remap-path-prefix "$sysroot=/rust"
)
( cd "$MEMZINC_ROOT/programs/attestor"
  RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$program_target" \
  CARGO_ENCODED_RUSTFLAGS=$(IFS=$'\x1f'; echo "${flags[*]}") \
  cargo +"$MEMZINC_TOOLCHAIN" build --locked --release \
    -Zbuild-std=core,alloc --target bpfel-unknown-none )
mkdir -p "$out_dir"
install -m 0644 "$program_target/bpfel-unknown-none/release/libattestor.so" "$out_dir/attestor.so.tmp"
mv -f "$out_dir/attestor.so.tmp" "$out_dir/attestor.so"
sha256sum "$out_dir/attestor.so"
