#!/usr/bin/env bash
# Build the helm binary that lints and renders charts/sluice, from the Go module proxy (like hack/build-k8s.sh).
#
# Output: $SLUICE_CACHE/helm/<version>/bin/helm. A second run with the binary present does nothing (the warm
# path); delete the folder to rebuild.
#
# Usage: bash hack/build-helm.sh                 build (or confirm) the binary
#        bash hack/build-helm.sh --print-bin-dir print the bin directory and exit (for PATH=... in scripts)
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.2}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
OUT="$CACHE/helm/$HELM_VERSION"
BIN="$OUT/bin"

case "${1:-}" in
  --print-bin-dir) echo "$BIN"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print-bin-dir]" >&2; exit 2 ;;
esac

if [[ -x "$BIN/helm" ]]; then
  echo "helm $HELM_VERSION already built in $BIN"
  exit 0
fi

command -v go >/dev/null || { echo "error: go is not on PATH; install Go 1.26+ first" >&2; exit 1; }

work="$OUT/src"
mkdir -p "$work" "$BIN"
cd "$work"
start=$(date +%s)
export GOFLAGS="-mod=mod"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
cat > go.mod <<MOD
module sluice.dev/helmbin

go 1.26.0

require helm.sh/helm/v4 $HELM_VERSION
MOD
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "helm.sh/helm/v4/cmd/helm"
GO
echo "[1/2] fetching helm.sh/helm/v4@$HELM_VERSION (go mod tidy)"
go mod tidy >/dev/null 2>tidy.log || { cat tidy.log >&2; exit 1; }
echo "[2/2] building helm"
CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
  -o "$BIN/helm.tmp" helm.sh/helm/v4/cmd/helm
mv "$BIN/helm.tmp" "$BIN/helm"
echo "built helm $HELM_VERSION in $(( $(date +%s) - start ))s: $BIN"
