"""Kubernetes failures, from the client's exception to the kubeerrors class to the gateway's answer.

Covers: every apiserver status becomes its kubeerrors class (404 NotFound, 409 Conflict or
AlreadyExists, 410 Expired, 400/422 Invalid with field causes, 401/403 Forbidden, 429 and
5xx Unavailable), raised `from` the client's exception; no answer (a connection error, a
timeout) is Unavailable without a status; only Conflict and Unavailable are retryable;
the gateway answers 404 "... not found", 409, 422 with the causes, 422 for an expired
continue token, and 503 for its own RBAC, for a failing apiserver and for no answer at
all, never 500.
"""

from __future__ import annotations

import json

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from longtask_api import errors
from longtask_runtime import kube, kubeerrors


def _answer(status: int, reason: str = "", **body: object) -> ApiException:
    exc = ApiException(status=status, reason="Reason")
    exc.body = json.dumps({"kind": "Status", "message": f"said {status}", "reason": reason, **body})
    return exc


CAUSES = {"causes": [{"field": "spec.task", "message": "Required value"}]}


@pytest.mark.parametrize(
    ("failure", "kind", "retryable"),
    [
        (_answer(404, "NotFound"), kubeerrors.NotFound, False),
        (_answer(409, "Conflict"), kubeerrors.Conflict, True),
        (_answer(409, "AlreadyExists"), kubeerrors.AlreadyExists, False),
        (_answer(410, "Expired"), kubeerrors.Expired, False),
        (_answer(422, "Invalid", details=CAUSES), kubeerrors.Invalid, False),
        (_answer(400, "BadRequest"), kubeerrors.Invalid, False),
        (_answer(403, "Forbidden"), kubeerrors.Forbidden, False),
        (_answer(401, "Unauthorized"), kubeerrors.Forbidden, False),
        (_answer(429, "TooManyRequests"), kubeerrors.Unavailable, True),
        (_answer(503, "ServiceUnavailable"), kubeerrors.Unavailable, True),
        (aiohttp.ClientConnectionError("refused"), kubeerrors.Unavailable, True),
        (TimeoutError(), kubeerrors.Unavailable, True),
    ],
)
def test_each_failure_becomes_its_class_raised_from_the_clients_exception(failure, kind, retryable):
    with pytest.raises(kubeerrors.KubeError) as raised, kube.calling("task ns/x"):
        raise failure
    assert type(raised.value) is kind
    assert raised.value.retryable is retryable
    assert raised.value.__cause__ is failure
    assert raised.value.what == "task ns/x"
    if isinstance(failure, ApiException):
        assert raised.value.status == failure.status and raised.value.message == f"said {failure.status}"
    else:
        assert raised.value.status is None


def _translated(failure: Exception) -> errors.ApiError:
    with pytest.raises(kubeerrors.KubeError) as raised, kube.calling("task ns/x"):
        raise failure
    return errors.from_kube(raised.value)


@pytest.mark.parametrize(
    ("failure", "status", "detail"),
    [
        (_answer(404, "NotFound"), 404, "task ns/x not found"),
        (_answer(409, "AlreadyExists"), 409, "said 409"),
        (_answer(409, "Conflict"), 409, "said 409"),
        (_answer(410, "Expired"), 422, "the continue token has expired; list again from the start"),
        (_answer(403, "Forbidden"), 503, "the gateway itself may not access task ns/x: said 403"),
        (_answer(500, "InternalError"), 503, "Kubernetes API answered 500: said 500"),
        (_answer(401, "Unauthorized"), 503, "Kubernetes API answered 401: said 401"),
        (
            aiohttp.ClientConnectionError("refused"),
            503,
            "the Kubernetes API did not answer (ClientConnectionError)",
        ),
        (TimeoutError(), 503, "the Kubernetes API did not answer (TimeoutError)"),
    ],
)
def test_the_gateway_answers_each_failure_never_500(failure, status, detail):
    answer = _translated(failure)
    assert (answer.status, answer.detail) == (status, detail)


def test_an_invalid_object_is_a_422_naming_the_fields():
    answer = _translated(_answer(422, "Invalid", details=CAUSES))
    assert answer.status == 422 and answer.detail == "said 422"
    assert [(e.field, e.message) for e in answer.errors] == [("spec.task", "Required value")]
