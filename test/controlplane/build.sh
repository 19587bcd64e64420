#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kubectl, etcd, helm) from the Go module
# proxy at pinned versions, once, into a cache outside the work tree keyed by version.
# Prints the directory holding the binaries.
set -euo pipefail

KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"

cache_root="${AIRLOCK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock}"
bin="$cache_root/controlplane/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION/bin"
if [[ "${1:-}" == "--check" ]]; then
  for tool in etcd kube-apiserver kubectl helm; do [[ -x "$bin/$tool" ]] || exit 1; done
  echo "$bin"
  exit 0
fi
mkdir -p "$bin"

log() { echo "controlplane: $*" >&2; }

command -v go >/dev/null || { echo "controlplane: go is required to build the test control plane" >&2; exit 1; }
export GOFLAGS="-buildvcs=false -trimpath"
export CGO_ENABLED=0

# k8s.io/kubernetes is not meant to be a dependency: its go.mod points every staging module
# (k8s.io/api, k8s.io/apiserver, ...) at ./staging/src. A wrapper module replaces each of
# them with its published version, v0.MINOR.PATCH, which is tagged from the same commit.
build_kubernetes() {
  local work="$cache_root/controlplane/src-kubernetes-$KUBERNETES_VERSION"
  local staging="v0${KUBERNETES_VERSION#v1}"
  mkdir -p "$work"
  local gomod
  gomod="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [[ -n "$gomod" ]] || { log "cannot download k8s.io/kubernetes@$KUBERNETES_VERSION"; return 1; }
  {
    echo "module airlock.dev/testcontrolplane"
    echo
    echo "go $(sed -n 's/^go //p' "$gomod")"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#replace \1 => \1 '"$staging"'#p' "$gomod"
  } >"$work/go.mod"
  cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  (cd "$work" && GOFLAGS="$GOFLAGS -mod=mod" go mod tidy -e >/dev/null 2>&1 || true)
  (cd "$work" && GOFLAGS="$GOFLAGS -mod=mod" go build -o "$bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
  (cd "$work" && GOFLAGS="$GOFLAGS -mod=mod" go build -o "$bin/kubectl" k8s.io/kubernetes/cmd/kubectl)
}

# etcd's server module also replaces its siblings with relative paths; a wrapper module
# takes the published versions its go.mod requires.
build_etcd() {
  local work="$cache_root/controlplane/src-etcd-$ETCD_VERSION"
  mkdir -p "$work"
  printf 'module airlock.dev/testetcd\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$work/tools.go"
  (cd "$work" && GOFLAGS="$GOFLAGS -mod=mod" go mod tidy -e >/dev/null 2>&1 || true)
  (cd "$work" && GOFLAGS="$GOFLAGS -mod=mod" go build -o "$bin/etcd" go.etcd.io/etcd/server/v3)
}

build_helm() {
  GOBIN="$bin" go install "helm.sh/helm/${HELM_VERSION%%.*}/cmd/helm@$HELM_VERSION"
}

started=$SECONDS
[[ -x "$bin/etcd" ]] || { log "building etcd $ETCD_VERSION"; build_etcd; }
[[ -x "$bin/kube-apiserver" && -x "$bin/kubectl" ]] || { log "building kube-apiserver and kubectl $KUBERNETES_VERSION"; build_kubernetes; }
[[ -x "$bin/helm" ]] || { log "building helm $HELM_VERSION"; build_helm; }
(( SECONDS - started > 1 )) && log "built in $((SECONDS - started))s"
echo "$bin"
