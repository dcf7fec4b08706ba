"""Schemathesis hooks for test_openapi_contract.py (loaded with SCHEMATHESIS_HOOKS).

Four rules of the gateway cannot be written in JSON Schema, and only their own 422 answers
are let through the positive-data check (schema-valid input accepted):
- spec.retry.backoffSeconds must not exceed maxBackoffSeconds (the CRD's CEL rule; the
  field's description says it): JSON Schema cannot compare two fields. Answered 422
  naming spec.retry.
- a list's `continue` must be a token the apiserver handed out (the parameter's
  description says so): any other string is schema-valid, as an opaque token is.
  Answered 422 saying the continue token is invalid.
- a batch's items come in the body's `items` or in spec.items, not both (the field's
  description says so). Answered 422 naming items.
- spec.parallelism and spec.maxFailedItems need items, in either place (their descriptions
  say so). Answered 422 naming the field.
"""

from __future__ import annotations

from typing import Any

import schemathesis

# RetryPolicy's defaults (longtask_contracts.models), which apply to an omitted field.
_BACKOFF_DEFAULT = 2
_MAX_BACKOFF_DEFAULT = 600


def _bounds_reversed(body: Any) -> bool:
    spec = body.get("spec") if isinstance(body, dict) else None
    retry = spec.get("retry") if isinstance(spec, dict) else None
    if not isinstance(retry, dict):
        return False
    backoff = retry.get("backoffSeconds", _BACKOFF_DEFAULT)
    ceiling = retry.get("maxBackoffSeconds", _MAX_BACKOFF_DEFAULT)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (backoff, ceiling))
    return numbers and ceiling < backoff


def _names_retry(response: Any) -> bool:
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return False
    return any(str(e.get("field", "")).startswith("spec.retry") for e in errors)


def _continue_refused(case: Any, response: Any) -> bool:
    if not (case.query or {}).get("continue"):
        return False
    try:
        detail = str(response.json().get("detail", ""))
    except ValueError:
        return False
    return "continue" in detail


def _items(body: Any) -> tuple[bool, bool]:
    """Whether the body's `items` and its spec.items are lists."""
    spec = body.get("spec") if isinstance(body, dict) else None
    outer = isinstance(body, dict) and isinstance(body.get("items"), list)
    return outer, isinstance(spec, dict) and isinstance(spec.get("items"), list)


def _named(response: Any, fields: set[str]) -> bool:
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return False
    return bool(errors) and all(e.get("field") in fields for e in errors)


def _batch_rule(body: Any, response: Any) -> bool:
    outer, inner = _items(body)
    if outer and inner:
        return _named(response, {"items"})
    spec = body.get("spec") if isinstance(body, dict) else None
    batch_only = {
        f for f in ("parallelism", "maxFailedItems") if isinstance(spec, dict) and spec.get(f) is not None
    }
    return bool(batch_only) and not (outer or inner) and _named(response, {f"spec.{f}" for f in batch_only})


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but the 422 of one of the four rules above."""
    if "positive_data_acceptance" not in failure.checks or response.status_code != 422:
        return True
    by_the_rules = (
        (_bounds_reversed(case.body) and _names_retry(response))
        or _continue_refused(case, response)
        or _batch_rule(case.body, response)
    )
    return not by_the_rules
