"""The signature of a registered task as workers publish it and the gateway serves it; pure data.

Workers write one TaskType per task to names.TASK_TYPES when they start; the gateway reads
them for GET /v1/tasktypes (the web page builds its submit form from them). No I/O here.
"""

from __future__ import annotations

import enum
import time
from typing import Any

from pydantic import BaseModel, Field


class Kind(enum.StrEnum):
    """The JSON type a parameter takes (from its annotation or default)."""

    STRING = "string"  # str
    INTEGER = "integer"  # int
    NUMBER = "number"  # float
    BOOLEAN = "boolean"  # bool
    ARRAY = "array"  # list, tuple
    OBJECT = "object"  # dict
    ANY = "any"  # unannotated, or a type that maps to none of the above


class Param(BaseModel):
    name: str
    kind: Kind = Kind.ANY
    required: bool = False
    default: Any = None


class TaskType(BaseModel):
    """One registered task: its name, the first line of its docstring, its parameters."""

    name: str
    doc: str = ""
    params: list[Param] = Field(default_factory=list)
    pool: str = Field(default="default", description="The pool of the worker that published it last.")
    at: float = Field(default_factory=time.time, description="When it was published (unix time).")


_KINDS: dict[str, Kind] = {
    "str": Kind.STRING,
    "int": Kind.INTEGER,
    "float": Kind.NUMBER,
    "bool": Kind.BOOLEAN,
    "list": Kind.ARRAY,
    "tuple": Kind.ARRAY,
    "dict": Kind.OBJECT,
}


def kind_of(annotation: str, default: Any) -> Kind:
    """The Kind of an annotation written as text (`float`, `list[str]`, `int | None`), else of the default."""
    text = annotation.replace("typing.", "").strip()
    for part in (p.strip() for p in text.split("|")):
        base = part.split("[", 1)[0].strip()
        if base in _KINDS:
            return _KINDS[base]
    if default is not None:
        return _KINDS.get(type(default).__name__, Kind.ANY)
    return Kind.ANY
