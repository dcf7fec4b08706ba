"""The markers that split the suite into the fast tier and the rest (tests/conftest.py).

Covers: a test depending on the `cluster` fixture, however indirectly, is marked
`cluster`, one depending on `go_tool` is marked `tools`, one depending on neither is left
unmarked; a test left unmarked (this one) gets no Go-built binary: asking
longtask_dev.binaries for one fails at once, naming the fixtures to use, instead of
building it; the standalone Redis is a real server that the fast tier can use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from longtask_dev import binaries
from tests import conftest


@dataclass
class _Item:
    fixturenames: tuple[str, ...]
    markers: list[str] = field(default_factory=list)

    def add_marker(self, marker: Any) -> None:
        self.markers.append(marker.name)


def test_markers_follow_the_fixtures_a_test_uses() -> None:
    items = [
        _Item(("platform", "cluster", "request")),  # platform's closure holds cluster
        _Item(("helm", "go_tool", "tmp_path_factory")),
        _Item(("kube_helm", "helm", "go_tool", "cluster")),
        _Item(("redis_client", "redis_url", "request")),
    ]
    conftest.pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [item.markers for item in items] == [["cluster"], ["tools"], ["cluster", "tools"], []]


@pytest.mark.parametrize("call", [lambda: binaries.ensure("helm"), lambda: binaries.path("kubectl")])
def test_an_unmarked_test_gets_no_go_built_binary(call: Any) -> None:
    with pytest.raises(AssertionError, match="go_tool"):
        call()


def test_the_standalone_redis_answers(redis_client: Any, request: pytest.FixtureRequest) -> None:
    assert "cluster" not in request.fixturenames
    assert redis_client.ping()
    assert redis_client.config_get("appendonly") == {"appendonly": "yes"}
