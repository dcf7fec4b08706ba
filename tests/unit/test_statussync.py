"""When the status sync may skip reading a new task's status from the apiserver (pure).

Covers: a task no worker started needs no GET; nor one whose page holds its latest start
and, if it ended, its end; a Queued sent again after its attempt ran, a start or an end
not yet in the page, and a later attempt's start missing all need the GET.
"""

from __future__ import annotations

import pytest

from longtask_contracts import events
from longtask_operator import statussync

K = events.Kind


def ev(kind: events.Kind, attempt: int) -> events.TaskEvent:
    return events.TaskEvent(kind=kind, namespace="ns", name="t", uid="u", attempt=attempt)


Q1, S1, OK1 = ev(K.QUEUED, 1), ev(K.STARTED, 1), ev(K.SUCCEEDED, 1)
R1, Q2, S2 = ev(K.RETRYING, 1), ev(K.QUEUED, 2), ev(K.STARTED, 2)


@pytest.mark.parametrize(
    ("seen", "started", "done", "whole"),
    [
        ([Q1], 0, False, True),  # never started
        ([Q1, S1], 1, False, True),
        ([Q1, S1, OK1], 1, True, True),
        ([Q1, S1, R1, Q2, S2], 2, False, True),
        ([Q1], 1, False, False),  # a Queued sent again, or its start not yet read
        ([Q1, S1], 1, True, False),  # its end not yet read
        ([Q1, S1, R1, Q2], 2, False, False),  # the latest attempt's start not yet read
        ([Q1, ev(K.CANCELLED, 0)], 0, True, True),  # cancelled before it started
    ],
)
def test_whole_history(seen, started, done, whole):
    assert statussync._whole_history(seen, started=started, done=done) is whole
