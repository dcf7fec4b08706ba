"""The Idempotency-Key of task creation (IETF httpapi draft "The Idempotency-Key HTTP Header
Field"): one LongTask per key, however often and however concurrently a create is retried.

The apiserver decides, not a lock of ours. A keyed create names its LongTask after the key
(the caller's `name` when given, else the generated name's prefix and the key's digest) and
marks it with the digest and the body's fingerprint (annotations). Two racing creates of a
key meet in the apiserver's one-object-per-name: one creates it, the other gets
AlreadyExists, reads the object and answers it as its own. There is no "in progress" state
that a gateway killed mid-request could leave behind: a retry after any crash finds the
object, or creates it if the crash came before the create.

A Redis record (names.idempotency: fingerprint, namespace, name, uid), written once the
object exists and kept `idempotency_seconds`, lets the same answer outlive the object, so a
retry that comes after the task finished and was deleted (its TTL) does not run it again.

A key is scoped by caller (the authenticated username; with auth off everyone is
system:anonymous, so the namespace alone scopes it) and namespace: the digest hashes all
three, and neither raw keys nor usernames reach Redis or the object.

Its I/O: a Redis GET (and a SET after a create), and the LongTask create and get of
runtime.kube. It shapes no
answer: it raises errors.ApiError (400 bad key, 409 in progress, 422 key reused with
another body) and lets kubeerrors through (errors.from_kube).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import Header, Request
from pydantic import BaseModel

from longtask_api import auth, errors, schemas
from longtask_contracts import names
from longtask_runtime import kube, kubeerrors

HEADER = "Idempotency-Key"
MAX_LENGTH = 255
_CHARS = rf"[A-Za-z0-9._~:+/=-]{{1,{MAX_LENGTH}}}"
# The draft's form is a Structured Field string ("..."); the bare form is taken too, as most
# clients send it. The same expression is the OpenAPI pattern, so the two cannot disagree.
PATTERN = rf'^(?:{_CHARS}|"{_CHARS}")$'
_KEY = re.compile(PATTERN)
# Hex digits of the key's digest in a derived name: 64 bits, no collision in any namespace.
NAME_DIGITS = 16
# A retry may come back this soon when the key's object vanished under a concurrent request.
RETRY_SECONDS = 1


def parse(values: list[str]) -> str | None:
    """The key of a request's Idempotency-Key header fields (None: no header); BadRequest when
    it is empty, too long, has characters outside the published set, or comes twice."""
    if not values:
        return None
    if len(values) > 1:
        raise errors.BadRequest(f"send one {HEADER} header, not {len(values)}")
    value = values[0].strip()
    if not _KEY.match(value):
        raise errors.BadRequest(
            f"the {HEADER} must be 1 to {MAX_LENGTH} letters, digits or -_.:~+/= "
            "characters, optionally in double quotes (e.g. a UUID)"
        )
    return value.strip('"')


async def header(
    request: Request,
    _value: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description="Makes the create safe to retry (IETF httpapi Idempotency-Key draft): the same "
            "key with the same body answers the task the first request created, for "
            "LONGTASK_IDEMPOTENCY_SECONDS (24 h) and as long as that task exists; with another body "
            "422. Scoped to the caller and the namespace. A UUID is a good key.",
            json_schema_extra={"pattern": PATTERN},
        ),
    ] = None,
) -> str | None:
    """The dependency: the request's key, or None. `_value` only documents the header: the
    fields are read from `request` so that a second one is refused, with a 400 not a 422."""
    return parse(request.headers.getlist(HEADER))


class Claim(BaseModel, frozen=True):
    """One keyed create: its namespace, the key's scoped digest and the body's fingerprint."""

    namespace: str
    digest: str
    fingerprint: str


class Record(BaseModel):
    """What Redis keeps of a key: the body's fingerprint and the task it created."""

    fingerprint: str
    namespace: str
    name: str
    uid: str


def claim(*, key: str, caller: auth.Caller, namespace: str, body: schemas.TaskCreate) -> Claim:
    """The claim of `key` sent by `caller` in `namespace` with `body` (pure).

    The fingerprint is that of the body as the gateway read it (canonical JSON with defaults
    filled in), so spacing, key order or spelling out a default does not make it another body.
    """
    scope = json.dumps(["v1", caller.identity.username, namespace, key])
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return Claim(
        namespace=namespace,
        digest=hashlib.sha256(scope.encode()).hexdigest(),
        fingerprint=hashlib.sha256(canonical.encode()).hexdigest(),
    )


def mark(resource: dict[str, Any], claim: Claim) -> None:
    """Name `resource` (TaskCreate.to_resource) after the claim unless it has a name, and
    annotate it with the claim, so a retry's create meets this one's object."""
    meta = resource["metadata"]
    if "name" not in meta:
        meta["name"] = meta.pop("generateName") + claim.digest[:NAME_DIGITS]
    meta.setdefault("annotations", {}).update(
        {names.IDEMPOTENCY_ANNOTATION: claim.digest, names.FINGERPRINT_ANNOTATION: claim.fingerprint}
    )


def _reused() -> errors.ApiError:
    return errors.Invalid(
        f"this {HEADER} was already used with another request body; "
        "send a new key for a new task (the draft's key reused with a different payload)"
    )


async def recall(redis: aioredis.Redis, claim: Claim) -> Record | None:
    """The record of an earlier create with the claim's key, None if there is none (any more);
    Invalid (422) when that create had another body."""
    raw = await redis.get(names.idempotency(claim.digest))
    if raw is None:
        return None
    record = Record.model_validate_json(raw)
    if record.fingerprint != claim.fingerprint:
        raise _reused()
    return record


async def create(
    *,
    tasks: kube.Kube,
    redis: aioredis.Redis,
    claim: Claim,
    resource: dict[str, Any],
    keep_seconds: int,
) -> tuple[Record, dict[str, Any] | None]:
    """Create the LongTask `resource` (TaskCreate.to_resource) once per key: (the key's record,
    the object if this call created it, None if an earlier or concurrent request did).

    The record is stored before the answer: a request that returned a task has left its
    record for `keep_seconds`. A create the apiserver refuses (404, 409 name taken by another
    object, 422...) changed nothing and leaves nothing: a retry of the key is tried afresh.
    """
    if (earlier := await recall(redis, claim)) is not None:
        return earlier, None
    namespace = claim.namespace
    mark(resource, claim)
    name = resource["metadata"]["name"]
    created: dict[str, Any] | None
    try:
        created = obj = await tasks.create(namespace=namespace, body=resource)
    except kubeerrors.AlreadyExists:
        created = None
        try:
            obj = await tasks.get(namespace=namespace, name=name)
        except kubeerrors.NotFound:
            # Gone between its create and this get (deleted at once): if a concurrent request
            # with this key made it, that one is storing its record, which the retry reads; if
            # it was another's, the retry creates.
            raise errors.Conflict(
                f"a request with this {HEADER} is being processed; retry",
                headers={"Retry-After": str(RETRY_SECONDS)},
            ) from None
        annotations = obj["metadata"].get("annotations") or {}
        if annotations.get(names.IDEMPOTENCY_ANNOTATION) != claim.digest:
            raise  # the name is another object's: 409, as without a key
        if annotations.get(names.FINGERPRINT_ANNOTATION) != claim.fingerprint:
            raise _reused() from None
    meta = obj["metadata"]
    record = Record(fingerprint=claim.fingerprint, namespace=namespace, name=meta["name"], uid=meta["uid"])
    # NX: the first record stays (a concurrent request that lost the create writes the same one).
    await redis.set(names.idempotency(claim.digest), record.model_dump_json(), nx=True, ex=keep_seconds)
    return record, created
