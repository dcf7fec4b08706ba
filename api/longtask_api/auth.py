"""Who may use the gateway: Kubernetes decides (TokenReview, then SubjectAccessReview), cached briefly.

It must never log, keep or echo a token: the authentication caches are keyed by the token's
SHA-256 digest. It shapes no HTTP answer; it raises ApiErrors (401, 403, 429), and kubeerrors
when Kubernetes cannot tell (errors.from_kube: 503).

Tokens Kubernetes accepted and tokens it rejected are cached apart, so a flood of bad
tokens can only evict other bad tokens. A token in neither cache costs a TokenReview: at
most `reviews_at_once` run at once (the rest wait), one review serves every request that
waits for the same token, and each client address may cause at most a token bucket's
worth of them (`review_rate` per second, `review_burst` at once); beyond it, 429.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
from collections.abc import Iterable

from longtask_api import access, errors, kube, ratelimit, ttlcache

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

    def __init__(
        self,
        *,
        reviews: kube.Reviews | None,
        ttl: float,
        size: int,
        review_rate: float = 0.0,
        review_burst: int = 1,
        reviews_at_once: int = 8,
    ) -> None:
        self.reviews = reviews
        self._identities: ttlcache.TtlCache[access.Identity] = ttlcache.TtlCache(ttl=ttl, size=size)
        # Rejected tokens apart: they can never push an accepted one out.
        self._rejected: ttlcache.TtlCache[bool] = ttlcache.TtlCache(ttl=ttl, size=size)
        self._decisions: ttlcache.TtlCache[tuple[bool, str]] = ttlcache.TtlCache(ttl=ttl, size=size)
        self._review_buckets = ratelimit.Buckets(rate=review_rate, burst=review_burst)
        self._reviewing = asyncio.Semaphore(max(1, reviews_at_once))
        self._pending: dict[str, asyncio.Future[access.Identity | None]] = {}

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
        if not cached and not self._rejected.get(digest)[0]:
            identity = await self._review(token, digest=digest, client=client)
        if identity is None:
            raise errors.Unauthenticated("the bearer token is not valid (Kubernetes TokenReview rejected it)")
        return Caller(identity=identity, rate_key=f"user:{identity.username}")

    async def _review(self, token: str, *, digest: str, client: str) -> access.Identity | None:
        """One TokenReview per token however many requests wait for it, within the client's budget."""
        pending = self._pending.get(digest)
        if pending is None:
            wait = self._review_buckets.take(f"ip:{client}")
            if wait > 0:
                raise errors.TooManyRequests(
                    "too many unknown tokens from this address; slow down",
                    retry_after=ratelimit.retry_after(wait),
                )
            pending = asyncio.ensure_future(self._reviewed(token, digest=digest))
            self._pending[digest] = pending
            pending.add_done_callback(lambda done: self._settled(digest, done))
        # Shielded: a caller that goes away does not cancel the review the others wait for.
        return await asyncio.shield(pending)

    async def _reviewed(self, token: str, *, digest: str) -> access.Identity | None:
        assert self.reviews is not None
        async with self._reviewing:
            identity = await self.reviews.who(token)
        if identity is None:
            self._rejected.put(digest, True)
            log.info("a token Kubernetes does not accept (sha256 %s...)", digest[:12])
        else:
            self._identities.put(digest, identity)
        return identity

    def _settled(self, digest: str, done: asyncio.Future[access.Identity | None]) -> None:
        if self._pending.get(digest) is done:
            del self._pending[digest]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have gone away

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
