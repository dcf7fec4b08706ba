"""Every Kubernetes API call the gateway makes, each with a timeout, errors turned into ApiErrors.

It must not shape HTTP answers nor decide anything: routes and auth.py do that from the
plain data returned here. An apiserver that is down, slow or refusing answers 503, never 500.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import yarl
from aiohttp import helpers as aiohttp_helpers
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from longtask_api import access, errors
from longtask_contracts import names


async def connect() -> client.ApiClient:
    """In-cluster config when running in a pod, else $KUBECONFIG."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        await config.load_kube_config()
    api = client.ApiClient()
    _read_the_environment_once(api)
    return api


def _read_the_environment_once(api: client.ApiClient) -> None:
    """Give the client a session that does not look for proxies and ~/.netrc per request.

    kubernetes_asyncio's aiohttp session trusts the environment, so aiohttp runs two lookups
    (proxy variables, then netrc) in the event loop's default thread pool before every
    apiserver call: two thread hops on every create, queued behind whatever else that pool
    runs (the Celery sends of firstsend.py). When a proxy variable applies to the apiserver
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
        # The gateway's own ServiceAccount lacks a right: the chart's RBAC is not installed.
        return errors.Unavailable(f"the gateway itself may not access {what}: {message}")
    return errors.Unavailable(f"Kubernetes API answered {exc.status}: {message}")


@contextlib.contextmanager
def _calling(what: str) -> Iterator[None]:
    """Turn every failure of one apiserver call into an ApiError (timeouts included)."""
    try:
        yield
    except ApiException as exc:
        raise _translate(exc, what) from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise errors.Unavailable(f"the Kubernetes API did not answer ({type(exc).__name__})") from None


class LongTasks:
    """LongTask CRUD in one namespace-aware object."""

    def __init__(self, api: client.ApiClient, *, timeout: float) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.timeout = timeout

    async def create(self, *, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        with _calling(f"namespace {namespace!r}"):
            obj: dict[str, Any] = await self.custom.create_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, body, _request_timeout=self.timeout
            )
        return obj

    async def get(self, *, namespace: str, name: str) -> dict[str, Any]:
        with _calling(f"task {namespace}/{name}"):
            obj: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, name, _request_timeout=self.timeout
            )
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
        kwargs: dict[str, Any] = {"limit": limit, "_request_timeout": self.timeout}
        if continue_token:
            kwargs["_continue"] = continue_token
        if field_selector:
            kwargs["field_selector"] = field_selector
        if label_selector:
            kwargs["label_selector"] = label_selector
        with _calling(f"tasks in {namespace!r}"):
            try:
                obj: dict[str, Any] = await self.custom.list_namespaced_custom_object(
                    names.GROUP, names.VERSION, namespace, names.PLURAL, **kwargs
                )
            except ApiException as exc:
                if exc.status != 410:
                    raise
                raise errors.Invalid("the continue token has expired; list again from the start") from None
        return obj

    async def patch(self, *, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the LongTask (spec fields, annotations)."""
        with _calling(f"task {namespace}/{name}"):
            obj: dict[str, Any] = await self.custom.patch_namespaced_custom_object(
                names.GROUP,
                names.VERSION,
                namespace,
                names.PLURAL,
                name,
                body,
                _content_type="application/merge-patch+json",  # type: ignore[call-arg]
                _request_timeout=self.timeout,
            )
        return obj


class WorkerPools:
    """Reading WorkerPools (the gateway never writes them: the operator owns their status)."""

    def __init__(self, api: client.ApiClient, *, timeout: float) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.timeout = timeout

    async def list(self, *, namespace: str) -> list[dict[str, Any]]:
        with _calling(f"workerpools in {namespace!r}"):
            page: dict[str, Any] = await self.custom.list_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.POOL_PLURAL, _request_timeout=self.timeout
            )
        items: list[dict[str, Any]] = page.get("items", [])
        return items


class Reviews:
    """TokenReview and SubjectAccessReview: Kubernetes decides who calls and what they may do."""

    def __init__(self, api: client.ApiClient, *, timeout: float) -> None:
        self.authn = client.AuthenticationV1Api(api)
        self.authz = client.AuthorizationV1Api(api)
        self.timeout = timeout

    async def who(self, token: str) -> access.Identity | None:
        """The token's user, or None when the apiserver does not accept the token."""
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
        with _calling("tokenreviews"):
            review = await self.authn.create_token_review(body, _request_timeout=self.timeout)
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            return None
        user = status.user
        return access.Identity(
            username=user.username or "",
            uid=user.uid or "",
            groups=tuple(user.groups or ()),
            extra=tuple(sorted((k, tuple(v or ())) for k, v in (user.extra or {}).items())),
        )

    async def may(self, who: access.Identity, *, namespace: str, action: access.Action) -> tuple[bool, str]:
        """(allowed, the authorizer's reason) for `who` doing `action` in `namespace` ("" = all)."""
        attributes = client.V1ResourceAttributes(
            namespace=namespace,
            verb=action.verb,
            group=names.GROUP,
            resource=action.plural,
            subresource=action.subresource,
        )
        body = client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=who.username,
                uid=who.uid,
                groups=list(who.groups),
                extra=who.extra_dict(),
                resource_attributes=attributes,
            )
        )
        with _calling("subjectaccessreviews"):
            review = await self.authz.create_subject_access_review(body, _request_timeout=self.timeout)
        status = review.status
        if status is None:
            return False, ""
        return bool(status.allowed), status.reason or status.evaluation_error or ""


async def ping(api: client.ApiClient, *, request_timeout: float) -> None:
    """Raise Unavailable unless the apiserver answers GET /version (open to every client)."""
    with _calling("/version"):
        await client.VersionApi(api).get_code(_request_timeout=request_timeout)
