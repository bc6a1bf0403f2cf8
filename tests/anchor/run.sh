#!/usr/bin/env bash
# `anchor test`'s test script (Anchor.toml [scripts] test). Anchor exports ANCHOR_PROVIDER_URL
# and ANCHOR_WALLET. Where a validator answers there (a real solana-test-validator that Anchor
# started with the attestor deployed), the end-to-end tests run against it; otherwise they start
# memzinc's own surfpool localnet.
set -euo pipefail
source "$(dirname "$0")/../../scripts/env.sh"
cd "$MEMZINC_ROOT"
if [ -n "${ANCHOR_PROVIDER_URL:-}" ] && curl -sf -m 2 -H 'content-type: application/json' \
     -d '{"jsonrpc":"2.0","id":1,"method":"getHealth"}' "$ANCHOR_PROVIDER_URL" >/dev/null; then
  echo "anchor test: validator at $ANCHOR_PROVIDER_URL"
else
  echo "anchor test: no validator at ${ANCHOR_PROVIDER_URL:-<unset>}; using memzinc's surfpool localnet"
  unset ANCHOR_PROVIDER_URL ANCHOR_WALLET
fi
cargo test --locked -p memzinc-tests --test cli_e2e --test attestor_litesvm --test idl
