#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kubectl, etcd, helm) from the Go module
# proxy at pinned versions, once, into a cache outside the work tree keyed by version.
# Prints the directory holding the binaries.
# --node builds the node's parts instead (kubelet, kube-controller-manager, kube-scheduler,
# kube-proxy, CoreDNS, the pause binary) and prints their directory.
# --check prints the directory if everything is built, and fails otherwise.
set -euo pipefail

KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"

cache_root="${AIRLOCK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock}"
node=false check=false
for arg in "$@"; do
  case "$arg" in
    --node) node=true ;;
    --check) check=true ;;
    *) echo "usage: build.sh [--node] [--check]" >&2; exit 2 ;;
  esac
done
if $node; then
  bin="$cache_root/node/k8s-$KUBERNETES_VERSION-coredns-$COREDNS_VERSION/bin"
  tools=(kubelet kube-controller-manager kube-scheduler kube-proxy coredns pause)
else
  bin="$cache_root/controlplane/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION/bin"
  tools=(etcd kube-apiserver kubectl helm)
fi
if $check; then
  for tool in "${tools[@]}"; do [[ -x "$bin/$tool" ]] || exit 1; done
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
kubernetes_module() {
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
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  (cd "$work" && GOFLAGS="$GOFLAGS -mod=mod" go mod tidy -e >/dev/null 2>&1 || true)
  echo "$work"
}

build_kubernetes() {
  local work
  work="$(kubernetes_module)"
  (cd "$work" && GOFLAGS="$GOFLAGS -mod=mod" go build -o "$bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
  (cd "$work" && GOFLAGS="$GOFLAGS -mod=mod" go build -o "$bin/kubectl" k8s.io/kubernetes/cmd/kubectl)
}

# The node's parts carry their version: a kubelet built without it registers its node as
# v0.0.0, which version-skew checks and `kubectl get nodes` then report.
build_node() {
  local work minor="${KUBERNETES_VERSION#v1.}"
  work="$(kubernetes_module)"
  minor="${minor%%.*}"
  local version="k8s.io/component-base/version"
  local ldflags="-X $version.gitVersion=$KUBERNETES_VERSION -X $version.gitMajor=1 -X $version.gitMinor=$minor -X $version.gitTreeState=clean"
  for component in kubelet kube-controller-manager kube-scheduler kube-proxy; do
    [[ -x "$bin/$component" ]] && continue
    log "building $component $KUBERNETES_VERSION"
    (cd "$work" && GOFLAGS="$GOFLAGS -mod=mod" go build -ldflags "$ldflags" -o "$bin/$component" "k8s.io/kubernetes/cmd/$component")
  done
}

build_coredns() {
  GOBIN="$bin" go install -ldflags "-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" "github.com/coredns/coredns@$COREDNS_VERSION"
}

# The pod sandbox's pause process, from the Kubernetes module's own source.
build_pause() {
  local src
  src="$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBERNETES_VERSION/build/pause/linux/pause.c"
  [[ -f "$src" ]] || (cd "$cache_root" && GOFLAGS=-mod=mod go mod download "k8s.io/kubernetes@$KUBERNETES_VERSION")
  command -v gcc >/dev/null || { log "gcc is required to build the pause binary"; return 1; }
  gcc -Os -Wall -Werror -static -DVERSION="$KUBERNETES_VERSION" -o "$bin/pause" "$src"
  strip "$bin/pause"
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
if $node; then
  build_node
  [[ -x "$bin/coredns" ]] || { log "building coredns $COREDNS_VERSION"; build_coredns; }
  [[ -x "$bin/pause" ]] || { log "building pause $KUBERNETES_VERSION"; build_pause; }
  (( SECONDS - started > 1 )) && log "built in $((SECONDS - started))s"
  echo "$bin"
  exit 0
fi
[[ -x "$bin/etcd" ]] || { log "building etcd $ETCD_VERSION"; build_etcd; }
[[ -x "$bin/kube-apiserver" && -x "$bin/kubectl" ]] || { log "building kube-apiserver and kubectl $KUBERNETES_VERSION"; build_kubernetes; }
[[ -x "$bin/helm" ]] || { log "building helm $HELM_VERSION"; build_helm; }
(( SECONDS - started > 1 )) && log "built in $((SECONDS - started))s"
echo "$bin"
