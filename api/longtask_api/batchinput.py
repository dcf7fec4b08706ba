"""The checks of a create's batch input that its model cannot make alone; pure, no I/O here.

schemas.TaskCreate checks each item (an object, its keys, its bytes); the item count's limit
is a setting, spec.itemsFrom is the gateway's own, and parallelism and maxFailedItems need
items in the body or in the spec: all checked here, before the create route writes anything
(an upload, the LongTask).
"""

from __future__ import annotations

from longtask_api import errors, schemas


def check(body: schemas.TaskCreate, *, max_items: int) -> list[str] | None:
    """The body's items as compact JSON (None: not a batch through `items`); Invalid (422)
    naming the field when there are too many, the caller set spec.itemsFrom, or gave
    parallelism or maxFailedItems without items."""
    if body.spec.items_from is not None:
        raise errors.Invalid(
            "spec.itemsFrom names items the gateway stored; send the items in `items`",
            [errors.FieldError(field="spec.itemsFrom", message="set by the gateway, not by the caller")],
        )
    if body.items is None and not body.spec.is_batch:
        for field, value in (
            ("parallelism", body.spec.parallelism),
            ("maxFailedItems", body.spec.max_failed_items),
        ):
            if value is not None:
                raise errors.Invalid(
                    "the request is invalid",
                    [errors.FieldError(field=f"spec.{field}", message="applies to batches only (items)")],
                )
    if body.items is None:
        return None
    if len(body.items) > max_items:
        raise errors.Invalid(
            "too many items",
            [
                errors.FieldError(
                    field="items",
                    message=f"{len(body.items)} items; the limit is {max_items} (LONGTASK_MAX_BATCH_ITEMS)",
                )
            ],
        )
    return body.encoded_items()
