"""Schemathesis hooks for test_openapi_contract.py (loaded with SCHEMATHESIS_HOOKS).

Two rules of the gateway cannot be written in JSON Schema, and only their own 422 answers
are let through the positive-data check (schema-valid input accepted):
- spec.retry.backoffSeconds must not exceed maxBackoffSeconds (the CRD's CEL rule; the
  field's description says it): JSON Schema cannot compare two fields. Answered 422
  naming spec.retry.
- a list's `continue` must be a token the apiserver handed out (the parameter's
  description says so): any other string is schema-valid, as an opaque token is.
  Answered 422 saying the continue token is invalid.
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


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but the 422 of one of the two rules above."""
    if "positive_data_acceptance" not in failure.checks or response.status_code != 422:
        return True
    by_the_rules = (_bounds_reversed(case.body) and _names_retry(response)) or _continue_refused(
        case, response
    )
    return not by_the_rules
