"""Publishes the signatures of the tasks this worker serves to Redis (names.TASK_TYPES).

The gateway must not import worker code, so each worker writes what its tasks take when it
starts; the web page builds its submit form from that. It decides nothing about running tasks.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

import redis

from longtask_contracts import names, tasktypes
from longtask_worker import sdk

log = logging.getLogger(__name__)


def _param(p: inspect.Parameter) -> tasktypes.Param:
    default = None if p.default is inspect.Parameter.empty else p.default
    try:
        json.dumps(default)
    except (TypeError, ValueError):
        default = None  # only JSON defaults can prefill a form
    annotation = p.annotation if isinstance(p.annotation, str) else inspect.formatannotation(p.annotation)
    if p.annotation is inspect.Parameter.empty:
        annotation = ""
    return tasktypes.Param(
        name=p.name,
        kind=tasktypes.kind_of(annotation, default),
        required=p.default is inspect.Parameter.empty,
        default=default,
    )


def describe(name: str, fn: Any, *, pool: str) -> tasktypes.TaskType:
    """The TaskType of `fn(ctx, **params)`: every parameter after the context, keyword or not."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    doc = (inspect.getdoc(fn) or "").split("\n", 1)[0]
    return tasktypes.TaskType(
        name=name, doc=doc, params=[_param(p) for p in params if p.kind in kinds], pool=pool
    )


def publish(client: redis.Redis, *, pool: str) -> int:
    """Write every registered task's TaskType; returns how many. Redis errors are logged, not raised:
    a worker that cannot advertise its tasks still runs them."""
    types = {name: describe(name, sdk.lookup(name), pool=pool) for name in sdk.registered()}
    if not types:
        return 0
    try:
        client.hset(names.TASK_TYPES, mapping={n: t.model_dump_json() for n, t in types.items()})
    except redis.RedisError as exc:
        log.warning("could not publish task signatures: %s", exc)
        return 0
    return len(types)
