"""The Idempotency-Key's form, scope and marks (api/longtask_api/idempotency.py, its pure part).

Covers: the keys taken (bare or as a Structured Field string, 1 to 255 characters of the
published set) and the ones refused with a 400 (empty, too long, other characters, an
unclosed quote, two header fields), and the OpenAPI pattern agrees with the check; a key
is scoped by caller and namespace (another caller or namespace: another digest), and a
body's fingerprint ignores spelling (key order, a default spelled out) but not content; a
keyed create without a name gets a name derived from the key, one with a name keeps it,
and both carry the digest and fingerprint annotations.
"""

from __future__ import annotations

import re

import pytest

from longtask_api import access, auth, errors, idempotency, schemas
from longtask_contracts import names

ALICE = auth.Caller(identity=access.Identity(username="alice"), rate_key="user:alice")
BOB = auth.Caller(identity=access.Identity(username="bob"), rate_key="user:bob")
BODY = schemas.TaskCreate.model_validate({"spec": {"task": "demo.sleep", "params": {"seconds": 1}}})


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ('"8e03978e-40d5-43e8-bc93-6894a57f9324"', "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ("a", "a"),
        ("k" * 255, "k" * 255),
        ("AZaz09._~:+/=-", "AZaz09._~:+/=-"),
    ],
)
def test_keys_taken(header, key):
    assert idempotency.parse([header]) == key
    assert re.match(idempotency.PATTERN, header)


@pytest.mark.parametrize("header", ["", " ", '""', "k" * 256, "two words", "k@y", '"unclosed', "é", "a,b"])
def test_keys_refused(header):
    with pytest.raises(errors.BadRequest) as refused:
        idempotency.parse([header])
    assert refused.value.status == 400 and "Idempotency-Key" in refused.value.detail
    assert not re.match(idempotency.PATTERN, header)


def test_one_header_field_only():
    assert idempotency.parse([]) is None
    with pytest.raises(errors.BadRequest):
        idempotency.parse(["a", "a"])


def test_a_key_is_scoped_by_caller_and_namespace():
    mine = idempotency.claim(key="k", caller=ALICE, namespace="a", body=BODY)
    assert idempotency.claim(key="k", caller=ALICE, namespace="a", body=BODY) == mine
    assert idempotency.claim(key="k", caller=BOB, namespace="a", body=BODY).digest != mine.digest
    assert idempotency.claim(key="k", caller=ALICE, namespace="b", body=BODY).digest != mine.digest
    assert idempotency.claim(key="k2", caller=ALICE, namespace="a", body=BODY).digest != mine.digest


def test_the_fingerprint_is_the_body_as_read():
    mine = idempotency.claim(key="k", caller=ALICE, namespace="a", body=BODY).fingerprint
    same = schemas.TaskCreate.model_validate_json(
        '{"spec": {"params": {"seconds": 1}, "priority": 0, "task": "demo.sleep"}, "labels": {}}'
    )
    other = schemas.TaskCreate.model_validate({"spec": {"task": "demo.sleep", "params": {"seconds": 2}}})
    assert idempotency.claim(key="k", caller=ALICE, namespace="a", body=same).fingerprint == mine
    assert idempotency.claim(key="k", caller=ALICE, namespace="a", body=other).fingerprint != mine


def test_marks_name_the_task_after_its_key_unless_it_has_a_name():
    claim = idempotency.claim(key="k", caller=ALICE, namespace="a", body=BODY)
    resource = BODY.to_resource()
    idempotency.mark(resource, claim)
    meta = resource["metadata"]
    assert "generateName" not in meta
    assert meta["name"] == f"demo-sleep-{claim.digest[: idempotency.NAME_DIGITS]}"
    assert meta["annotations"] == {
        names.IDEMPOTENCY_ANNOTATION: claim.digest,
        names.FINGERPRINT_ANNOTATION: claim.fingerprint,
    }
    named = schemas.TaskCreate.model_validate({"name": "mine", "spec": {"task": "demo.sleep"}}).to_resource()
    named["metadata"]["annotations"] = {"longtask.io/traceparent": "00-x"}
    idempotency.mark(named, claim)
    assert named["metadata"]["name"] == "mine"
    assert set(named["metadata"]["annotations"]) == {
        "longtask.io/traceparent",
        names.IDEMPOTENCY_ANNOTATION,
        names.FINGERPRINT_ANNOTATION,
    }
