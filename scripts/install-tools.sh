#!/usr/bin/env bash
# Installs what memzinc needs on a fresh Debian 12 machine of this kind, idempotently:
#   apt          minizinc (Gecode), coinor-cbc, gdb, chromium (the audit report test), gcc (the tests' C target), protoc (the
#                snapshot schema, proto/), nftables (the network lock of a checkpointed TCP connection),
#                build deps of the Solana client crates
#   toolchain    Rust 1.99.1 + rust-src (LLVM 23, which sbpf-linker 0.2.x needs)
#   sbpf-linker  the linker crate that replaces platform-tools, pinned, --locked
#   anchor       anchor-cli 1.2.2 from the crate registry (for `anchor test --skip-build`)
#   cargo-build-sbf  our platform-tools-free `cargo build-sbf` for Anchor-style flows
#   cargo-fuzz   cargo-fuzz, pinned, --locked (only scripts/fuzz.sh asks for it)
#   python       a venv ($MEMZINC_PYTHON) with pyarrow, duckdb and datasets from PyPI, pinned: the
#                engines the interop tests read memzinc's Parquet tables and dataset layout with
#   pumpkin      pumpkin-solver (a FlatZinc LCG solver), pinned, --locked: `--solver pumpkin`
#   minizinc-wasm  the npm `minizinc` package (MiniZinc 2.10 in WebAssembly with HiGHS, CBC,
#                Chuffed, Gecode), pinned, into $MEMZINC_TOOLS/minizinc-wasm: `--solver wasm-*`
# Tools go into $MEMZINC_TOOLS (outside the clone; `.tools` in the repo points at it).
set -euo pipefail
source "$(dirname "$0")/env.sh"

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(apt toolchain sbpf-linker cargo-build-sbf anchor)

have_version() { "$1" --version 2>/dev/null | grep -q "$2"; }

for item in "${want[@]}"; do
  case "$item" in
    apt)
      missing=()
      for pkg in minizinc coinor-cbc gdb gcc libc6-dev libc6-dbg libjemalloc2 libmimalloc2.0 nftables time protobuf-compiler pkg-config libssl-dev libclang-dev clang chromium python3-venv; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
      done
      if [ ${#missing[@]} -gt 0 ]; then
        echo "memzinc setup: apt-get install ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
      fi ;;
    toolchain)
      if ! rustup run "$MEMZINC_TOOLCHAIN" rustc --version >/dev/null 2>&1 \
         || [ ! -d "$(rustc +"$MEMZINC_TOOLCHAIN" --print sysroot)/lib/rustlib/src/rust/library" ]; then
        echo "memzinc setup: rustup toolchain $MEMZINC_TOOLCHAIN" >&2
        rustup toolchain install "$MEMZINC_TOOLCHAIN" --profile minimal --component rust-src,clippy,rustfmt
      fi ;;
    sbpf-linker)
      if ! have_version "$MEMZINC_TOOLS/bin/sbpf-linker" "$SBPF_LINKER_VERSION"; then
        echo "memzinc setup: cargo install sbpf-linker $SBPF_LINKER_VERSION (~3 min)" >&2
        cargo +"$MEMZINC_TOOLCHAIN" install sbpf-linker --version "$SBPF_LINKER_VERSION" --locked \
          --root "$MEMZINC_TOOLS" --target-dir "$MEMZINC_CACHE/install-target" --quiet
      fi ;;
    cargo-fuzz)
      if ! have_version "$MEMZINC_TOOLS/bin/cargo-fuzz" "$CARGO_FUZZ_VERSION"; then
        echo "memzinc setup: cargo install cargo-fuzz $CARGO_FUZZ_VERSION (~2 min)" >&2
        cargo +"$MEMZINC_TOOLCHAIN" install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked \
          --root "$MEMZINC_TOOLS" --target-dir "$MEMZINC_CACHE/install-target" --quiet
      fi ;;
    python)
      if ! "$MEMZINC_PYTHON" -c "import pyarrow, duckdb, datasets" 2>/dev/null \
         || ! "$MEMZINC_PYTHON" -m pip freeze 2>/dev/null | grep -qx "pyarrow==$PYARROW_VERSION"; then
        echo "memzinc setup: python venv with pyarrow $PYARROW_VERSION, duckdb $DUCKDB_VERSION, datasets $DATASETS_VERSION" >&2
        python3 -m venv "$MEMZINC_CACHE/venv"
        "$MEMZINC_PYTHON" -m pip install -q "pyarrow==$PYARROW_VERSION" "duckdb==$DUCKDB_VERSION" "datasets==$DATASETS_VERSION"
      fi ;;
    pumpkin)
      if ! [ -x "$MEMZINC_TOOLS/bin/pumpkin-solver" ] || ! grep -qs "$PUMPKIN_VERSION" "$MEMZINC_TOOLS/pumpkin.version"; then
        echo "memzinc setup: cargo install pumpkin-solver $PUMPKIN_VERSION (~5 min)" >&2
        cargo +"$MEMZINC_TOOLCHAIN" install pumpkin-solver --version "$PUMPKIN_VERSION" --locked \
          --root "$MEMZINC_TOOLS" --target-dir "$MEMZINC_CACHE/install-target" --quiet
        echo "$PUMPKIN_VERSION" > "$MEMZINC_TOOLS/pumpkin.version"
      fi ;;
    minizinc-wasm)
      if ! grep -qs "\"version\": \"$MINIZINC_NPM_VERSION\"" "$MEMZINC_TOOLS/minizinc-wasm/node_modules/minizinc/package.json"; then
        echo "memzinc setup: npm install minizinc@$MINIZINC_NPM_VERSION" >&2
        mkdir -p "$MEMZINC_TOOLS/minizinc-wasm"
        npm install --silent --no-audit --no-fund --prefix "$MEMZINC_TOOLS/minizinc-wasm" "minizinc@$MINIZINC_NPM_VERSION"
      fi ;;
    cargo-build-sbf)
      install -m 0755 "$MEMZINC_ROOT/scripts/cargo-build-sbf" "$MEMZINC_TOOLS/bin/cargo-build-sbf" ;;
    anchor)
      if ! have_version "$MEMZINC_TOOLS/bin/anchor" "$ANCHOR_CLI_VERSION"; then
        echo "memzinc setup: cargo install anchor-cli $ANCHOR_CLI_VERSION (~10-16 min)" >&2
        cargo +"$MEMZINC_TOOLCHAIN" install anchor-cli --version "$ANCHOR_CLI_VERSION" --locked \
          --root "$MEMZINC_TOOLS" --target-dir "$MEMZINC_CACHE/install-target" --quiet
      fi ;;
    *) echo "install-tools.sh: unknown item '$item'" >&2; exit 2 ;;
  esac
done
