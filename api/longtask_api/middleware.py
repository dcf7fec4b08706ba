"""The gateway's ASGI middleware: authenticate every request but the open paths; cap request bodies.

Both answer with the Problem document themselves (they sit outside FastAPI's exception
handlers). They must not authorize: what a caller may do is decided per route (deps.py).
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from longtask_api import auth, errors
from longtask_runtime import kubeerrors

# Probes, metrics and the API's own description stay open; everything else needs a token.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
# The web page's static files (no data in them): the page asks for a token itself.
OPEN_PATHS |= {"/", "/ui/app.js", "/ui/app.css"}


class Authenticate:
    """Puts the Caller in `request.state.caller`, or answers 401 (503 if Kubernetes cannot tell)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        guard: auth.Guard = scope["app"].state.guard
        client = (scope.get("client") or ("unknown", 0))[0]
        authorization = Headers(scope=scope).get("authorization")
        if authorization is None and scope["type"] == "websocket":
            token = auth.subprotocol_token(list(scope.get("subprotocols") or []))
            authorization = f"Bearer {token}" if token else None
        try:
            caller = await guard.authenticate(authorization, client=client)
        except (errors.ApiError, kubeerrors.KubeError) as exc:
            failure = errors.of(exc)  # a KubeError: the TokenReview failed (503)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": failure.detail[:120]})
                return
            await errors.response(failure)(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)


# The create route: its body may carry a batch's items, so it has a limit of its own.
CREATE_PATH = re.compile(r"^/v1/namespaces/[^/]+/tasks/?$")


class BodyLimit:
    """413 for a body over `limit` bytes (`create_limit` for a create, POST CREATE_PATH),
    whether it comes with a Content-Length or chunked.

    A chunked body is read (up to the limit) before the app sees it, then handed on whole.
    """

    def __init__(self, app: ASGIApp, *, limit: int, create_limit: int | None = None) -> None:
        self.app = app
        self.limit = limit
        self.create_limit = limit if create_limit is None else create_limit

    def _limit(self, scope: Scope) -> int:
        creates = scope.get("method") == "POST" and CREATE_PATH.match(scope["path"])
        return self.create_limit if creates else self.limit

    @staticmethod
    def _too_large(size: int | None, limit: int) -> errors.ApiError:
        told = f"is {size} bytes" if size is not None else "is longer (chunked)"
        return errors.TooLarge(f"the request body {told}; the limit is {limit} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None:
            if length.isdigit() and int(length) > limit:
                await errors.response(self._too_large(int(length), limit))(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if "chunked" not in headers.get("transfer-encoding", "").lower():
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await errors.response(self._too_large(None, limit))(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)
