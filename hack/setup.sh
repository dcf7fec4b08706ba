#!/usr/bin/env bash
# Installs everything longtask needs on a fresh machine, and nothing twice:
# Debian packages (redis-server, prometheus, chromium), uv, the locked Python environment (.venv), and the
# Go-built control plane (cached under ~/.cache/longtask; ~16 min cold, 0 s warm).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

apt_packages=()
command -v redis-server >/dev/null || apt_packages+=(redis-server)
command -v prometheus >/dev/null || apt_packages+=(prometheus)      # alert and dashboard tests
command -v chromium >/dev/null || apt_packages+=(chromium)          # the web page's browser tests
if [ ${#apt_packages[@]} -gt 0 ]; then
  say "installing Debian packages: ${apt_packages[*]}"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi
# The Debian package starts its own redis on :6379; longtask starts its own on a free port.

if ! command -v uv >/dev/null; then
  say "installing uv"
  python3 -m pip install --quiet 'uv==0.13.8'
  command -v uv >/dev/null || pyenv rehash 2>/dev/null || true  # pyenv shims learn new scripts
fi
say "syncing the Python environment (uv.lock)"
uv sync --frozen --quiet

say "building or finding the control plane (etcd, kube-apiserver, ..., helm, promtool)"
bash hack/controlplane/build.sh
