"""The gateway's OpenAPI document: FastAPI's, plus what only the running configuration knows.

FastAPI describes the routes from their signatures; this adds the bearer security scheme
when auth is on (on every route middleware.Authenticate guards), with the 429 the bound on
TokenReviews gives there, and leaves it, and the 401/403 answers only auth gives, out when
it is off (createTask's and triggerSchedule's 403 stay: a pool that does not admit the
namespace refuses it either way). A query or header parameter is absent or a string, never
JSON null, so its schema is the string's alone. Pure: it builds
a document, it does no I/O and decides nothing about requests.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from fastapi import FastAPI

from longtask_api import middleware

SCHEME = "kubernetes"
_BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "A Kubernetes bearer token (e.g. `kubectl create token NAME`); the gateway checks it "
    "with a TokenReview and each request with a SubjectAccessReview (see docs/security.md).",
}
_AUTH_ANSWERS = ("401", "403")
# Answers an operation gives with auth off too, and what they then mean.
_NOT_AUTH_ONLY = {
    ("createTask", "403"): "The task's pool is held by a WorkerPool whose namespaceSelector does "
    "not admit this namespace (docs/security.md).",
    ("triggerSchedule", "403"): "The template's pool is held by a WorkerPool whose namespaceSelector "
    "does not admit this namespace (docs/security.md).",
}
_REVIEWS_SPENT = (
    "A token not in the gateway's cache, from a client address that has caused too many "
    "TokenReviews lately (LONGTASK_AUTH_REVIEW_RATE_PER_SECOND); see Retry-After."
)
_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def install(app: FastAPI, *, auth: bool) -> None:
    """Make `app.openapi()` (and /openapi.json) return the document for this configuration."""

    @functools.cache
    def document() -> dict[str, Any]:
        return build(app, auth=auth)

    app.openapi = document  # type: ignore[method-assign]


def build(app: FastAPI, *, auth: bool) -> dict[str, Any]:
    """FastAPI's own document for `app`, with the security and parameters this module adds."""
    doc = copy.deepcopy(FastAPI.openapi(app))
    if auth:
        doc.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = dict(_BEARER)
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            if auth and path not in middleware.OPEN_PATHS:
                operation["security"] = [{SCHEME: []}]
                _add_reviews_spent(operation.setdefault("responses", {}))
            elif not auth:
                for status in _AUTH_ANSWERS:
                    answer = operation.get("responses", {}).pop(status, None)
                    meaning = _NOT_AUTH_ONLY.get((operation.get("operationId", ""), status))
                    if answer is not None and meaning is not None:
                        operation["responses"][status] = {**answer, "description": meaning}
            for parameter in operation.get("parameters", []):
                parameter["schema"] = _not_null(parameter["schema"])
    return doc


def _add_reviews_spent(responses: dict[str, Any]) -> None:
    """The 429 of a spent TokenReview budget, beside a route's own 429 if it has one."""
    own = responses.get("429")
    if own is None:
        responses["429"] = {
            "description": _REVIEWS_SPENT,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    else:
        own["description"] = f"{own.get('description', '')} Or: {_REVIEWS_SPENT}".strip()


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, {type: null}]` (FastAPI's `X | None = None`) as X, keeping title, default..."""
    branches = schema.get("anyOf")
    if not isinstance(branches, list):
        return schema
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) != 1 or len(kept) == len(branches):
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    if rest.get("default", ...) is None:
        del rest["default"]
    return {**copy.deepcopy(kept[0]), **rest}
