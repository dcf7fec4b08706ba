"""The gateway's own Kubernetes calls (TokenReview, SubjectAccessReview, /version), on the
shared layer (longtask_runtime.kube, which also has the LongTask and WorkerPool calls).

Each call has the gateway's timeout and raises only kubeerrors; errors.from_kube turns
them into answers (an apiserver that is down, slow or refusing: 503, never 500). It must
not shape HTTP answers nor decide anything: auth.py does that from the plain data
returned here.
"""

from __future__ import annotations

from kubernetes_asyncio import client

from longtask_api import access
from longtask_contracts import names
from longtask_runtime import kube as runtimekube


class Reviews:
    """TokenReview and SubjectAccessReview: Kubernetes decides who calls and what they may do."""

    def __init__(self, api: client.ApiClient, *, timeout: float) -> None:
        self.authn = client.AuthenticationV1Api(api)
        self.authz = client.AuthorizationV1Api(api)
        self.timeout = timeout

    async def who(self, token: str) -> access.Identity | None:
        """The token's user, or None when the apiserver does not accept the token."""
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
        with runtimekube.calling("tokenreviews"):
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
        with runtimekube.calling("subjectaccessreviews"):
            review = await self.authz.create_subject_access_review(body, _request_timeout=self.timeout)
        status = review.status
        if status is None:
            return False, ""
        return bool(status.allowed), status.reason or status.evaluation_error or ""


async def ping(api: client.ApiClient, *, request_timeout: float) -> None:
    """Raise kubeerrors.Unavailable unless the apiserver answers GET /version (open to every client)."""
    with runtimekube.calling("/version"):
        await client.VersionApi(api).get_code(_request_timeout=request_timeout)
