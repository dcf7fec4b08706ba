"""ASGI middleware timing every HTTP request into longtask_api_request_duration_seconds.

The route label is the matched route's template (`/v1/namespaces/{namespace}/tasks/{name}`):
the route the router chose (scope["route"]) when the request got that far, else the one
whose pattern matches, so requests refused early (401, 413) are labelled too; a path no
route matches is "unmatched", so scanners cannot add series. (Matching every route's
pattern for every request cost the create route more than its rate limit and auth.) The time is taken
until the response headers leave: a Server-Sent Events stream counts its time to start,
not its lifetime (longtask_api_sse_streams shows those). It must not change any response.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from longtask_api import metrics


def route_template(scope: Scope) -> str:
    chosen = scope.get("route")
    if chosen is not None and isinstance(path := getattr(chosen, "path", None), str):
        return path
    for route in _routes(getattr(scope.get("app"), "router", None)):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


def _routes(router: object) -> Iterator[Any]:
    """Every route of `router`, those of included routers too (FastAPI keeps them apart)."""
    for route in getattr(router, "routes", []):
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included)
        else:
            yield route


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        observed = False

        def observe(status: int) -> None:
            nonlocal observed
            if not observed:
                observed = True
                elapsed = time.perf_counter() - began
                metrics.REQUEST_DURATION.labels(
                    route=route_template(scope), method=scope["method"], status=str(status)
                ).observe(elapsed)

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                observe(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except Exception:
            observe(500)
            raise
