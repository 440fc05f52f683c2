#!/usr/bin/env bash
# The whole test suite: unit, integration, interop (ikcp through kcp-sys,
# kcp-go through a Go peer) and doc tests, for every workspace member.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace --all-features "$@"
