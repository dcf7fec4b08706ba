"""Every Kubernetes API call the gateway makes, with API errors turned into ApiErrors.

It must not shape HTTP answers: routes do that from the plain dicts returned here.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from longtask_api import errors
from longtask_contracts import names


async def connect() -> client.ApiClient:
    """In-cluster config when running in a pod, else $KUBECONFIG."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        await config.load_kube_config()
    return client.ApiClient()


def _translate(exc: ApiException, what: str) -> errors.ApiError:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    message = body.get("message") or exc.reason or "Kubernetes API error"
    if exc.status == 404:
        return errors.NotFound(f"{what} not found")
    if exc.status == 409:
        return errors.Conflict(message)
    if exc.status in (400, 422):
        causes = (body.get("details") or {}).get("causes") or []
        return errors.Invalid(
            message,
            [errors.FieldError(field=c.get("field", ""), message=c.get("message", "")) for c in causes],
        )
    if exc.status == 403:
        return errors.ApiError(f"the gateway may not access {what}: {message}")
    return errors.Unavailable(f"Kubernetes API answered {exc.status}: {message}")


class LongTasks:
    """LongTask CRUD in one namespace-aware object."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)

    async def create(self, *, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            obj: dict[str, Any] = await self.custom.create_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, body
            )
        except ApiException as exc:
            raise _translate(exc, f"namespace {namespace!r}") from None
        return obj

    async def get(self, *, namespace: str, name: str) -> dict[str, Any]:
        try:
            obj: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, name
            )
        except ApiException as exc:
            raise _translate(exc, f"task {namespace}/{name}") from None
        return obj

    async def list(
        self,
        *,
        namespace: str,
        limit: int,
        continue_token: str | None,
        field_selector: str | None,
        label_selector: str | None,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"limit": limit}
        if continue_token:
            kwargs["_continue"] = continue_token
        if field_selector:
            kwargs["field_selector"] = field_selector
        if label_selector:
            kwargs["label_selector"] = label_selector
        try:
            obj: dict[str, Any] = await self.custom.list_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, **kwargs
            )
        except ApiException as exc:
            if exc.status == 410:
                raise errors.Invalid("the continue token has expired; list again from the start") from None
            raise _translate(exc, f"tasks in {namespace!r}") from None
        return obj

    async def patch(self, *, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the LongTask (spec fields, annotations)."""
        try:
            obj: dict[str, Any] = await self.custom.patch_namespaced_custom_object(
                names.GROUP,
                names.VERSION,
                namespace,
                names.PLURAL,
                name,
                body,
                _content_type="application/merge-patch+json",  # type: ignore[call-arg]
            )
        except ApiException as exc:
            raise _translate(exc, f"task {namespace}/{name}") from None
        return obj
