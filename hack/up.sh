#!/usr/bin/env bash
# Sets up (first run: builds the control plane, ~16 min) and runs the whole platform
# locally: embedded Kubernetes, Redis, CRDs, operator, a worker and the gateway.
# Arguments go to `longtask dev up` (e.g. --api-port 9090). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/setup.sh
exec uv run --frozen longtask dev up "$@"
