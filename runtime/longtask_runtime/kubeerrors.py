"""The one error hierarchy of every Kubernetes call longtask makes, and the translation into it.

Callers catch these, never the client's ApiException or aiohttp's errors: each carries the
HTTP status (None when the apiserver never answered) and whether trying again later can
succeed. It decides nothing and talks to nothing; the client layer (kube.py) raises these
`from` the client's exception, so a traceback still shows what the client saw.
"""

from __future__ import annotations

import json
from typing import Any


class KubeError(Exception):
    """A Kubernetes API call failed. `status` is the HTTP status, None if none came back."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        what: str = "",
        causes: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(f"{what}: {message}" if what else message)
        self.message = message  # the apiserver's own words (or the client's, without an answer)
        self.status = status
        self.what = what  # what was being reached, e.g. "longtask default/x"
        self.causes = causes or []  # [{"field": ..., "message": ...}] for Invalid


class NotFound(KubeError):
    """404: the object (or its namespace) does not exist."""


class Conflict(KubeError):
    """409: a precondition (uid, resourceVersion) failed, or the name is taken. Read again, then retry."""

    retryable = True


class AlreadyExists(Conflict):
    """409 AlreadyExists on a create: the name is taken."""

    retryable = False


class Invalid(KubeError):
    """400/422: the apiserver refused the request body; `causes` name the fields."""


class Expired(KubeError):
    """410: a watch's resourceVersion or a LIST's continue token is too old: list again."""


class Unselectable(Invalid):
    """400 on a field selector the CRD does not offer (an older CRD without selectableFields)."""


class Forbidden(KubeError):
    """401/403: longtask's own credentials may not do this (RBAC not installed or too narrow)."""


class Unavailable(KubeError):
    """The apiserver did not answer, timed out, throttled (429) or failed (5xx): try again later."""

    retryable = True


def from_status(
    status: int, message: str, *, what: str = "", body: dict[str, Any] | None = None
) -> KubeError:
    """The KubeError for an apiserver answer with HTTP `status` and its Status `body`."""
    body = body or {}
    details = body.get("details") or {}
    kind: type[KubeError] = KubeError
    if status == 404:
        kind = NotFound
    elif status == 409:
        kind = AlreadyExists if body.get("reason") == "AlreadyExists" else Conflict
    elif status == 410:
        kind = Expired
    elif status in (400, 422):
        causes = [
            {"field": str(c.get("field", "")), "message": str(c.get("message", ""))}
            for c in details.get("causes") or []
        ]
        return Invalid(message, status=status, what=what, causes=causes)
    elif status in (401, 403):
        kind = Forbidden
    elif status == 429 or status >= 500:
        kind = Unavailable
    return kind(message, status=status, what=what)


def from_api_exception(exc: Any, what: str) -> KubeError:
    """The KubeError for a kubernetes(_asyncio) ApiException raised while reaching `what`."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or exc.reason or "Kubernetes API error")
    status = int(exc.status or 0)
    if not status:  # the client's own failure (no answer at all)
        return Unavailable(message, what=what)
    return from_status(status, message, what=what, body=body)
