"""The one Kubernetes client layer: the log-in every component uses, and the LongTask and
WorkerPool calls the operator and the gateway both make.

Every call has the timeout its caller gave (from the caller's settings) and raises only
kubeerrors classes, `from` the client's exception. It must not decide anything: it turns
plain dicts into API calls and back; what a 404 means is the caller's business. It imports
no component. (Component-only calls live on top of it: the operator's Deployments, pods
and Events in longtask_operator/kube.py, the gateway's reviews in longtask_api/kube.py.)
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import kubernetes
import yarl
from aiohttp import helpers as aiohttp_helpers
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from longtask_contracts import names
from longtask_runtime import kubeerrors

# LongTasks per page of a LIST (the apiserver answers a page of 500 in tens of ms).
PAGE = 500
# The server ends a watch after this long (the client then watches again from where it was).
WATCH_SECONDS = 300
MERGE_PATCH = "application/merge-patch+json"


# -- log-in ------------------------------------------------------------------------------
async def login(
    *, kubeconfig: str | os.PathLike[str] | None = None, configuration: client.Configuration | None = None
) -> client.ApiClient:
    """An asyncio API client: the kubeconfig at `kubeconfig` if given, else in-cluster config
    when running in a pod, else $KUBECONFIG (~/.kube/config). `configuration` is the caller's
    own Configuration to fill (e.g. a larger connection pool), else a new one. The client
    reads the environment once, not per request (see _read_the_environment_once)."""
    cfg = configuration if configuration is not None else client.Configuration()
    await _load(cfg, kubeconfig=kubeconfig)
    api = client.ApiClient(configuration=cfg)
    _read_the_environment_once(api)
    return api


async def credentials(*, kubeconfig: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What login() logs in with, as plain fields (server, CA, bearer token or client
    certificate) for a library that keeps its own HTTP session: the operator's Kopf login
    handler makes its ConnectionInfo of them, so Kopf logs in as every component does.
    A token read from a projected file is read now (Kopf logs in again on a 401).
    `kubeconfig` as for login()."""
    cfg = client.Configuration()
    await _load(cfg, kubeconfig=kubeconfig)
    header = await cfg.get_api_key_with_prefix("BearerToken") or ""
    scheme, _, token = header.partition(" ")
    return {
        "server": cfg.host,
        "ca_path": cfg.ssl_ca_cert,
        "insecure": not cfg.verify_ssl,
        "scheme": scheme or None,
        "token": token or None,
        "certificate_path": cfg.cert_file,
        "private_key_path": cfg.key_file,
    }


async def _load(cfg: client.Configuration, *, kubeconfig: str | os.PathLike[str] | None) -> None:
    """Fill `cfg` from `kubeconfig`, else in-cluster config, else $KUBECONFIG."""
    if kubeconfig is not None:
        await config.load_kube_config(config_file=os.fspath(kubeconfig), client_configuration=cfg)
        return
    try:
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        await config.load_kube_config(client_configuration=cfg)


def login_sync(*, kubeconfig: str | os.PathLike[str] | None = None) -> kubernetes.client.ApiClient:
    """The same log-in for the synchronous `kubernetes` client (the dev node agent's threads).
    urllib3 reads the environment once per pool, so there is nothing to turn off."""
    cfg = kubernetes.client.Configuration()
    if kubeconfig is not None:
        kubernetes.config.load_kube_config(config_file=os.fspath(kubeconfig), client_configuration=cfg)
    else:
        try:
            kubernetes.config.load_incluster_config(client_configuration=cfg)
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(client_configuration=cfg)
    return kubernetes.client.ApiClient(configuration=cfg)


def _read_the_environment_once(api: client.ApiClient) -> None:
    """Give the client a session that does not look for proxies and ~/.netrc per request.

    kubernetes_asyncio's aiohttp session trusts the environment, so aiohttp runs two lookups
    (proxy variables, then netrc) in the event loop's default thread pool before every
    apiserver call: two thread hops on every request, queued behind whatever else that pool
    runs (e.g. the gateway's Celery sends). When a proxy variable applies to the apiserver
    the session is left as it is; otherwise nothing in the environment can change per request,
    so a session with trust_env off behaves the same. (Kubernetes credentials come from the
    kubeconfig or the ServiceAccount, never from netrc.)
    """
    rest = api.rest_client
    if rest.proxy is not None:
        return
    try:
        aiohttp_helpers.get_env_proxy_for_url(yarl.URL(api.configuration.host))
    except LookupError:
        pass  # no proxy for the apiserver: the usual case, in a pod and locally
    else:
        return
    trusting: aiohttp.ClientSession = rest.pool_manager
    # The same connector (pool size, TLS context); read_bufsize as kubernetes_asyncio sets it.
    rest.pool_manager = aiohttp.ClientSession(
        connector=trusting.connector, trust_env=False, read_bufsize=2**21
    )
    trusting.detach()  # closed without closing the connector the new session now owns


# -- errors ------------------------------------------------------------------------------
@contextlib.contextmanager
def calling(what: str) -> Iterator[None]:
    """Turn every failure of one apiserver call about `what` into a KubeError, raised from
    the client's own exception (an answer: by its status; none, or a timeout: Unavailable)."""
    try:
        yield
    except ApiException as exc:
        raise kubeerrors.from_api_exception(exc, what) from exc
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise kubeerrors.Unavailable(
            f"the Kubernetes API did not answer ({type(exc).__name__})", what=what
        ) from exc


# Replies read raw (`_preload_content=False`): the generated client would build models (or
# parse a whole object nobody reads), then the caller would turn them back into dicts; JSON
# as sent is what callers read (camelCase, as in a manifest), for a fraction of the CPU.
# Such a reply is never raised by the client: check() raises what it would have.
async def check(reply: Any) -> None:
    """Raise ApiException (with the server's message) unless the raw `reply` is a success."""
    if not 200 <= reply.status < 300:
        failure = ApiException(status=reply.status, reason=reply.reason)
        failure.body = await reply.text()
        raise failure


async def json_of(reply: Any) -> dict[str, Any]:
    """The JSON body of a successful raw reply (see check), released once read."""
    try:
        await check(reply)
        body: dict[str, Any] = json.loads(await reply.read())
        return body
    finally:
        reply.release()


# -- LongTasks and WorkerPools -----------------------------------------------------------
class Kube:
    """The LongTask and WorkerPool calls, each given `timeout` seconds at most (a hung
    connection must not wedge a caller)."""

    def __init__(self, api: client.ApiClient, *, timeout: float) -> None:
        self.api = api
        self.timeout = timeout
        self.custom = client.CustomObjectsApi(api)

    async def close(self) -> None:
        await self.api.close()

    async def get(self, *, namespace: str, name: str) -> dict[str, Any]:
        """The LongTask; NotFound if there is none."""
        with calling(f"task {namespace}/{name}"):
            obj: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, name, _request_timeout=self.timeout
            )
        return obj

    async def create(self, *, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create the LongTask `body`; NotFound if the namespace does not exist."""
        with calling(f"namespace {namespace!r}"):
            obj: dict[str, Any] = await self.custom.create_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, body, _request_timeout=self.timeout
            )
        return obj

    async def longtask_page(
        self,
        *,
        namespace: str | None,
        limit: int,
        continue_token: str | None = None,
        field_selector: str | None = None,
        label_selector: str | None = None,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        """One page of LongTasks in `namespace` (None: all). Expired if `continue_token` is too
        old; Unselectable if the CRD does not offer the field selector's fields."""
        kwargs: dict[str, Any] = {"limit": limit, "_request_timeout": request_timeout or self.timeout}
        if continue_token:
            kwargs["_continue"] = continue_token
        if field_selector:
            kwargs["field_selector"] = field_selector
        if label_selector:
            kwargs["label_selector"] = label_selector
        try:
            with calling(f"tasks in {namespace!r}" if namespace else "tasks"):
                page: dict[str, Any] = await self._longtask_lister(namespace)(**kwargs)
        except kubeerrors.Invalid as exc:
            if exc.status != 400 or not field_selector:
                raise
            raise kubeerrors.Unselectable(
                exc.message, status=exc.status, what=exc.what, causes=exc.causes
            ) from exc.__cause__
        return page

    async def longtask_pages(
        self, *, namespace: str | None, field_selector: str | None = None
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        """Every LongTask in `namespace` (None: all) that `field_selector` selects, a page at
        a time, each page with the list's resourceVersion (the same for every page: one
        snapshot). A page of PAGE objects may take longer than one object: 4 timeouts each."""
        more: str | None = None
        while True:
            reply = await self.longtask_page(
                namespace=namespace,
                limit=PAGE,
                continue_token=more,
                field_selector=field_selector,
                request_timeout=self.timeout * 4,
            )
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
        what = f"the watch of tasks in {namespace!r}" if namespace else "the watch of tasks"
        async for event in watch_events(
            self._longtask_lister(namespace), resource_version=resource_version, what=what
        ):
            yield event

    def _longtask_lister(self, namespace: str | None) -> Any:
        """The list call for LongTasks in `namespace` (None: all), its positional args bound."""
        if namespace:
            return functools.partial(
                self.custom.list_namespaced_custom_object, names.GROUP, names.VERSION, namespace, names.PLURAL
            )
        return functools.partial(
            self.custom.list_cluster_custom_object, names.GROUP, names.VERSION, names.PLURAL
        )

    async def patch(self, *, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the LongTask (spec fields, annotations); the patched object.
        A `metadata.resourceVersion` in `body` makes it conditional (Conflict if changed)."""
        with calling(f"task {namespace}/{name}"):
            obj: dict[str, Any] = await self._merge_patch(
                self.custom.patch_namespaced_custom_object, names.PLURAL, namespace, name, body
            )
        return obj

    def _merge_patch(
        self, call: Any, plural: str, namespace: str, name: str, body: dict[str, Any], **raw: bool
    ) -> Any:
        """`call` (a patch of a longtask.io object or its status), as a JSON merge patch."""
        return call(
            names.GROUP,
            names.VERSION,
            namespace,
            plural,
            name,
            body,
            _content_type=MERGE_PATCH,
            _request_timeout=self.timeout,
            **raw,
        )

    async def patch_status(self, *, namespace: str, name: str, uid: str, status: dict[str, Any]) -> None:
        """Merge-patch the status subresource, guarded by uid so a recreated namesake is safe:
        NotFound if the LongTask is deleted, or replaced by a new object with the same name
        (the apiserver's 409 on the uid precondition: the object meant is gone all the same).

        The reply (the whole object) is not read into Python: nothing here needs it, and
        parsing it was a good part of the operator's CPU per task in a burst."""
        body = {"metadata": {"uid": uid}, "status": status}
        with calling(f"task {namespace}/{name}"):
            reply = await self._merge_patch(
                self.custom.patch_namespaced_custom_object_status,
                names.PLURAL,
                namespace,
                name,
                body,
                _preload_content=False,
            )
            try:
                if reply.status in (404, 409):
                    raise kubeerrors.NotFound(
                        "deleted, or replaced by a new object",
                        status=reply.status,
                        what=f"task {namespace}/{name}",
                    )
                await check(reply)
            finally:
                reply.release()

    async def delete(self, *, namespace: str, name: str, uid: str) -> None:
        """Delete the LongTask, only if it is still the object with this uid: NotFound if it is
        gone, or replaced by a new object with the same name (409 on the uid precondition)."""
        body = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=uid), propagation_policy="Background"
        )
        try:
            with calling(f"task {namespace}/{name}"):
                await self.custom.delete_namespaced_custom_object(
                    names.GROUP,
                    names.VERSION,
                    namespace,
                    names.PLURAL,
                    name,
                    body=body,
                    _request_timeout=self.timeout,
                )
        except kubeerrors.Conflict as exc:
            raise kubeerrors.NotFound(exc.message, status=exc.status, what=exc.what) from exc.__cause__

    # -- LongTaskSchedules (their runs are LongTasks: create, patch and delete above) ----
    async def get_schedule(self, *, namespace: str, name: str) -> dict[str, Any]:
        """The LongTaskSchedule; NotFound if there is none."""
        with calling(f"schedule {namespace}/{name}"):
            obj: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                names.GROUP,
                names.VERSION,
                namespace,
                names.SCHEDULE_PLURAL,
                name,
                _request_timeout=self.timeout,
            )
        return obj

    async def schedules(self, *, namespace: str | None) -> list[dict[str, Any]]:
        """Every LongTaskSchedule in `namespace` (None: all)."""
        with calling(f"schedules in {namespace!r}" if namespace else "schedules"):
            if namespace:
                reply = await self.custom.list_namespaced_custom_object(
                    names.GROUP,
                    names.VERSION,
                    namespace,
                    names.SCHEDULE_PLURAL,
                    _request_timeout=self.timeout,
                )
            else:
                reply = await self.custom.list_cluster_custom_object(
                    names.GROUP, names.VERSION, names.SCHEDULE_PLURAL, _request_timeout=self.timeout
                )
        items: list[dict[str, Any]] = reply["items"]
        return items

    async def patch_schedule(self, *, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the LongTaskSchedule (spec.suspend, say); the patched object."""
        with calling(f"schedule {namespace}/{name}"):
            obj: dict[str, Any] = await self._merge_patch(
                self.custom.patch_namespaced_custom_object, names.SCHEDULE_PLURAL, namespace, name, body
            )
        return obj

    async def patch_schedule_status(self, *, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch the LongTaskSchedule's status subresource."""
        with calling(f"schedule {namespace}/{name}"):
            await self._merge_patch(
                self.custom.patch_namespaced_custom_object_status,
                names.SCHEDULE_PLURAL,
                namespace,
                name,
                {"status": status},
            )

    async def workerpools(self, *, namespace: str) -> list[dict[str, Any]]:
        """The WorkerPools in `namespace`."""
        with calling(f"workerpools in {namespace!r}"):
            page: dict[str, Any] = await self.custom.list_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.POOL_PLURAL, _request_timeout=self.timeout
            )
        items: list[dict[str, Any]] = page.get("items", [])
        return items

    async def patch_pool_status(self, *, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch the WorkerPool's status; NotFound if it is gone."""
        with calling(f"workerpool {namespace}/{name}"):
            await self._merge_patch(
                self.custom.patch_namespaced_custom_object_status,
                names.POOL_PLURAL,
                namespace,
                name,
                {"status": status},
            )

    async def patch_pool_conditions(
        self, *, namespace: str, name: str, resource_version: str, conditions: list[dict[str, Any]]
    ) -> None:
        """Set the WorkerPool's status.conditions, only if it is still at `resource_version`
        (Conflict otherwise): a merge patch replaces the whole list, so the caller merges
        the conditions it read at that version and a concurrent writer is never undone."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": {"conditions": conditions}}
        with calling(f"workerpool {namespace}/{name}"):
            await self._merge_patch(
                self.custom.patch_namespaced_custom_object_status, names.POOL_PLURAL, namespace, name, body
            )

    # -- every WorkerPool and Namespace (pool access: longtask_runtime.poolwatch) ----------
    async def cluster_list(self, kind: str) -> tuple[list[dict[str, Any]], str]:
        """Every object of `kind` ("workerpools" or "namespaces") in the cluster, and the
        list's resourceVersion; a page at a time, as one snapshot."""
        items: list[dict[str, Any]] = []
        more: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": PAGE, "_request_timeout": self.timeout * 4}
            if more:
                kwargs["_continue"] = more
            with calling(kind):
                reply = await self._cluster_lister(kind)(_preload_content=False, **kwargs)
                page = await json_of(reply)
            items += page.get("items") or []
            more = page["metadata"].get("continue")
            if not more:
                return items, str(page["metadata"]["resourceVersion"])

    async def cluster_events(
        self, kind: str, *, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Watch events (type, object) of `kind` after `resource_version`, bookmarks included,
        until the server ends the watch after WATCH_SECONDS. Expired if the version is too old."""
        async for event in watch_events(
            self._cluster_lister(kind), resource_version=resource_version, what=f"the watch of {kind}"
        ):
            yield event

    def _cluster_lister(self, kind: str) -> Any:
        if kind == "namespaces":
            return client.CoreV1Api(self.api).list_namespace
        if kind == names.POOL_PLURAL:
            return functools.partial(
                self.custom.list_cluster_custom_object, names.GROUP, names.VERSION, names.POOL_PLURAL
            )
        raise ValueError(f"no cluster-wide listing of {kind!r}")


async def watch_events(
    lister: Any, *, resource_version: str, what: str, **selectors: str
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Watch events (type, object as a plain dict) of what `lister` (a client list call, its
    positional arguments bound) lists with `selectors`, after `resource_version`, bookmarks
    included (their object carries only the resourceVersion), until the server ends the
    watch after WATCH_SECONDS. Raises Expired if the version is too old (list again); errors
    name `what`."""
    # return_type "object": the events stay dicts (no model built per event).
    stream = watch.Watch(return_type="object").stream(
        lister,
        resource_version=resource_version,
        allow_watch_bookmarks=True,
        timeout_seconds=WATCH_SECONDS,
        _request_timeout=WATCH_SECONDS + 30,
        **selectors,
    )
    with calling(what):
        async with stream:
            async for event in stream:
                yield event["type"], event["raw_object"]
