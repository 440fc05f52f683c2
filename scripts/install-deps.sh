#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust itself, if it is missing:
#  - libclang, for kcp-sys (the C ikcp we test against, in peers/);
#  - Go and kcp-go 5.6.1 from Debian, for the kcp-go FEC interop peer.
# Idempotent: does nothing when everything is present.
set -euo pipefail

need=()
for pkg in libclang1-14 libclang-common-14-dev golang-go golang-github-xtaci-kcp-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done

if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
