"""The gateway's error hierarchy and the JSON shape every error answer has; no I/O here.

No answer built here ever carries a stack trace, a token or another secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse
from kombu import exceptions as kombuerrors
from pydantic import BaseModel, Field
from redis import exceptions as redisexceptions

from longtask_runtime import kubeerrors


class FieldError(BaseModel):
    field: str = Field(
        description="Dotted path of the offending field, e.g. spec.retry.maxRetries.", examples=["spec.task"]
    )
    message: str = Field(description="What is wrong and what would be accepted.")


class Problem(BaseModel):
    """Every 4xx/5xx answer of the gateway has this shape."""

    status: int = Field(examples=[422])
    detail: str = Field(
        description="One sentence saying what went wrong.", examples=["the task spec is invalid"]
    )
    errors: list[FieldError] = Field(default_factory=list)


class ApiError(Exception):
    """Base of the errors handlers raise; app.py turns each into a Problem answer.

    `status` is the class's unless given; `headers` belong to this error alone (each
    instance has its own dict: nothing is shared between answers).
    """

    status = 500

    def __init__(
        self,
        detail: str,
        errors: list[FieldError] | None = None,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        if status is not None:
            self.status = status
        self.headers: dict[str, str] = dict(headers or {})

    def problem(self) -> Problem:
        return Problem(status=self.status, detail=self.detail, errors=self.errors)


class BadRequest(ApiError):
    """A header the gateway cannot read (e.g. a malformed Idempotency-Key)."""

    status = 400


class Unauthenticated(ApiError):
    """No bearer token, or one Kubernetes does not accept (TokenReview)."""

    status = 401

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail, errors, headers={"WWW-Authenticate": 'Bearer realm="longtask"'})


class Forbidden(ApiError):
    """Kubernetes (SubjectAccessReview) does not allow this caller this verb here."""

    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Invalid(ApiError):
    status = 422


class TooLarge(ApiError):
    status = 413


class TooManyRequests(ApiError):
    """The caller's rate limit is spent; Retry-After says when the next request fits."""

    status = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


# Retry-After of a 503: about what a Redis Sentinel failover or an apiserver restart takes.
RETRY_AFTER_SECONDS = 2


class Unavailable(ApiError):
    """Kubernetes or Redis cannot be reached right now; the client may retry (Retry-After)."""

    status = 503

    def __init__(
        self, detail: str, errors: list[FieldError] | None = None, *, retry_after: int = RETRY_AFTER_SECONDS
    ) -> None:
        super().__init__(detail, errors, headers={"Retry-After": str(retry_after)})


def response(exc: ApiError) -> JSONResponse:
    """The Problem answer for `exc`, with its headers (WWW-Authenticate, Retry-After)."""
    return JSONResponse(exc.problem().model_dump(), status_code=exc.status, headers=exc.headers or None)


# The error answers every route may give, for OpenAPI (`responses=` of each router); a route
# adds its own (409, 413, 429) or rewords one.
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "model": Problem,
        "description": "No bearer token, or one Kubernetes rejects (`WWW-Authenticate: Bearer`).",
    },
    403: {"model": Problem, "description": "Kubernetes does not allow this caller this verb here."},
    404: {"model": Problem, "description": "No such task or namespace."},
    422: {"model": Problem, "description": "Invalid input; `errors` names each field."},
    503: {
        "model": Problem,
        "description": "Kubernetes or Redis is unreachable (e.g. failing over); retry after Retry-After.",
    },
}


def from_kube(exc: kubeerrors.KubeError) -> ApiError:
    """The answer for a failed Kubernetes call: the one place the gateway maps them.

    What the caller asked for and may change is a 4xx (404, 409, 422 with the apiserver's
    field causes, an expired continue token 422); the gateway's own ServiceAccount being
    refused (RBAC not installed), or an apiserver that is down, slow or failing, is a 503,
    never a 500.
    """
    if isinstance(exc, kubeerrors.NotFound):
        return NotFound(f"{exc.what} not found")
    if isinstance(exc, kubeerrors.Conflict):
        return Conflict(exc.message)
    if isinstance(exc, kubeerrors.Expired):
        return Invalid("the continue token has expired; list again from the start")
    if isinstance(exc, kubeerrors.Invalid):
        return Invalid(exc.message, [FieldError(field=c["field"], message=c["message"]) for c in exc.causes])
    if isinstance(exc, kubeerrors.Forbidden) and exc.status == 403:
        return Unavailable(f"the gateway itself may not access {exc.what}: {exc.message}")
    if exc.status is None:
        return Unavailable(exc.message)  # no answer at all (connection refused, a timeout)
    return Unavailable(f"Kubernetes API answered {exc.status}: {exc.message}")


# What a Redis that is down, failing over or still loading raises in a request: a lost or
# refused connection (also MasterNotFoundError, when no Sentinel names a master, and
# BusyLoadingError), a timeout, a READONLY answer from a demoted master; and Celery's
# OperationalError when kombu cannot publish for the same reasons.
BACKEND_DOWN: tuple[type[BaseException], ...] = (
    redisexceptions.ConnectionError,
    redisexceptions.TimeoutError,
    redisexceptions.ReadOnlyError,
    redisexceptions.TryAgainError,
    kombuerrors.OperationalError,
)


def from_backend(exc: BaseException) -> ApiError | None:
    """The 503 for an error that says Redis (or the broker on it) is unavailable right now;
    None for anything else. Any other RedisError is a 503 too (the request did not finish
    because of Redis, never because of the caller), worded as such."""
    if isinstance(exc, BaseExceptionGroup):
        found = [from_backend(inner) for inner in exc.exceptions]
        return found[0] if found and all(found) else None
    if isinstance(exc, BACKEND_DOWN):
        return Unavailable(f"Redis is unavailable (restarting or failing over): {type(exc).__name__}")
    if isinstance(exc, redisexceptions.RedisError):
        return Unavailable(f"Redis could not complete the request: {type(exc).__name__}")
    return None


def of(exc: ApiError | kubeerrors.KubeError) -> ApiError:
    """`exc` as an ApiError, for the places outside FastAPI's exception handlers (middleware,
    a WebSocket's refusal) that answer themselves."""
    return from_kube(exc) if isinstance(exc, kubeerrors.KubeError) else exc
