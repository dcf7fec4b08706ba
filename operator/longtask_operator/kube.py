"""Every Kubernetes API call the operator makes (Kopf's own watching of WorkerPools aside).

It must not decide anything; it translates plain data into API calls and tolerates what
is expected: a 404 means the LongTask is gone, which callers treat as "nothing to do".
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from longtask_contracts import names

log = logging.getLogger(__name__)


# Seconds any one API request may take; a hung connection must not wedge a loop.
TIMEOUT = 15


# LongTasks per page of a LIST (the apiserver answers a page of 500 in tens of ms).
PAGE = 500
# The server ends a watch after this long (the client then watches again from where it was).
WATCH_SECONDS = 300


class Gone(Exception):
    """The LongTask no longer exists."""


class Expired(Exception):
    """A watch's resourceVersion is too old (410): list again."""


class Unselectable(Exception):
    """A field selector names a field the LongTask CRD does not offer (an older CRD)."""


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)

    @classmethod
    async def connect(cls) -> Kube:
        """In-cluster config when running in a pod, else $KUBECONFIG."""
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            await config.load_kube_config()
        return cls(client.ApiClient())

    async def close(self) -> None:
        await self.api.close()

    async def get(self, *, namespace: str, name: str) -> dict[str, Any]:
        try:
            obj: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, name, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                raise Gone(f"{namespace}/{name}") from None
            raise
        return obj

    async def longtask_pages(
        self, *, namespace: str | None, field_selector: str | None = None
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        """Every LongTask in `namespace` (None: all) that `field_selector` selects, a page at
        a time, each page with the list's resourceVersion (the same for every page: one
        snapshot). Raises Unselectable if the CRD does not offer the selector's fields."""
        lister = self._longtask_lister(namespace)
        selecting = {"field_selector": field_selector} if field_selector else {}
        more: str | None = None
        while True:
            try:
                reply = await lister(limit=PAGE, _continue=more, _request_timeout=TIMEOUT * 4, **selecting)
            except ApiException as exc:
                if exc.status == 400 and field_selector:
                    raise Unselectable(f"{field_selector}: {exc.reason}") from None
                raise
            yield reply["items"], reply["metadata"]["resourceVersion"]
            more = reply["metadata"].get("continue")
            if not more:
                return

    async def longtask_events(
        self, *, namespace: str | None, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """LongTask watch events (type, object) after `resource_version`, bookmarks included
        (their object carries only the resourceVersion), until the server ends the watch
        after WATCH_SECONDS. Raises Expired if the version is too old."""
        stream = watch.Watch().stream(
            self._longtask_lister(namespace),
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _request_timeout=WATCH_SECONDS + 30,
        )
        try:
            async with stream:
                async for event in stream:
                    yield event["type"], event["raw_object"]
        except ApiException as exc:
            if exc.status == 410:
                raise Expired(str(exc.reason)) from None
            raise

    def _longtask_lister(self, namespace: str | None) -> Any:
        """The list call for LongTasks in `namespace` (None: all), its positional args bound."""
        if namespace:
            return functools.partial(
                self.custom.list_namespaced_custom_object, names.GROUP, names.VERSION, namespace, names.PLURAL
            )
        return functools.partial(
            self.custom.list_cluster_custom_object, names.GROUP, names.VERSION, names.PLURAL
        )

    async def patch_status(self, *, namespace: str, name: str, uid: str, status: dict[str, Any]) -> None:
        """Merge-patch the status subresource, guarded by uid so a recreated namesake is safe.

        The reply (the whole object) is not read into Python: nothing here needs it, and
        parsing it was a good part of the operator's CPU per task in a burst."""
        body = {"metadata": {"uid": uid}, "status": status}
        reply = await self.custom.patch_namespaced_custom_object_status(
            names.GROUP,
            names.VERSION,
            namespace,
            names.PLURAL,
            name,
            body,
            _content_type="application/merge-patch+json",  # type: ignore[call-arg]
            _request_timeout=TIMEOUT,
            _preload_content=False,
        )
        try:
            if reply.status in (404, 409):  # deleted, or a new object with the same name
                raise Gone(f"{namespace}/{name}")
            await _ok(reply)
        finally:
            reply.release()

    async def remove_finalizer(
        self, *, namespace: str, name: str, keep: list[str], resource_version: str
    ) -> None:
        """Set the LongTask's finalizers to `keep`, only if it is unchanged since
        `resource_version` (a conflict is left to the next watch event, which tries again)."""
        body = {"metadata": {"finalizers": keep, "resourceVersion": resource_version}}
        try:
            await self.custom.patch_namespaced_custom_object(
                names.GROUP,
                names.VERSION,
                namespace,
                names.PLURAL,
                name,
                body,
                _content_type="application/merge-patch+json",  # type: ignore[call-arg]
                _request_timeout=TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:
                raise Gone(f"{namespace}/{name}") from None
            if exc.status != 409:
                raise

    async def delete(self, *, namespace: str, name: str, uid: str) -> None:
        """Delete the LongTask, only if it is still the object with this uid."""
        body = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=uid), propagation_policy="Background"
        )
        try:
            await self.custom.delete_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, name, body=body, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                raise Gone(f"{namespace}/{name}") from None
            raise

    async def post_event(
        self,
        *,
        namespace: str,
        name: str,
        uid: str,
        reason: str,
        message: str,
        warning: bool = False,
        kind: str = names.KIND,
    ) -> None:
        """A core/v1 Event on the LongTask (or another longtask.io `kind`); failures are
        logged, never raised."""
        now = datetime.datetime.now(datetime.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=f"{name}.{uuid.uuid4().hex[:12]}", namespace=namespace),
            involved_object=client.V1ObjectReference(
                api_version=names.API_VERSION, kind=kind, name=name, namespace=namespace, uid=uid
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            source=client.V1EventSource(component=names.MANAGER),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            reporting_component=names.MANAGER,
            reporting_instance=names.MANAGER,
        )
        try:
            await self.core.create_namespaced_event(namespace, event, _request_timeout=TIMEOUT)
        except Exception as exc:  # an Event is worth a try, never a failure of its caller
            log.warning(
                "could not post Event %s on %s/%s: %s", reason, namespace, name, getattr(exc, "reason", exc)
            )

    # -- worker pools ------------------------------------------------------------------
    async def get_deployment(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """The Deployment as a plain dict (camelCase), or None if there is none (yet)."""
        reply: Any = await self.apps.read_namespaced_deployment(
            name, namespace, _request_timeout=TIMEOUT, _preload_content=False
        )
        if reply.status == 404:
            reply.release()
            return None
        return await _json(reply)

    async def scale(self, *, namespace: str, deployment: str, replicas: int) -> None:
        """Set the Deployment's replicas through its scale subresource (what HPA writes)."""
        await self.apps.patch_namespaced_deployment_scale(
            deployment, namespace, {"spec": {"replicas": replicas}}, _request_timeout=TIMEOUT
        )

    async def pods(self, *, namespace: str, match_labels: dict[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
        reply = await self.core.list_namespaced_pod(
            namespace, label_selector=selector, _request_timeout=TIMEOUT, _preload_content=False
        )
        items: list[dict[str, Any]] = (await _json(reply)).get("items") or []
        return items

    async def annotate_pod(self, *, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """Merge `annotations` into a pod's; a pod that is already gone is no error."""
        try:
            await self.core.patch_namespaced_pod(
                name, namespace, {"metadata": {"annotations": annotations}}, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def patch_pool_status(self, *, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            await self.custom.patch_namespaced_custom_object_status(
                names.GROUP,
                names.VERSION,
                namespace,
                names.POOL_PLURAL,
                name,
                {"status": status},
                _content_type="application/merge-patch+json",  # type: ignore[call-arg]
                _request_timeout=TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:
                raise Gone(f"{namespace}/{name}") from None
            raise


# Replies read raw (`_preload_content=False`): the generated client would build models of a
# Deployment or a pod list, then the operator would turn them back into dicts; JSON as sent
# is what it reads (camelCase, as in a manifest), for a fraction of the CPU.
async def _ok(reply: Any) -> None:
    """Raise ApiException (with the server's message) unless `reply` is a success."""
    if not 200 <= reply.status < 300:
        failure = ApiException(status=reply.status, reason=reply.reason)
        failure.body = await reply.text()
        raise failure


async def _json(reply: Any) -> dict[str, Any]:
    """The JSON body of a successful raw reply (see _ok), released once read."""
    try:
        await _ok(reply)
        body: dict[str, Any] = json.loads(await reply.read())
        return body
    finally:
        reply.release()
