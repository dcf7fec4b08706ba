"""The contracts' models: defaults, limits and the resource form."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from longtask_contracts import events, models


def test_defaults_and_resource_form():
    spec = models.LongTaskSpec(task="docs.embed")
    body = spec.to_k8s()
    assert body["pool"] == "default" and body["timeoutSeconds"] == 3600
    assert body["retry"]["maxRetries"] == 3 and "ttlSecondsAfterFinished" not in body


def test_params_byte_limit():
    with pytest.raises(ValidationError, match="limit is 65536"):
        models.LongTaskSpec(task="x", params={"blob": "x" * models.PARAMS_MAX_BYTES})


def test_camel_case_names_are_accepted():
    spec = models.LongTaskSpec.model_validate({"task": "x", "timeoutSeconds": 5, "retry": {"maxRetries": 0}})
    assert spec.timeout_seconds == 5 and spec.retry.max_retries == 0


def test_event_round_trip():
    event = events.TaskEvent(
        kind=events.Kind.PROGRESS, namespace="n", name="t", uid="u", attempt=2, progress=12.5, message="m"
    )
    back = events.TaskEvent.decode({b"event": event.encode()["event"].encode()})
    assert back == event and back.phase.value == "Running" and not back.terminal
