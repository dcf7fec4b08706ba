#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up, lint, type-check, check the import layers
# (.importlinter), then every test against the real embedded control plane, Redis,
# operator, workers and gateway.
# Extra arguments go to pytest (e.g. hack/test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/setup.sh
uv run --frozen ruff check .
uv run --frozen mypy
uv run --frozen lint-imports --no-logo
uv run --frozen pytest "$@"
