"""Who may use the gateway: Kubernetes decides (TokenReview, then SubjectAccessReview), cached briefly.

It must never log, keep or echo a token: the authentication cache is keyed by the token's
SHA-256 digest. It shapes no HTTP answer; it raises ApiErrors (401, 403), and kubeerrors
when Kubernetes cannot tell (errors.from_kube: 503).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
from collections.abc import Iterable

from longtask_api import access, errors, kube, ttlcache

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Caller:
    """An authenticated caller (or, with auth off, anyone) and the key of its rate limit."""

    identity: access.Identity
    rate_key: str


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


# A WebSocket client that cannot set headers (a browser) offers its token as a subprotocol,
# the way kube-apiserver accepts it: base64url.bearer.authorization.k8s.io.<base64url(token)>.
WS_TOKEN_PREFIX = "base64url.bearer.authorization.k8s.io."


def subprotocol_token(subprotocols: list[str]) -> str | None:
    """The token offered as a WebSocket subprotocol, else None (never echoed back)."""
    for proto in subprotocols:
        if proto.startswith(WS_TOKEN_PREFIX):
            encoded = proto[len(WS_TOKEN_PREFIX) :]
            try:
                return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode() or None
            except (ValueError, UnicodeDecodeError):
                return None
    return None


class Guard:
    """Authenticates and authorizes callers; with `reviews` None (auth off) everyone may do anything."""

    def __init__(self, *, reviews: kube.Reviews | None, ttl: float, size: int) -> None:
        self.reviews = reviews
        self._identities: ttlcache.TtlCache[access.Identity | None] = ttlcache.TtlCache(ttl=ttl, size=size)
        self._decisions: ttlcache.TtlCache[tuple[bool, str]] = ttlcache.TtlCache(ttl=ttl, size=size)

    @property
    def enabled(self) -> bool:
        return self.reviews is not None

    async def authenticate(self, authorization: str | None, *, client: str) -> Caller:
        """The caller behind an Authorization header; Unauthenticated when there is none valid."""
        if self.reviews is None:
            return Caller(identity=access.ANONYMOUS, rate_key=f"ip:{client}")
        token = bearer_token(authorization)
        if token is None:
            raise errors.Unauthenticated("a bearer token is required (Authorization: Bearer <token>)")
        digest = hashlib.sha256(token.encode()).hexdigest()
        cached, identity = self._identities.get(digest)
        if not cached:
            identity = await self.reviews.who(token)
            self._identities.put(digest, identity)  # rejections too: a flood of bad tokens is cheap
            if identity is None:
                log.info("a token Kubernetes does not accept (sha256 %s...)", digest[:12])
        if identity is None:
            raise errors.Unauthenticated("the bearer token is not valid (Kubernetes TokenReview rejected it)")
        return Caller(identity=identity, rate_key=f"user:{identity.username}")

    async def allows(self, caller: Caller, *, namespace: str, action: access.Action) -> bool:
        """Whether Kubernetes allows `caller` the action in `namespace` ("": in every namespace)."""
        return (await self._decide(caller, namespace=namespace, action=action))[0]

    async def require(self, caller: Caller, *, namespace: str, action: access.Action) -> None:
        """Return if allowed; otherwise Forbidden, saying who may not do what where, and why."""
        allowed, reason = await self._decide(caller, namespace=namespace, action=action)
        if not allowed:
            detail = (
                f"{caller.identity.username} may not {action.verb} {action.resource} "
                f"in namespace {namespace!r}"
            )
            raise errors.Forbidden(f"{detail}: {reason}" if reason else detail)

    async def allowed_namespaces(
        self, caller: Caller, namespaces: Iterable[str], *, action: access.Action
    ) -> set[str]:
        """Those of `namespaces` where `caller` may do `action` (all of them with a cluster-wide grant)."""
        wanted = set(namespaces)
        if not wanted or await self.allows(caller, namespace="", action=action):
            return wanted
        return {ns for ns in wanted if await self.allows(caller, namespace=ns, action=action)}

    async def _decide(self, caller: Caller, *, namespace: str, action: access.Action) -> tuple[bool, str]:
        if self.reviews is None:
            return True, ""
        key = (caller.identity, namespace, action)
        cached, decision = self._decisions.get(key)
        if not cached or decision is None:
            decision = await self.reviews.may(caller.identity, namespace=namespace, action=action)
            self._decisions.put(key, decision)
        return decision
