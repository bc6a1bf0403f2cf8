#!/usr/bin/env bash
# Builds programs/attestor into target/deploy/attestor.so (SBPF v3) without Solana's
# platform-tools: upstream Rust's bpfel-unknown-none target with build-std, linked by the
# sbpf-linker crate. Reproducible: the output does not depend on where the repo or the caches
# live, so two clean builds give the same sha256. Paths are remapped, and the sources are built
# from one fixed staging directory because cargo hashes a path dependency's absolute location
# into its symbol names, which changes code layout.
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$MEMZINC_ROOT/scripts/install-tools.sh" toolchain sbpf-linker

out_dir=${1:-$MEMZINC_ROOT/target/deploy}
stage=/var/tmp/memzinc-sbf-build
mkdir -p "$stage"
exec 9>"$stage.lock"
flock 9
find "$stage" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
# Extracted with fresh mtimes (-m): the staging path and the target folder are shared by every
# checkout on the machine, so a checkout whose sources are older than another's last build must
# still rebuild rather than take that build's output as fresh.
tar -C "$MEMZINC_ROOT" --exclude=./target --exclude=./.git --exclude=./.tools \
  --exclude=./programs/attestor/target -cf - Cargo.toml verifier programs/attestor | tar -C "$stage" -mxf -
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
  --remap-path-prefix "$stage=/memzinc"
  --remap-path-prefix "$cargo_home=/cargo"
  --remap-path-prefix "$sysroot=/rust"
)
( cd "$stage/programs/attestor"
  RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$program_target" \
  CARGO_ENCODED_RUSTFLAGS=$(IFS=$'\x1f'; echo "${flags[*]}") \
  cargo +"$MEMZINC_TOOLCHAIN" build --locked --release \
    -Zbuild-std=core,alloc --target bpfel-unknown-none )
mkdir -p "$out_dir"
install -m 0644 "$program_target/bpfel-unknown-none/release/libattestor.so" "$out_dir/attestor.so.tmp"
mv -f "$out_dir/attestor.so.tmp" "$out_dir/attestor.so"
sha256sum "$out_dir/attestor.so"
