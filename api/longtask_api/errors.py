"""The gateway's error hierarchy and the JSON shape every error answer has; no I/O here."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
    """Base of the errors handlers raise; app.py turns each into a Problem answer."""

    status = 500

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []

    def problem(self) -> Problem:
        return Problem(status=self.status, detail=self.detail, errors=self.errors)


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Invalid(ApiError):
    status = 422


class Unavailable(ApiError):
    """Kubernetes or Redis cannot be reached right now; the client may retry."""

    status = 503
