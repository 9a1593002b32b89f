#!/usr/bin/env bash
# Build promtool, which checks and unit-tests the Prometheus alert rules of deploy/monitoring
# (tests/unit/test_monitoring.py), from the Go module proxy (like hack/build-helm.sh).
#
# Prometheus 3.x is published as the Go module github.com/prometheus/prometheus with tags v0.3XX.Y for release
# 3.XX.Y. A tiny module of ours requires it and builds ./cmd/promtool with the tag remove_all_sd, which leaves out
# the cloud service-discovery plugins (AWS, Azure, GCE, Kubernetes, ...): promtool's rule commands never use them,
# and they are most of the code. `promtool check config` on a config with such an SD section would fail with this
# binary; we only check rules.
#
# Why not `go mod tidy`: it resolves the imports of every build tag, so it would fetch the SD plugins' modules
# (cloud SDKs) that the tagged build never compiles. `go build -mod=mod` fetches only what the build loads.
#
# Cost of a cold build (empty Go module and build caches), measured on 2 cores: 366 s of CPU and about 1 GB of
# modules (promtool itself imports the Kubernetes client and the remote-write auth SDKs); 23.6 min wall-clock on a
# machine at load 14, so a few minutes on an idle one. make deps builds it after k8s and helm, whose modules and build
# cache it partly shares.
#
# Output: $SLUICE_CACHE/promtool/<version>/bin/promtool. A second run with the binary present does nothing (the
# warm path); delete the folder to rebuild.
#
# Usage: bash hack/build-promtool.sh                 build (or confirm) the binary
#        bash hack/build-promtool.sh --print-bin-dir print the bin directory and exit (for PATH=... in scripts)
set -euo pipefail

PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
OUT="$CACHE/promtool/$PROMTOOL_VERSION"
BIN="$OUT/bin"

case "${1:-}" in
  --print-bin-dir) echo "$BIN"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print-bin-dir]" >&2; exit 2 ;;
esac

if [[ -x "$BIN/promtool" ]]; then
  echo "promtool $PROMTOOL_VERSION already built in $BIN"
  exit 0
fi

command -v go >/dev/null || { echo "error: go is not on PATH; install Go 1.26+ first" >&2; exit 1; }

# Module tag v0.3XX.Y is Prometheus 3.XX.Y: the version promtool prints.
minor="${PROMTOOL_VERSION#v0.3}"
release="3.$((10#${minor%%.*})).${minor#*.}"
work="$OUT/src"
mkdir -p "$work" "$BIN"
cd "$work"
start=$(date +%s)
export GOFLAGS="-mod=mod"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
cat > go.mod <<MOD
module sluice.dev/promtoolbin

go 1.26.7

require github.com/prometheus/prometheus $PROMTOOL_VERSION
MOD
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
GO
echo "[1/2] fetching github.com/prometheus/prometheus@$PROMTOOL_VERSION (Prometheus $release)"
go mod download -json "github.com/prometheus/prometheus@$PROMTOOL_VERSION" >/dev/null 2>download.log \
  || { cat download.log >&2; exit 1; }
echo "[2/2] building promtool (-tags remove_all_sd; fetches the modules it needs)"
CGO_ENABLED=0 go build -trimpath -tags remove_all_sd \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release -X github.com/prometheus/common/version.Branch=HEAD" \
  -o "$BIN/promtool.tmp" github.com/prometheus/prometheus/cmd/promtool
mv "$BIN/promtool.tmp" "$BIN/promtool"
echo "built promtool $release in $(( $(date +%s) - start ))s: $BIN"
