#!/usr/bin/env bash
# Builds the control-plane tools (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, helm, promtool) from their published Go modules, caching each
# binary under $LONGTASK_CACHE/bin/<tool>-<version>/ so that a warm run does nothing.
#
# Usage: hack/controlplane/build.sh [--print-bin-dir TOOL] [TOOL...]
#   With no TOOL, builds every tool. Prints one progress line per tool on stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${LONGTASK_CACHE:-$HOME/.cache/longtask}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"  # Go's default install place

k8s_minor=${KUBERNETES_VERSION#v1.}; k8s_minor=${k8s_minor%%.*}

bin_dir() {  # bin_dir TOOL -> the cache folder holding TOOL's binary
  case "$1" in
    etcd) echo "$cache/bin/etcd-$ETCD_VERSION" ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl)
      echo "$cache/bin/kubernetes-$KUBERNETES_VERSION" ;;
    helm) echo "$cache/bin/helm-$HELM_VERSION" ;;
    promtool) echo "$cache/bin/promtool-$PROMTOOL_VERSION" ;;
    *) echo "unknown tool: $1" >&2; return 2 ;;
  esac
}

say() { printf '[controlplane %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# Copy a wrapper module to a scratch folder under the cache, so that building never
# writes into the checkout (go mod tidy updates go.sum).
stage() {  # stage NAME -> scratch folder path
  local src="$here/$1" dst="$cache/src/$1"
  rm -rf "$dst"; mkdir -p "$dst"; cp -r "$src/." "$dst/"
  echo "$dst"
}

# k8s.io/kubernetes replaces its staging modules with ./staging/src/...; a module that
# requires it must replace each of them with its published v0.X.Y version. The list is
# read from the downloaded go.mod, never maintained by hand.
kube_replaces() {
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -f "$gomod" ] || { say "cannot find go.mod of k8s.io/kubernetes"; return 1; }
  awk -v v="v0.${k8s_minor}.${KUBERNETES_VERSION##*.}" '
    $0 ~ /=> \.\/staging\/src\// { for (i = 1; i <= NF; i++) if ($i == "=>") print "replace " $(i-1) " => " $(i-1) " " v }
  ' "$gomod"
}

build_etcd() {
  local out dir; out=$(bin_dir etcd)
  [ -x "$out/etcd" ] && return 0
  say "building etcd $ETCD_VERSION (about 1 min cold)"
  dir=$(stage etcd)
  (cd "$dir" && go mod tidy && go build -trimpath -ldflags '-s -w' -o "$dir/etcd" .)
  mkdir -p "$out"; mv "$dir/etcd" "$out/etcd"
}

kube_ldflags() {
  local pkg flags="-s -w" date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  echo "$flags"
}

build_kube() {  # build_kube TOOL
  local tool=$1 out dir; out=$(bin_dir "$tool")
  [ -x "$out/$tool" ] && return 0
  dir="$cache/src/kube"
  local stamp; stamp=$(cat "$here"/kube/go.mod "$here"/kube/go.sum "$here"/kube/cmd/*/main.go | sha256sum | cut -c1-16)
  if [ ! -f "$dir/.staged-$stamp" ]; then
    say "preparing the kubernetes $KUBERNETES_VERSION wrapper module (downloads ~3 GB once)"
    dir=$(stage kube)
    kube_replaces >>"$dir/go.mod"
    (cd "$dir" && go mod tidy)
    touch "$dir/.staged-$stamp"
  fi
  say "building $tool $KUBERNETES_VERSION (apiserver ~6 min cold, the rest reuse its packages)"
  (cd "$dir" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$dir/$tool.bin" "./cmd/$tool")
  mkdir -p "$out"; mv "$dir/$tool.bin" "$out/$tool"
}

build_go_install() {  # build_go_install TOOL PACKAGE@VERSION
  local tool=$1 pkg=$2 out; out=$(bin_dir "$tool")
  [ -x "$out/$tool" ] && return 0
  say "building $tool from $pkg"
  mkdir -p "$out"
  GOBIN="$out" go install -trimpath -ldflags '-s -w' "$pkg"
}

build() {
  [ -x "$(bin_dir "$1")/$1" ] && return 0
  command -v go >/dev/null || { say "building $1 needs Go (https://go.dev/doc/install)"; return 1; }
  case "$1" in
    etcd) build_etcd ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl) build_kube "$1" ;;
    helm) build_go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ;;
    promtool) build_go_install promtool "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" ;;
    *) say "unknown tool: $1"; return 2 ;;
  esac
}

if [ "${1:-}" = "--print-bin-dir" ]; then bin_dir "$2"; exit; fi
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(etcd kube-apiserver kubectl kube-controller-manager kube-scheduler helm promtool)
start=$SECONDS
for t in "${tools[@]}"; do
  t0=$SECONDS; build "$t"
  [ $((SECONDS - t0)) -gt 0 ] && say "$t ready in $((SECONDS - t0)) s"
done
say "all tools ready in $((SECONDS - start)) s under $cache/bin"
