"""The node agent's pure pod logic (longtask_dev.podspec).

Covers: `$(VAR)` expansion (defined, undefined, `$$`); fieldRef paths; env precedence
(base < envFrom < env) with prefixes and optional references; missing Secrets and keys
raising ConfigError; a container without command refused; declared TCP ports; unsupported
volumes and init containers refused; the grace period's precedence; restart decisions and
the capped backoff; probes with named ports and defaults; the pod phase; and conditions
keeping their transition time while they hold.
"""

from __future__ import annotations

from typing import Any

import pytest

from longtask_dev import podspec

POD: dict[str, Any] = {
    "metadata": {
        "name": "p",
        "namespace": "ns",
        "uid": "u-1",
        "labels": {"app": "a"},
        "annotations": {"note": "n"},
    },
    "spec": {"nodeName": "node", "serviceAccountName": "sa", "containers": [{"name": "c", "command": ["x"]}]},
}
DATA = {("Secret", "s"): {"k": "secret"}, ("ConfigMap", "cm"): {"a": "1", "b": "2"}}


def lookup(kind: str, name: str) -> dict[str, str] | None:
    return DATA.get((kind, name))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("$(A)-$(B)", "1-$(B)"), ("$$(A)", "$(A)"), ("$A", "$A"), ("plain", "plain"), ("$(A)$(A)", "11")],
)
def test_expand(text: str, expected: str):
    assert podspec.expand(text, {"A": "1"}) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("metadata.name", "p"),
        ("metadata.namespace", "ns"),
        ("metadata.uid", "u-1"),
        ("spec.nodeName", "node"),
        ("spec.serviceAccountName", "sa"),
        ("status.podIP", "127.0.0.1"),
        ("status.hostIP", "127.0.0.1"),
        ("metadata.labels['app']", "a"),
        ("metadata.annotations['note']", "n"),
        ("metadata.labels['missing']", ""),
    ],
)
def test_field_ref(path: str, expected: str):
    assert podspec.field_ref(POD, path, host_ip="127.0.0.1") == expected


def test_env_precedence_prefix_and_optional():
    container = {
        "name": "c",
        "envFrom": [
            {"configMapRef": {"name": "cm"}, "prefix": "CM_"},
            {"secretRef": {"name": "gone", "optional": True}},
        ],
        "env": [
            {"name": "CM_a", "value": "override"},
            {"name": "PATH", "value": "/x:$(PATH)"},
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "O", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "zzz", "optional": True}}},
        ],
    }
    env = podspec.container_env(POD, container, lookup=lookup, base={"PATH": "/bin"}, host_ip="127.0.0.1")
    assert env == {"PATH": "/x:/bin", "CM_a": "override", "CM_b": "2", "S": "secret"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}],
            'secret "nope" not found',
        ),
        ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "zz"}}}], "couldn't find key zz"),
    ],
)
def test_missing_references_raise(env: list[dict[str, Any]], message: str):
    with pytest.raises(podspec.ConfigError, match=message):
        podspec.container_env(POD, {"name": "c", "env": env}, lookup=lookup, base={}, host_ip="127.0.0.1")


def test_command_line_expands_and_requires_a_command():
    assert podspec.command_line({"name": "c", "command": ["a"], "args": ["$(X)"]}, {"X": "1"}) == ["a", "1"]
    with pytest.raises(podspec.ConfigError, match="no command"):
        podspec.command_line({"name": "c", "args": ["x"]}, {})


def test_ports_refusals_and_grace():
    pod = {
        "metadata": {"deletionGracePeriodSeconds": 2},
        "spec": {
            "terminationGracePeriodSeconds": 60,
            "containers": [{"ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]}],
        },
    }
    assert podspec.tcp_ports(pod) == {80}
    assert podspec.grace_seconds(pod) == 2
    assert podspec.grace_seconds({"metadata": {}, "spec": {"terminationGracePeriodSeconds": 60}}) == 60
    assert podspec.grace_seconds({"metadata": {}, "spec": {}}) == 30
    assert podspec.refusal({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}) is None
    refused = podspec.refusal(
        {"spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "x"}}]}}
    )
    assert refused is not None and "persistentVolumeClaim is not supported" in refused
    assert podspec.refusal({"spec": {"initContainers": [{}]}}) is not None


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("Never", 1, False),
    ],
)
def test_should_restart(policy: str, code: int, restart: bool):
    assert podspec.should_restart(policy, code) is restart


def test_backoff_doubles_and_caps():
    assert [podspec.backoff(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_probe_named_port_and_defaults():
    container = {
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": 9090}},
    }
    ready = podspec.probe(container, "readinessProbe")
    assert ready == podspec.Probe("http", 8080, "/healthz", {}, 0.0, 5.0, 1.0, 1, 3)
    live = podspec.probe(container, "livenessProbe")
    assert live is not None and (live.kind, live.port, live.period) == ("tcp", 9090, 10.0)
    assert podspec.probe(container, "startupProbe") is None


def _view(state: str, code: int = 0) -> podspec.ContainerView:
    return podspec.ContainerView("c", "img", state=state, exit_code=code)


@pytest.mark.parametrize(
    ("states", "restarting", "phase"),
    [
        ([_view("waiting")], False, "Pending"),
        ([_view("running")], False, "Running"),
        ([_view("waiting")], True, "Running"),
        ([_view("terminated", 0)], False, "Succeeded"),
        ([_view("terminated", 0), _view("terminated", 1)], False, "Failed"),
        ([_view("terminated", 0), _view("running")], False, "Running"),
    ],
)
def test_phase(states: list[podspec.ContainerView], restarting: bool, phase: str):
    assert podspec.phase(states, restarting=restarting) == phase


def test_conditions_keep_their_transition_time():
    view = podspec.ContainerView("c", "img", state="running", started_at="t0", ready=True, pid=7)
    first = podspec.pod_status(
        phase_="Running", views=[view], start_time="t0", host_ip="127.0.0.1", stamp="t1", previous={}
    )
    again = podspec.pod_status(
        phase_="Running", views=[view], start_time="t0", host_ip="127.0.0.1", stamp="t2", previous=first
    )
    assert again == first
    ready = {c["type"]: c for c in again["conditions"]}["Ready"]
    assert (ready["status"], ready["lastTransitionTime"]) == ("True", "t1")
    assert again["containerStatuses"][0]["containerID"] == "longtask://7"
    view.ready = False
    later = podspec.pod_status(
        phase_="Running", views=[view], start_time="t0", host_ip="127.0.0.1", stamp="t3", previous=again
    )
    ready = {c["type"]: c for c in later["conditions"]}["Ready"]
    assert (ready["status"], ready["lastTransitionTime"]) == ("False", "t3")
