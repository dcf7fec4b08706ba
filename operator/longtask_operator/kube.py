"""The operator's own Kubernetes calls, on top of the shared layer (longtask_runtime.kube):
Deployments and their scale, pods, and Events.

It must not decide anything; it translates plain data into API calls and raises only
kubeerrors (a 404 on a LongTask is NotFound, which callers treat as "nothing to do").
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import uuid
from typing import Any

from kubernetes_asyncio import client

from longtask_contracts import names
from longtask_runtime import kube as runtimekube
from longtask_runtime import kubeerrors

log = logging.getLogger(__name__)


class Kube(runtimekube.Kube):
    """The shared LongTask and WorkerPool calls, and the operator's own."""

    def __init__(self, api: client.ApiClient, *, timeout: float) -> None:
        super().__init__(api, timeout=timeout)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)

    @classmethod
    async def connect(cls, *, request_timeout: float) -> Kube:
        """Logged in as every component is (runtimekube.login); each request may take
        `request_timeout` seconds."""
        return cls(await runtimekube.login(), timeout=request_timeout)

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
    async def get_deployment(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """The Deployment as a plain dict (camelCase, read raw), or None if there is none (yet)."""
        with runtimekube.calling(f"deployment {namespace}/{name}"):
            reply: Any = await self.apps.read_namespaced_deployment(
                name, namespace, _request_timeout=self.timeout, _preload_content=False
            )
            if reply.status == 404:
                reply.release()
                return None
            return await runtimekube.json_of(reply)

    async def scale(self, *, namespace: str, deployment: str, replicas: int) -> None:
        """Set the Deployment's replicas through its scale subresource (what HPA writes)."""
        with runtimekube.calling(f"deployment {namespace}/{deployment}"):
            await self.apps.patch_namespaced_deployment_scale(
                deployment, namespace, {"spec": {"replicas": replicas}}, _request_timeout=self.timeout
            )

    async def pods(self, *, namespace: str, match_labels: dict[str, str]) -> list[dict[str, Any]]:
        """The pods `match_labels` selects, as plain dicts (read raw)."""
        selector = ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
        with runtimekube.calling(f"pods in {namespace!r}"):
            reply = await self.core.list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=self.timeout, _preload_content=False
            )
            items: list[dict[str, Any]] = (await runtimekube.json_of(reply)).get("items") or []
        return items

    async def annotate_pod(self, *, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """Merge `annotations` into a pod's; a pod that is already gone is no error."""
        with contextlib.suppress(kubeerrors.NotFound), runtimekube.calling(f"pod {namespace}/{name}"):
            await self.core.patch_namespaced_pod(
                name, namespace, {"metadata": {"annotations": annotations}}, _request_timeout=self.timeout
            )

    # -- pool access -------------------------------------------------------------------
    async def get_workerpool(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """The WorkerPool as a plain dict, or None if there is none."""
        with runtimekube.calling(f"workerpool {namespace}/{name}"):
            reply: Any = await self.custom.get_namespaced_custom_object(
                names.GROUP,
                names.VERSION,
                namespace,
                names.POOL_PLURAL,
                name,
                _request_timeout=self.timeout,
                _preload_content=False,
            )
            if reply.status == 404:
                reply.release()
                return None
            return await runtimekube.json_of(reply)

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
