#!/usr/bin/env bash
# `anchor test`'s test script (Anchor.toml [scripts] test). Anchor exports ANCHOR_PROVIDER_URL
# and ANCHOR_WALLET. Where a validator answers there (a real solana-test-validator that Anchor
# started with the attestor deployed), the end-to-end tests run against it; otherwise they start
# memzinc's own surfpool localnet. Then the same program through an Anchor TypeScript client
# (tests/anchor-ts: @coral-xyz/anchor with idl/attestor.json).
set -euo pipefail
source "$(dirname "$0")/../../scripts/env.sh"
cd "$MEMZINC_ROOT"
if [ -n "${ANCHOR_PROVIDER_URL:-}" ] && curl -sf -m 2 -H 'content-type: application/json' \
     -d '{"jsonrpc":"2.0","id":1,"method":"getHealth"}' "$ANCHOR_PROVIDER_URL" >/dev/null; then
  echo "anchor test: validator at $ANCHOR_PROVIDER_URL"
  [ -z "${ANCHOR_WALLET:-}" ] || ANCHOR_WALLET=$(realpath "${ANCHOR_WALLET/#\~/$HOME}")
else
  echo "anchor test: no validator at ${ANCHOR_PROVIDER_URL:-<unset>}; using memzinc's surfpool localnet"
  unset ANCHOR_PROVIDER_URL ANCHOR_WALLET
fi
# The end-to-end tests run the memzinc and healme binaries.
cargo build --locked --bins
cargo test --locked -p memzinc-tests --test cli_e2e --test attestor_litesvm --test idl

echo "anchor test: TypeScript client (tests/anchor-ts)"
ts=tests/anchor-ts
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ] || ! command -v npm >/dev/null; then
  echo "$ts needs Node.js 20 or later and npm (node: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
if [ ! -f "$ts/node_modules/.package-lock.json" ] || [ "$ts/package-lock.json" -nt "$ts/node_modules/.package-lock.json" ]; then
  # No install scripts are needed: esbuild (tsx) ships its binary as a package, and the native
  # WebSocket helpers web3.js may use have JavaScript fallbacks.
  (cd "$ts" && npm ci --no-audit --no-fund --prefer-offline --ignore-scripts)
fi
# The TypeScript type of the IDL is what `anchor idl type` makes of idl/attestor.json.
if command -v anchor >/dev/null; then
  idl_type=$(mktemp)
  anchor idl type idl/attestor.json -o "$idl_type"
  if ! cmp -s "$idl_type" "$ts/types/attestor.ts"; then
    rm -f "$idl_type"
    echo "$ts/types/attestor.ts is stale: anchor idl type idl/attestor.json -o $ts/types/attestor.ts" >&2
    exit 1
  fi
  rm -f "$idl_type"
fi
MEMZINC_BIN="$CARGO_TARGET_DIR/debug" npm --prefix "$ts" test
