"""LongTaskSchedules for people, through the real gateway and the real CLI (schedules made with kubectl).

Covers: list and get show each schedule's spec (schedule, time zone, suspend, concurrency
policy, CRD defaults) and its status as the apiserver holds it (no nextScheduleTime until
the operator writes one: none is made up), by name; trigger creates a run now, named
<name>-manual-<unix seconds>, owned by the schedule (deleting the schedule deletes it),
labelled longtask.io/schedule=<name>, annotated as manual, with the template's spec and
labels, that runs to Succeeded and is then shown with the schedule, newest first, also on
a suspended schedule; suspend and resume set and clear spec.suspend; a missing schedule is
a 404 Problem for every route, a name longer than a schedule's is a 422; with auth on, a
token whose Role allows namespace A reads, triggers, suspends in A and gets 403 in B, a
token that may only create LongTasks may trigger but neither read nor suspend, and one
without RBAC gets 403 everywhere. The CLI: `schedule list` prints the table with "-" for a
next run not written yet and the last run's phase, `trigger --watch` follows the run to
Succeeded (exit 0), suspend and resume say what they did, and a missing schedule exits 1
with the gateway's 404.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from longtask_contracts import names
from longtask_dev import platform as platform_mod
from longtask_dev import procs
from tests import lt, lts

pytestmark = pytest.mark.cluster


def base(url: str, namespace: str) -> str:
    return f"{url}/v1/namespaces/{namespace}/schedules"


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"] and "Traceback" not in response.text
    return body


def test_list_and_get_show_the_spec_and_the_status_as_held(platform, kubectl, namespace):
    lts.create(kubectl, namespace, "nightly", timeZone="Europe/Berlin", concurrencyPolicy="Forbid")
    lts.create(kubectl, namespace, "asleep", suspend=True)
    listed = httpx.get(base(platform.api_url, namespace))
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [s["name"] for s in items] == ["asleep", "nightly"]
    asleep, nightly = items
    assert (nightly["schedule"], nightly["timeZone"], nightly["concurrencyPolicy"]) == (
        lts.RARE,
        "Europe/Berlin",
        "Forbid",
    )
    assert (nightly["suspend"], asleep["suspend"], asleep["timeZone"], asleep["concurrencyPolicy"]) == (
        False,
        True,
        "UTC",
        "Allow",
    )
    assert asleep["nextScheduleTime"] is None  # suspended: the operator writes none
    for shown in items:  # what the apiserver holds, never a time the gateway made up
        held = lts.get(kubectl, namespace, shown["name"]).get("status") or {}
        assert shown["nextScheduleTime"] == held.get("nextScheduleTime")
        assert shown["runs"] == []
    one = httpx.get(f"{base(platform.api_url, namespace)}/nightly")
    assert one.status_code == 200, one.text
    spec_fields = ("name", "namespace", "uid", "schedule", "timeZone", "suspend", "concurrencyPolicy", "runs")
    assert {k: one.json()[k] for k in spec_fields} == {k: nightly[k] for k in spec_fields}


def test_trigger_makes_an_owned_labelled_run_that_succeeds(platform, kubectl, namespace):
    made = lts.create(kubectl, namespace, "refresh", suspend=True)  # a trigger runs it all the same
    before = int(time.time())
    answer = httpx.post(f"{base(platform.api_url, namespace)}/refresh/trigger")
    assert answer.status_code == 202, answer.text
    created = answer.json()
    run = created["name"]
    assert run.startswith("refresh-manual-") and before <= int(run.rsplit("-", 1)[1]) <= time.time()
    assert created["links"]["events"] == f"/v1/namespaces/{namespace}/tasks/{run}/events"
    obj = lt.get(kubectl, namespace, run)
    meta = obj["metadata"]
    assert meta["labels"] == {"team": "search", names.SCHEDULE_LABEL: "refresh"}
    assert meta["annotations"][names.INSTANTIATE_ANNOTATION] == "manual"
    assert names.SCHEDULED_AT_ANNOTATION not in meta["annotations"]
    (owner,) = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        names.SCHEDULE_KIND,
        "refresh",
        made["metadata"]["uid"],
        True,
    )
    assert obj["spec"]["task"] == "demo.noop"
    lt.wait_phase(kubectl, namespace, run, "Succeeded")

    shown = httpx.get(f"{base(platform.api_url, namespace)}/refresh").json()
    assert [(r["name"], r["phase"], r["manual"]) for r in shown["runs"]] == [(run, "Succeeded", True)]
    assert shown["runs"][0]["finishedAt"]

    # The run is the schedule's: deleting the schedule deletes it (the garbage collector).
    kubectl("delete", "-n", namespace, f"{names.SCHEDULE_PLURAL}/refresh")
    kubectl("wait", "-n", namespace, f"lt/{run}", "--for=delete", "--timeout=60s")


def test_suspend_and_resume_set_spec_suspend(platform, kubectl, namespace):
    lts.create(kubectl, namespace, "hourly")
    url = base(platform.api_url, namespace)
    suspended = httpx.post(f"{url}/hourly/suspend")
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["suspend"] is True and suspended.json()["runs"] is None
    assert lts.get(kubectl, namespace, "hourly")["spec"]["suspend"] is True
    resumed = httpx.post(f"{url}/hourly/resume")
    assert resumed.status_code == 200 and resumed.json()["suspend"] is False
    assert lts.get(kubectl, namespace, "hourly")["spec"]["suspend"] is False


def test_a_missing_schedule_is_a_404_problem(platform, namespace):
    url = f"{base(platform.api_url, namespace)}/nothing-here"
    for response in (
        httpx.get(url),
        httpx.post(f"{url}/trigger"),
        httpx.post(f"{url}/suspend"),
        httpx.post(f"{url}/resume"),
    ):
        assert "not found" in problem(response, 404)["detail"]
    problem(httpx.get(f"{base(platform.api_url, namespace)}/{'x' * 53}"), 422)


# -- with auth on ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def secure_api(platform: platform_mod.Platform) -> Iterator[str]:
    port = procs.free_port()
    child = platform.start_api(port=port, auth=True)
    yield f"http://127.0.0.1:{port}"
    platform.stop_child(child)


@pytest.fixture
def other_namespace(kubectl) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def token(kubectl, namespace: str, rules: list[dict[str, Any]] | None) -> str:
    """A token of a new ServiceAccount in `namespace` whose Role there has `rules` (None: no Role)."""
    name = f"sa-{uuid.uuid4().hex[:6]}"
    kubectl("create", "serviceaccount", name, "-n", namespace)
    if rules is not None:
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "rules": rules}
        role["metadata"] = {"name": name, "namespace": namespace}
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        }
        kubectl("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))
    return str(kubectl("create", "token", name, "-n", namespace).stdout.strip())


def as_caller(url: str, bearer: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {bearer}"}, timeout=30)


def test_access_follows_kubernetes_rbac(secure_api, kubectl, namespace, other_namespace):
    a, b = namespace, other_namespace
    for ns in (a, b):
        lts.create(kubectl, ns, "nightly")
    lts.create(kubectl, a, "hourly")  # triggered by a second caller: another second's name or not
    everything = platform_mod.user_role("x", kind="Role", namespace=a)["rules"]
    with as_caller(secure_api, token(kubectl, a, everything)) as c:
        assert [s["name"] for s in c.get(f"/v1/namespaces/{a}/schedules").json()["items"]] == [
            "hourly",
            "nightly",
        ]
        assert c.get(f"/v1/namespaces/{a}/schedules/nightly").status_code == 200
        assert c.post(f"/v1/namespaces/{a}/schedules/nightly/trigger").status_code == 202
        assert c.post(f"/v1/namespaces/{a}/schedules/nightly/suspend").json()["suspend"] is True
        assert c.post(f"/v1/namespaces/{a}/schedules/nightly/resume").json()["suspend"] is False
        for method, path, verb in (
            ("GET", "", "list longtaskschedules"),
            ("GET", "/nightly", "get longtaskschedules"),
            ("POST", "/nightly/trigger", "create longtasks"),
            ("POST", "/nightly/suspend", "patch longtaskschedules"),
            ("POST", "/nightly/resume", "patch longtaskschedules"),
        ):
            body = problem(c.request(method, f"/v1/namespaces/{b}/schedules{path}"), 403)
            assert f"may not {verb}.longtask.io" in body["detail"], body
    assert lts.get(kubectl, b, "nightly")["spec"].get("suspend") is False  # untouched

    creator = [{"apiGroups": ["longtask.io"], "resources": ["longtasks"], "verbs": ["create"]}]
    with as_caller(secure_api, token(kubectl, a, creator)) as c:
        assert c.post(f"/v1/namespaces/{a}/schedules/hourly/trigger").status_code == 202
        problem(c.get(f"/v1/namespaces/{a}/schedules"), 403)
        problem(c.post(f"/v1/namespaces/{a}/schedules/nightly/suspend"), 403)

    # Schedules without their runs' rights: the runs are LongTasks, so reading needs `list` on them.
    reader = [{"apiGroups": ["longtask.io"], "resources": ["longtaskschedules"], "verbs": ["get", "list"]}]
    with as_caller(secure_api, token(kubectl, a, reader)) as c:
        assert (
            "may not list longtasks.longtask.io"
            in problem(c.get(f"/v1/namespaces/{a}/schedules"), 403)["detail"]
        )

    with as_caller(secure_api, token(kubectl, a, None)) as c:
        for method, path in (
            ("GET", ""),
            ("GET", "/nightly"),
            ("POST", "/nightly/trigger"),
            ("POST", "/nightly/suspend"),
        ):
            problem(c.request(method, f"/v1/namespaces/{a}/schedules{path}"), 403)


# -- the CLI --------------------------------------------------------------------------------
def cli(platform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "longtask_cli", "schedule", *args, "--api", platform.api_url],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_cli_lists_triggers_suspends_and_resumes(platform, kubectl, namespace):
    lts.create(kubectl, namespace, "nightly", timeZone="Europe/Berlin", suspend=True)
    out = cli(platform, "list", "-n", namespace)
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND"]
    assert row.split() == ["nightly", *lts.RARE.split(), "Europe/Berlin", "true", "-", "-", "-"]

    out = cli(platform, "trigger", "nightly", "-n", namespace, "--watch")
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first.startswith(f"triggered {namespace}/nightly: created {namespace}/nightly-manual-")
    assert "Succeeded" in out.stdout.splitlines()[-1]
    out = cli(platform, "list", "-n", namespace)
    assert out.stdout.splitlines()[1].split()[-1] == "Succeeded"  # the last run's phase

    out = cli(platform, "resume", "nightly", "-n", namespace)
    assert out.returncode == 0 and out.stdout.strip() == f"resumed {namespace}/nightly (suspend: false)"
    out = cli(platform, "suspend", "nightly", "-n", namespace)
    assert out.returncode == 0 and out.stdout.strip() == f"suspended {namespace}/nightly (suspend: true)"
    assert lts.get(kubectl, namespace, "nightly")["spec"]["suspend"] is True

    out = cli(platform, "trigger", "nothing-here", "-n", namespace)
    assert out.returncode == 1 and "error 404" in out.stderr and "not found" in out.stderr
