#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up, lint, type-check, check the import layers
# (.importlinter), then every test against the real embedded control plane, Redis,
# operator, workers and gateway.
# Extra arguments go to pytest (e.g. hack/test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/setup.sh
# checkov, pinned, for tests/integration/test_chart_checkov.py: uv fetches it into its cache
# once (PyPI); every later run, this one's test included, starts it from the cache offline.
uv tool run --from checkov==3.3.30 checkov --version >/dev/null
uv run --frozen ruff check .
uv run --frozen mypy
uv run --frozen lint-imports --no-logo
uv run --frozen pytest "$@"
