#!/usr/bin/env bash
# The fast tier, for the inner loop of a change: lint, type-check, then every test that
# needs nothing but Python and a standalone redis-server (Debian's), so neither the
# Go-built control plane nor helm/promtool (~/.cache/longtask/bin) is needed or built.
# tests/conftest.py marks the rest from the fixtures they use: `cluster` (the embedded
# control plane) and `tools` (a Go-built tool). The full suite is still hack/test.sh.
# Extra arguments go to pytest (e.g. hack/fast.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")/.."
uv run --frozen ruff check .
uv run --frozen ruff format --check .
uv run --frozen mypy
uv run --frozen lint-imports --no-logo
uv run --frozen pytest -m "not cluster and not tools" "$@"
