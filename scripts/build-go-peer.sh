#!/usr/bin/env bash
# Builds the kcp-go FEC interop peer (peers/go/fecpeer) into the path given
# as $1 (default: target/fecpeer). Uses Debian's kcp-go 5.6 in GOPATH mode:
#   apt-get install golang-go golang-github-xtaci-kcp-dev
# Called by tests/fec_interop_kcpgo.rs; exits non-zero with a clear message
# when Go or kcp-go is missing, so the test fails instead of skipping.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/target/fecpeer}"
gopath="${KCP_GO_GOPATH:-/usr/share/gocode}"

if ! command -v go >/dev/null 2>&1; then
    echo "build-go-peer: 'go' not found on PATH; install it with: apt-get install golang-go golang-github-xtaci-kcp-dev" >&2
    exit 1
fi
if [ ! -f "$gopath/src/github.com/xtaci/kcp-go/fec.go" ]; then
    echo "build-go-peer: kcp-go sources not found under $gopath/src/github.com/xtaci/kcp-go; install them with: apt-get install golang-github-xtaci-kcp-dev (or set KCP_GO_GOPATH)" >&2
    exit 1
fi

mkdir -p "$(dirname "$out")"
cd "$root/peers/go/fecpeer"
GO111MODULE=off GOPATH="$gopath" GOFLAGS="" go build -o "$out" .
echo "build-go-peer: built $out ($(go version))"
