"""Progress chatter does not hammer etcd, and SSE still carries every update.

Covers: a task reporting progress 100 times a second for 3 s gets at most about one
status write per second (counted on a watch of the object), while its SSE stream
carries all 300 progress events.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import time

import httpx
import pytest

from tests import helpers

pytestmark = pytest.mark.cluster


def test_status_writes_are_coalesced_to_about_one_per_second(platform, cluster, namespace):
    watch = subprocess.Popen(
        [
            *cluster.kubectl_argv(),
            "get",
            "lt",
            "-n",
            namespace,
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        with httpx.Client(base_url=platform.api_url) as client:
            began = time.monotonic()
            created = client.post(
                f"/v1/namespaces/{namespace}/tasks",
                json={
                    "name": "chatty",
                    "spec": {"task": "demo.sleep", "params": {"seconds": 3, "steps": 300}},
                },
            )
            assert created.status_code == 202, created.text
            events = list(helpers.sse_events(client, created.json()["links"]["events"]))
            helpers.poll(
                lambda: (
                    client.get(f"/v1/namespaces/{namespace}/tasks/chatty").json()["status"]["phase"]
                    == "Succeeded"
                ),
                timeout=30,
                what="Succeeded",
            )
            elapsed = time.monotonic() - began
    finally:
        watch.terminate()
        out, _ = watch.communicate(timeout=10)
    assert sum(e.event == "progress" for e in events) == 300

    statuses, decoder, text = [], json.JSONDecoder(), out.strip()
    while text:
        obj, end = decoder.raw_decode(text)
        statuses.append(json.dumps(obj["object"].get("status"), sort_keys=True))
        text = text[end:].lstrip()
    changes = sum(1 for a, b in itertools.pairwise(statuses) if a != b)
    # One write per second of the run, plus the phase changes that a second can hold.
    assert 1 <= changes <= math.ceil(elapsed) + 3, (changes, elapsed)
