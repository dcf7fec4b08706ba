"""A batch's input at the gateway and its items' listing: the pure parts.

Covers: a create's items are checked one by one (an object, at most 64 keys, at most 16 KiB
of JSON) with errors naming the item; items and spec.items are exclusive and spec.itemsFrom
is the gateway's own; the count limit is a setting; items that fit the object's limits go
in spec.items, the rest are named by spec.itemsFrom; the create route alone gets the
larger body limit; `continue` tokens round-trip and anything else is refused; phases are
derived as docs/batches.md says.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from longtask_api import batchinput, errors, middleware, schemas
from longtask_contracts import batch, itempages, models


def _create(**body: object) -> schemas.TaskCreate:
    return schemas.TaskCreate.model_validate({"spec": {"task": "demo.noop"}, **body})


@pytest.mark.parametrize(
    ("items", "field", "message"),
    [
        ({"a": 1}, ("items",), "valid list"),
        ([], ("items",), "at least 1"),
        ([{}, 2], ("items", 1), "valid dictionary"),
        ([{f"k{i}": i for i in range(65)}], ("items", 0), "65 keys; the limit is 64"),
        ([{}, {"blob": "x" * models.ITEM_MAX_BYTES}], ("items", 1), "the limit is 16384"),
    ],
)
def test_bad_items_are_refused_naming_the_item(items, field, message):
    with pytest.raises(ValidationError) as caught:
        _create(items=items)
    (error,) = caught.value.errors()
    assert error["loc"] == field and message in error["msg"]


def test_items_come_once_and_items_from_is_the_gateways():
    with pytest.raises(ValidationError, match="not both"):
        _create(spec={"task": "demo.noop", "items": [{}]}, items=[{}])
    body = _create(spec={"task": "demo.noop", "itemsFrom": {"upload": "abcdefgh", "count": 1}})
    with pytest.raises(errors.Invalid) as caught:
        batchinput.check(body, max_items=10)
    assert caught.value.errors[0].field == "spec.itemsFrom"


def test_the_item_count_limit_is_a_setting():
    body = _create(items=[{"i": i} for i in range(11)])
    with pytest.raises(errors.Invalid) as caught:
        batchinput.check(body, max_items=10)
    assert caught.value.errors[0].field == "items" and "limit is 10" in caught.value.errors[0].message
    assert batchinput.check(body, max_items=11) == [f'{{"i":{i}}}' for i in range(11)]
    assert batchinput.check(_create(), max_items=1) is None


def test_items_go_in_the_object_when_they_fit():
    small = _create(items=[{"i": i} for i in range(models.INLINE_ITEMS_MAX)])
    assert schemas.fits_inline(small.encoded_items())
    assert small.to_resource()["spec"]["items"][-1] == {"i": models.INLINE_ITEMS_MAX - 1}
    models.LongTaskSpec.model_validate(small.to_resource()["spec"])  # the object's own limits hold

    many = _create(items=[{}] * (models.INLINE_ITEMS_MAX + 1))
    assert not schemas.fits_inline(many.encoded_items())
    heavy = _create(items=[{"blob": "x" * 10_000}] * 60)  # 600 KB > 512 KiB
    assert not schemas.fits_inline(heavy.encoded_items())
    spec = heavy.to_resource(items_from=models.ItemsFrom(upload="abcdefgh", count=60))["spec"]
    assert "items" not in spec and spec["itemsFrom"] == {"upload": "abcdefgh", "count": 60}


async def test_only_the_create_route_takes_the_larger_body():
    app = FastAPI()

    @app.post("/v1/namespaces/{namespace}/tasks")
    async def create(namespace: str) -> dict[str, str]:
        return {}

    @app.post("/v1/namespaces/{namespace}/tasks/{name}/cancel")
    async def cancel(namespace: str, name: str) -> dict[str, str]:
        return {}

    limited = middleware.BodyLimit(app, limit=10, create_limit=100)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=limited), base_url="http://gw") as client:
        assert (await client.post("/v1/namespaces/a/tasks", content=b"x" * 100)).status_code == 200
        too_big = await client.post("/v1/namespaces/a/tasks", content=b"x" * 101)
        assert too_big.status_code == 413 and "limit is 100 bytes" in too_big.json()["detail"]
        other = await client.post("/v1/namespaces/a/tasks/b/cancel", content=b"x" * 11)
        assert other.status_code == 413 and "limit is 10 bytes" in other.json()["detail"]


def test_continue_tokens_round_trip_and_others_are_refused():
    assert itempages.decode_token(None) == 0
    for index in (0, 7, 99_999):
        assert itempages.decode_token(itempages.encode_token(index)) == index
    for bad in ("garbage!", "aTE6eA", "MTIz", itempages.encode_token(5)[:-1] + "*"):
        with pytest.raises(itempages.BadToken):
            itempages.decode_token(bad)


def _snap(**kw: object) -> itempages.Snapshot:
    base: dict[str, object] = {
        "total": 10, "raw": {"next": "5", "stop": ""}, "held": frozenset({4}),
        "recorded": frozenset({0, 1, 2, 4}), "failed": frozenset({1}), "retry_due": {2: 50.0, 3: 10.0},
    }  # fmt: skip
    return itempages.Snapshot(**{**base, **kw})  # type: ignore[arg-type]


def test_phases_are_derived_from_the_snapshot():
    phases = [itempages.phase_of(i, _snap()) for i in range(7)]
    assert phases == ["Succeeded", "Failed", "Retrying", "Queued", "Running", "Queued", "Queued"]
    stopped = [itempages.phase_of(i, _snap(raw={"next": "5", "stop": "Cancelled"})) for i in range(7)]
    assert stopped == ["Succeeded", "Failed", "Cancelled", "Cancelled", "Running", "Cancelled", "Cancelled"]
    never = itempages.Snapshot(total=3, raw=None, held=frozenset(), recorded=frozenset(), failed=frozenset(),
                               retry_due={}, never_ran=True)  # fmt: skip
    assert {itempages.phase_of(i, never) for i in range(3)} == {batch.ItemPhase.CANCELLED}
    entry = itempages.entry(
        index=2, phase=batch.ItemPhase.RETRYING, record='{"index":2,"attempts":1}', due=50.0
    )
    assert entry == {"index": 2, "phase": "Retrying", "attempts": 1, "nextAttemptAt": batch.iso(50.0)}


def test_the_item_count_comes_from_the_object_as_it_is():
    assert itempages.item_count({"task": "x"}) is None
    assert itempages.item_count({"items": [{"blob": "x" * 20_000}] * 3}) == 3  # beyond the model's limits
    assert itempages.item_count({"itemsFrom": {"upload": "abcdefgh", "count": 7}}) == 7
