"""The shared fakes (tests/fakes.py) match the real classes they stand in for.

Covers: every class of tests/fakes.py that is not a Protocol is declared a fake of one;
each fake and its real class have every method of the Protocol, async alike, with the same
parameters, defaults and annotations, and the fake has no public method the Protocol
lacks; and the check has teeth: a missing method, a sync method for an async one, a
renamed, positional or extra required parameter, another default and another annotation
are each reported.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest

from tests import conforms, fakes


def _label(declared: conforms.Declared) -> str:
    return f"{declared.fake.__name__}-{declared.protocol.__name__}"


def test_every_fake_is_declared() -> None:
    classes = {
        value
        for value in vars(fakes).values()
        if inspect.isclass(value) and value.__module__ == fakes.__name__ and Protocol not in value.__mro__[1:]
    }
    assert classes == {d.fake for d in conforms.DECLARED if d.fake.__module__ == fakes.__name__}


@pytest.mark.parametrize("declared", conforms.DECLARED, ids=_label)
def test_the_fake_and_the_real_class_satisfy_the_protocol(declared: conforms.Declared) -> None:
    assert conforms.protocol_methods(declared.protocol), "a Protocol without methods checks nothing"
    assert conforms.mismatches(declared.protocol, declared.real, annotated=False) == []
    assert conforms.mismatches(declared.protocol, declared.fake, annotated=True) == []
    extra = set(conforms.public_methods(declared.fake)) - set(conforms.protocol_methods(declared.protocol))
    assert not extra, f"{declared.fake.__name__} has methods its Protocol does not: {sorted(extra)}"


class _Wanted(Protocol):
    async def get(self, *, name: str, limit: int = 10) -> dict[str, Any]: ...

    def pages(self, *, after: str | None) -> AsyncIterator[str]: ...


class _Matches:
    async def get(self, *, name: str, limit: int = 10, verbose: bool = False) -> dict[str, Any]:
        return {}

    async def pages(self, *, after: str | None) -> AsyncIterator[str]:
        yield "page"


class _Missing:
    async def get(self, *, name: str, limit: int = 10) -> dict[str, Any]:
        return {}


class _Drifted:
    def get(self, name: str, *, limit: int = 20, force: bool) -> dict[str, str]:
        return {}

    async def pages(self, *, since: str | None) -> AsyncIterator[str]:
        yield "page"


class _Unannotated:
    async def get(self, *, name, limit=10):  # type: ignore[no-untyped-def]
        return {}

    def pages(self, *, after):  # type: ignore[no-untyped-def]
        return iter(())


def test_a_matching_class_passes_with_optional_extras() -> None:
    assert conforms.mismatches(_Wanted, _Matches, annotated=True) == []


def test_the_check_reports_each_kind_of_drift() -> None:
    assert conforms.mismatches(_Wanted, _Missing, annotated=True) == [
        f"{__name__}._Missing has no method pages()"
    ]
    found = "\n".join(conforms.mismatches(_Wanted, _Drifted, annotated=True))
    for problem in (
        "get() should be async",
        "name is positional or keyword, not keyword-only",
        "limit defaults to 20, not 10",
        "requires force",
        "return is dict[str, str]",
        "pages() lacks parameter after",
        "requires since",
    ):
        assert problem in found, found


def test_missing_annotations_pass_only_when_tolerated() -> None:
    assert conforms.mismatches(_Wanted, _Unannotated, annotated=False) == []
    found = conforms.mismatches(_Wanted, _Unannotated, annotated=True)
    assert f"{__name__}._Unannotated.get(): name is not annotated" in found
