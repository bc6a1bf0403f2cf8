# Sourced by every memzinc script: one place for the cache locations and PATH.
# Build caches live outside the clone (CI starts from a fresh clone; caches may or may not be
# there, nothing depends on them being there).
MEMZINC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MEMZINC_ROOT
export MEMZINC_CACHE=${MEMZINC_CACHE:-$HOME/.cache/memzinc}
export MEMZINC_TOOLS=$MEMZINC_CACHE/tools
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$MEMZINC_CACHE/target}
export MEMZINC_TOOLCHAIN=1.99.1
export SBPF_LINKER_VERSION=0.2.6
export ANCHOR_CLI_VERSION=1.2.2
export CARGO_FUZZ_VERSION=0.13.2
# The interop tests' Python engines (scripts/install-tools.sh python).
export MEMZINC_PYTHON=${MEMZINC_PYTHON:-$MEMZINC_CACHE/venv/bin/python}
export PYARROW_VERSION=22.0.0 DUCKDB_VERSION=2.0.1 DATASETS_VERSION=5.0.1
export PUMPKIN_VERSION=0.5.0
export MINIZINC_NPM_VERSION=4.5.1
export PATH=$MEMZINC_TOOLS/bin:$HOME/.cargo/bin:$PATH
mkdir -p "$MEMZINC_TOOLS/bin"
# The repo-local, git-ignored tools folder the Anchor-style flow expects points at the cache.
[ -e "$MEMZINC_ROOT/.tools" ] || ln -s "$MEMZINC_TOOLS" "$MEMZINC_ROOT/.tools"
