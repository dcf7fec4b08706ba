"""Keeps test fakes honest: a fake and the real class it stands in for must both match a Protocol.

A fake declares what it stands in for with `@conforms.fake_of(Protocol, real=RealClass)`;
tests/unit/test_fakes.py then checks every declared fake, and its real class, against the
Protocol with `mismatches()`: the same methods, each async or not alike, with the same
parameters (names, kinds, defaults) and the same annotations. A fake may not have a
public method its Protocol lacks, so it cannot grow behaviour the real class does not
have. This module only inspects classes; it must not import the components themselves.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class Declared:
    """One fake, the Protocol it satisfies and the real class that satisfies it too."""

    protocol: type
    fake: type
    real: type


DECLARED: list[Declared] = []


def fake_of(protocol: type, *, real: type) -> Callable[[T], T]:
    """Class decorator: the fake satisfies `protocol`, as `real` does (checked by a test)."""

    def declare(fake: T) -> T:
        DECLARED.append(Declared(protocol=protocol, fake=fake, real=real))
        return fake

    return declare


def protocol_methods(protocol: type) -> list[str]:
    """The public methods a Protocol declares (its own body, not `object`'s or Protocol's)."""
    return sorted(
        name for name, value in vars(protocol).items() if not name.startswith("_") and callable(value)
    )


def public_methods(cls: type) -> list[str]:
    return sorted(
        name
        for name, value in inspect.getmembers(cls)
        if not name.startswith("_") and (inspect.isfunction(value) or inspect.ismethod(value))
    )


def _awaited(function: Any) -> bool:
    """True if calling `function` gives an awaitable; an async generator (`async for` at
    once) counts as a plain call returning an AsyncIterator, as a Protocol declares it."""
    return inspect.iscoroutinefunction(function)


def _hints(function: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except (NameError, TypeError):  # annotations naming what only a type checker imports
        return {}


def mismatches(protocol: type, implementation: type, *, annotated: bool) -> list[str]:
    """How `implementation` differs from `protocol`, one line each ([] when it matches).

    Every parameter of the Protocol's method must be in the implementation's with the same
    kind (positional in the same order, keyword-only by name), with a default if and only if
    the Protocol has one (the same value unless the Protocol says `...`), and the same
    annotation; parameters the Protocol lacks must be optional. `annotated=False` tolerates
    missing annotations (a third-party class without them), never different ones.
    """
    found: list[str] = []
    where = f"{implementation.__module__}.{implementation.__qualname__}"
    for name in protocol_methods(protocol):
        wanted = getattr(protocol, name)
        have = getattr(implementation, name, None)
        if have is None or not callable(have):
            found.append(f"{where} has no method {name}()")
            continue
        if _awaited(wanted) != _awaited(have):
            kind = "async" if _awaited(wanted) else "not async"
            found.append(f"{where}.{name}() should be {kind}")
        found += _parameter_mismatches(f"{where}.{name}()", wanted, have, annotated=annotated)
    return found


def _parameter_mismatches(where: str, wanted: Any, have: Any, *, annotated: bool) -> list[str]:
    want_params = list(inspect.signature(wanted).parameters.values())[1:]  # without self
    have_params = list(inspect.signature(have).parameters.values())[1:]
    found = _order_mismatches(where, want_params, have_params)
    have_by_name = {p.name: p for p in have_params}
    for param in want_params:
        if param.name in have_by_name:
            found += _one_parameter(where, param, have_by_name[param.name])
        else:
            found.append(f"{where} lacks parameter {param.name}")
    wanted_names = {p.name for p in want_params}
    found += [
        f"{where} requires {other.name}, which the Protocol does not pass"
        for other in have_params
        if other.name not in wanted_names and not _optional(other)
    ]
    return found + _annotation_mismatches(where, wanted, have, [*wanted_names, "return"], annotated=annotated)


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _order_mismatches(where: str, want: list[inspect.Parameter], have: list[inspect.Parameter]) -> list[str]:
    want_positional = [p.name for p in want if p.kind in _POSITIONAL]
    have_positional = [p.name for p in have if p.kind in _POSITIONAL]
    if have_positional[: len(want_positional)] != want_positional:
        return [f"{where} takes positional {have_positional}, the Protocol {want_positional}"]
    return []


def _one_parameter(where: str, param: inspect.Parameter, other: inspect.Parameter) -> list[str]:
    found = []
    if other.kind != param.kind:
        found.append(f"{where}: {param.name} is {other.kind.description}, not {param.kind.description}")
    required = param.default is inspect.Parameter.empty
    if required != (other.default is inspect.Parameter.empty):
        found.append(f"{where}: {param.name} {'has' if required else 'lacks'} a default")
    elif not required and param.default is not Ellipsis and param.default != other.default:
        found.append(f"{where}: {param.name} defaults to {other.default!r}, not {param.default!r}")
    return found


def _optional(param: inspect.Parameter) -> bool:
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return param.default is not inspect.Parameter.empty or param.kind in variadic


def _annotation_mismatches(
    where: str, wanted: Any, have: Any, names: list[str], *, annotated: bool
) -> list[str]:
    found = []
    want_hints, have_hints = _hints(wanted), _hints(have)
    for name in names:
        if name not in want_hints:
            continue
        if name not in have_hints:
            if annotated:
                found.append(f"{where}: {name} is not annotated")
        elif have_hints[name] != want_hints[name]:
            found.append(f"{where}: {name} is {have_hints[name]}, the Protocol says {want_hints[name]}")
    return found
