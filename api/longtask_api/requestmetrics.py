"""ASGI middleware timing every HTTP request into longtask_api_request_duration_seconds.

The route label is the matched route's template (`/v1/namespaces/{namespace}/tasks/{name}`),
found before the request runs, so requests refused early (401, 413) are labelled too; a
path no route matches is "unmatched", so scanners cannot add series. The time is taken
until the response headers leave: a Server-Sent Events stream counts its time to start,
not its lifetime (longtask_api_sse_streams shows those). It must not change any response.
"""

from __future__ import annotations

import time

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from longtask_api import metrics


def route_template(scope: Scope) -> str:
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", []):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        route, method = route_template(scope), scope["method"]
        observed = False

        def observe(status: int) -> None:
            nonlocal observed
            if not observed:
                observed = True
                metrics.REQUEST_DURATION.labels(route=route, method=method, status=str(status)).observe(
                    time.perf_counter() - began
                )

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                observe(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except Exception:
            observe(500)
            raise
