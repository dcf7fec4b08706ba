"""The operator's own Kubernetes calls, on top of the shared layer (longtask_runtime.kube):
Deployments and their scale, pods (listed and watched for the autoscaler's informers),
WorkerPool status writes guarded by resourceVersion, Events, and the leader Lease.

It must not decide anything; it translates plain data into API calls and raises only
kubeerrors (a 404 on a LongTask is NotFound, which callers treat as "nothing to do").
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from kubernetes_asyncio import client

from longtask_contracts import names
from longtask_runtime import kube as runtimekube
from longtask_runtime import kubeerrors

log = logging.getLogger(__name__)


class Kube(runtimekube.Kube):
    """The shared LongTask and WorkerPool calls, and the operator's own."""

    def __init__(
        self, api: client.ApiClient, *, timeout: float, watching: client.ApiClient | None = None
    ) -> None:
        super().__init__(api, timeout=timeout)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        # The informers' LISTs and WATCHes (see connect); `api` itself if none is given.
        self.watching = watching
        self._watch_core = client.CoreV1Api(watching or api)
        self._watch_apps = client.AppsV1Api(watching or api)
        self._watch_custom = client.CustomObjectsApi(watching or api)

    @classmethod
    async def connect(cls, *, request_timeout: float) -> Kube:
        """Logged in as every component is (runtimekube.login); each request may take
        `request_timeout` seconds.

        The autoscaler's informers (two watches per WorkerPool, each holding a connection
        for as long as it runs) get a client of their own without a connection limit: on the
        main client (100 connections) enough of them would leave no connection for status
        writes."""
        unlimited = client.Configuration()
        unlimited.connection_pool_maxsize = 0  # aiohttp: no limit
        return cls(
            await runtimekube.login(),
            timeout=request_timeout,
            watching=await runtimekube.login(configuration=unlimited),
        )

    async def close(self) -> None:
        await super().close()
        if self.watching is not None:
            await self.watching.close()

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
            await self.core.create_namespaced_event(namespace, event, _request_timeout=self.timeout)
        except Exception as exc:  # an Event is worth a try, never a failure of its caller
            log.warning(
                "could not post Event %s on %s/%s: %s", reason, namespace, name, getattr(exc, "reason", exc)
            )

    # -- worker pools ------------------------------------------------------------------
    def _lister(self, kind: str, namespace: str) -> Any:
        """The list call of `kind` ("deployments" or "pods") in `namespace`, its positional
        args bound."""
        if kind == "deployments":
            return functools.partial(self._watch_apps.list_namespaced_deployment, namespace)
        if kind == "pods":
            return functools.partial(self._watch_core.list_namespaced_pod, namespace)
        raise ValueError(f"no lister for {kind!r}")

    async def listing(
        self, *, kind: str, namespace: str, field_selector: str = "", label_selector: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """The `kind` objects ("deployments" or "pods") of `namespace` the selectors select,
        as plain dicts (read raw), and the list's resourceVersion (a watch goes on from it).
        One page: an informer selects one Deployment, or one Deployment's pods."""
        with runtimekube.calling(f"{kind} in {namespace!r}"):
            reply = await self._lister(kind, namespace)(
                field_selector=field_selector or None,
                label_selector=label_selector or None,
                _request_timeout=self.timeout * 4,
                _preload_content=False,
            )
            page = await runtimekube.json_of(reply)
        return list(page.get("items") or []), str(page["metadata"]["resourceVersion"])

    async def changes(
        self,
        *,
        kind: str,
        namespace: str,
        resource_version: str,
        field_selector: str = "",
        label_selector: str = "",
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Watch events (type, object as a plain dict) of the `kind` objects listing() selects,
        after `resource_version`, bookmarks included (their object carries only the
        resourceVersion), until the server ends the watch after runtimekube.WATCH_SECONDS.
        Raises Expired if the version is too old (list again)."""
        selectors = {"field_selector": field_selector, "label_selector": label_selector}
        async for event in runtimekube.watch_events(
            self._lister(kind, namespace),
            resource_version=resource_version,
            what=f"the watch of {kind} in {namespace!r}",
            **{key: value for key, value in selectors.items() if value},
        ):
            yield event

    async def scale(self, *, namespace: str, deployment: str, replicas: int) -> None:
        """Set the Deployment's replicas through its scale subresource (what HPA writes)."""
        with runtimekube.calling(f"deployment {namespace}/{deployment}"):
            await self.apps.patch_namespaced_deployment_scale(
                deployment, namespace, {"spec": {"replicas": replicas}}, _request_timeout=self.timeout
            )

    async def annotate_pod(
        self, *, namespace: str, name: str, annotations: dict[str, str]
    ) -> dict[str, Any] | None:
        """Merge `annotations` into a pod's; the patched pod (read raw), or None if it is
        already gone (no error)."""
        with contextlib.suppress(kubeerrors.NotFound), runtimekube.calling(f"pod {namespace}/{name}"):
            reply = await self.core.patch_namespaced_pod(
                name,
                namespace,
                {"metadata": {"annotations": annotations}},
                _request_timeout=self.timeout,
                _preload_content=False,
            )
            return await runtimekube.json_of(reply)
        return None

    async def get_pool(self, *, namespace: str, name: str) -> dict[str, Any]:
        """The WorkerPool; NotFound if there is none."""
        with runtimekube.calling(f"workerpool {namespace}/{name}"):
            obj: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.POOL_PLURAL, name, _request_timeout=self.timeout
            )
        return obj

    async def patch_pool_status_at(
        self, *, namespace: str, name: str, resource_version: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the WorkerPool's status, only if the object is still at
        `resource_version` unless that is "" (Conflict if anyone wrote it since: a merge
        patch replaces a list whole, so `status.conditions` must be written from the object
        as it is, or a condition another writer added meanwhile would be lost). The patched
        object; NotFound if it is gone."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        with runtimekube.calling(f"workerpool {namespace}/{name}"):
            reply = await self._merge_patch(
                self.custom.patch_namespaced_custom_object_status,
                names.POOL_PLURAL,
                namespace,
                name,
                body,
                _preload_content=False,
            )
            return await runtimekube.json_of(reply)

    # -- schedules (schedules.py): every LongTaskSchedule, and every LongTask one made -----
    def _schedule_lister(self, kind: str) -> Any:
        """The cluster-wide list call of SCHEDULE_KINDS' `kind`, its positional args bound."""
        plural = {"schedules": names.SCHEDULE_PLURAL, "runs": names.PLURAL}[kind]
        return functools.partial(
            self._watch_custom.list_cluster_custom_object, names.GROUP, names.VERSION, plural
        )

    def _schedule_selectors(self, kind: str) -> dict[str, str]:
        return {"label_selector": names.SCHEDULE_LABEL} if kind == "runs" else {}

    async def schedule_listing(self, kind: str) -> tuple[list[dict[str, Any]], str]:
        """Every LongTaskSchedule ("schedules") or every LongTask labelled with a schedule
        ("runs") in the cluster, and the list's resourceVersion; a page at a time, one
        snapshot."""
        items: list[dict[str, Any]] = []
        more: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": runtimekube.PAGE, "_request_timeout": self.timeout * 4}
            if more:
                kwargs["_continue"] = more
            with runtimekube.calling(f"schedule {kind}"):
                reply = await self._schedule_lister(kind)(
                    _preload_content=False, **self._schedule_selectors(kind), **kwargs
                )
                page = await runtimekube.json_of(reply)
            items += page.get("items") or []
            more = page["metadata"].get("continue")
            if not more:
                return items, str(page["metadata"]["resourceVersion"])

    async def schedule_changes(
        self, kind: str, *, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Watch events of what schedule_listing(kind) lists, after `resource_version`,
        bookmarks included, until the server ends the watch. Expired if the version is too old."""
        async for event in runtimekube.watch_events(
            self._schedule_lister(kind),
            resource_version=resource_version,
            what=f"the watch of schedule {kind}",
            **self._schedule_selectors(kind),
        ):
            yield event

    # -- pool access -------------------------------------------------------------------
    async def get_workerpool(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """The WorkerPool as a plain dict, or None if there is none."""
        try:
            return await self.get_pool(namespace=namespace, name=name)
        except kubeerrors.NotFound:
            return None

    async def get_namespace(self, *, name: str) -> dict[str, Any] | None:
        """The Namespace as a plain dict, or None if there is none."""
        with runtimekube.calling(f"namespace {name}"):
            reply: Any = await self.core.read_namespace(
                name, _request_timeout=self.timeout, _preload_content=False
            )
            if reply.status == 404:
                reply.release()
                return None
            return await runtimekube.json_of(reply)

    # -- the leader Lease (leader.py) ----------------------------------------------------
    async def get_lease(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """The Lease as a plain dict, or None if there is none."""
        with runtimekube.calling(f"lease {namespace}/{name}"):
            reply: Any = await self.coordination.read_namespaced_lease(
                name, namespace, _request_timeout=self.timeout, _preload_content=False
            )
            if reply.status == 404:
                reply.release()
                return None
            return await runtimekube.json_of(reply)

    async def create_lease(self, *, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Create the Lease with `spec`; AlreadyExists if another candidate created it first."""
        body: Any = {  # a dict is sent as it is (the client's type says V1Lease)
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        with runtimekube.calling(f"lease {namespace}/{name}"):
            reply: Any = await self.coordination.create_namespaced_lease(
                namespace, body, _request_timeout=self.timeout, _preload_content=False
            )
            return await runtimekube.json_of(reply)

    async def write_lease(
        self, *, namespace: str, name: str, resource_version: str, spec: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge `spec` into the Lease, only if it is still at `resource_version` (Conflict if
        anyone wrote it since: then another candidate won, or the holder renewed); the written
        Lease. A None in `spec` removes that field."""
        body = {"metadata": {"resourceVersion": resource_version}, "spec": spec}
        patch: Any = self.coordination.patch_namespaced_lease  # its type omits _content_type
        with runtimekube.calling(f"lease {namespace}/{name}"):
            reply: Any = await patch(
                name,
                namespace,
                body,
                _content_type=runtimekube.MERGE_PATCH,
                _request_timeout=self.timeout,
                _preload_content=False,
            )
            return await runtimekube.json_of(reply)

    async def lease_changes(
        self, *, namespace: str, name: str, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Watch events (type, Lease as a plain dict) of the Lease after `resource_version`,
        bookmarks included (their object carries only the resourceVersion), until the server
        ends the watch. Expired if the version is too old."""
        async for event in runtimekube.watch_events(
            functools.partial(self.coordination.list_namespaced_lease, namespace),
            resource_version=resource_version,
            what=f"the watch of lease {namespace}/{name}",
            field_selector=f"metadata.name={name}",
        ):
            yield event
