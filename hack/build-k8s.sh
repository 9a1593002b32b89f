#!/usr/bin/env bash
# Build the Kubernetes control-plane binaries that the tests and `sluice dev` run, from the Go module proxy.
#
# Why a wrapper module: k8s.io/kubernetes refers to its staging modules (k8s.io/api, k8s.io/apiserver, ...)
# through `replace => ./staging/...` lines that only work inside its own git tree. A tiny module of ours
# requires k8s.io/kubernetes at one pinned release and replaces every staging module with its published
# v0.X.Y twin, so `go build` can fetch everything from the module proxy. etcd is built from the same module
# graph through go.etcd.io/etcd/server/v3/etcdmain, at the version Kubernetes itself pins.
#
# Output: $SLUICE_CACHE/k8s/<version>/bin/{etcd,kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
# A second run with the binaries present does nothing (the warm path); delete the folder to rebuild.
#
# Usage: bash hack/build-k8s.sh                 build (or confirm) the binaries
#        bash hack/build-k8s.sh --print-bin-dir print the bin directory and exit (for PATH=... in scripts)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
OUT="$CACHE/k8s/$K8S_VERSION"
BIN="$OUT/bin"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)

case "${1:-}" in
  --print-bin-dir) echo "$BIN"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print-bin-dir]" >&2; exit 2 ;;
esac

have_all() {
  for b in "${BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
}

if have_all; then
  echo "k8s $K8S_VERSION binaries already built in $BIN"
  exit 0
fi

command -v go >/dev/null || { echo "error: go is not on PATH; install Go 1.26+ first" >&2; exit 1; }

staging_version="v0.${K8S_VERSION#v1.}"
work="$OUT/src"
mkdir -p "$work/cmd/etcd" "$BIN"
cd "$work"

start=$(date +%s)
echo "[1/4] resolving k8s.io/kubernetes@$K8S_VERSION"
export GOFLAGS="-mod=mod"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
modfile=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[[ -f "$modfile" ]] || { echo "error: could not download k8s.io/kubernetes@$K8S_VERSION" >&2; exit 1; }

{
  echo "module sluice.dev/k8sbin"
  echo
  echo "go 1.26.0"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$modfile"
  echo ")"
} > go.mod

cat > cmd/etcd/main.go <<'GO'
// Command etcd is etcd's own main, built at the version Kubernetes pins.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO

cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO

echo "[2/4] fetching modules (go mod tidy)"
go mod tidy >/dev/null 2>tidy.log || { cat tidy.log >&2; exit 1; }

ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#v1.}"
ldflags="${ldflags%.*}"
echo "[3/4] building etcd"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" ./cmd/etcd
i=0
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  i=$((i + 1))
  echo "[4/4] building $b ($i/4, $(( $(date +%s) - start ))s so far)"
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$BIN/$b" "k8s.io/kubernetes/cmd/$b"
done
echo "built k8s $K8S_VERSION in $(( $(date +%s) - start ))s: $BIN"
