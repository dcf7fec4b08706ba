"""The gateway's request histogram labels each answer with its route template.

Covers: a routed request (routes of included routers too) is labelled with the template
the router chose, never the raw path; a 405 with the template of the path's route; a
request refused before routing (413 from the body cap) with the template its path
matches; a path no route matches as "unmatched".
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from longtask_api import metrics, middleware, requestmetrics

TASKS = "/v1/namespaces/{namespace}/tasks"


def _app() -> FastAPI:
    router = APIRouter(prefix=TASKS)

    @router.post("")
    async def create(namespace: str) -> dict[str, str]:
        return {"namespace": namespace}

    @router.get("/{name}")
    async def get(namespace: str, name: str) -> dict[str, str]:
        return {"name": name}

    app = FastAPI()
    app.include_router(router)
    app.add_middleware(middleware.BodyLimit, limit=10)
    app.add_middleware(requestmetrics.RequestMetrics)
    return app


def _count(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    for family in metrics.REQUEST_DURATION.collect():
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels == labels:
                return sample.value
    return 0.0


@pytest.mark.parametrize(
    ("method", "path", "body", "label", "status"),
    [
        ("POST", "/v1/namespaces/a/tasks", b"", TASKS, "200"),
        ("GET", "/v1/namespaces/a/tasks/b", b"", f"{TASKS}/{{name}}", "200"),
        ("PUT", "/v1/namespaces/a/tasks/b", b"", f"{TASKS}/{{name}}", "405"),
        ("POST", "/v1/namespaces/a/tasks", b"x" * 100, TASKS, "413"),
        ("GET", "/v1/namespaces/a/other", b"", "unmatched", "404"),
    ],
)
async def test_requests_are_labelled_by_route_template(method, path, body, label, status):
    before = _count(label, method, status)
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.request(method, path, content=body)
    assert str(response.status_code) == status
    assert _count(label, method, status) == before + 1
