"""Every Kubernetes API call of the local node agent: its Node and Lease, pods, Events, tokens.

It must not decide anything about pods: it turns plain dicts into API calls and back, and
tolerates what a kubelet tolerates (a pod that is already gone is not an error).
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from longtask_runtime import kube as runtimekube

log = logging.getLogger(__name__)

Obj = dict[str, Any]
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40


def now() -> str:
    """An RFC 3339 timestamp with second precision, as the API stores most times."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    """MicroTime, which Lease.spec.renewTime requires."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
    """Call a client method and return the raw JSON (camelCase keys, no model classes)."""
    response = call(*args, _preload_content=False, **kwargs)
    result: Obj = json.loads(response.data)
    return result


class NodeKube:
    """The agent's API client, logged in with the kubeconfig it was given."""

    def __init__(self, *, kubeconfig: Path, node_name: str) -> None:
        self.node_name = node_name
        self.capacity: dict[str, str] = {}
        self.api = runtimekube.login_sync(kubeconfig=kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.coordination = client.CoordinationV1Api(self.api)

    # -- the node ------------------------------------------------------------------------
    def register_node(self, *, capacity: dict[str, str]) -> None:
        """Create the Node (an existing one is kept, as a restarted kubelet keeps it)."""
        self.capacity = capacity
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "node.kubernetes.io/instance-type": "longtask-local",
                },
            },
        }
        try:
            self.core.create_node(node)
        except ApiException as exc:
            if exc.status != 409:
                raise
        self.core.patch_node_status(
            self.node_name,
            {"status": {"capacity": capacity, "allocatable": capacity, **self._status()}},
        )

    def _status(self) -> Obj:
        stamp = now()

        def condition(kind: str, status: str, reason: str, message: str) -> Obj:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }

        return {
            "conditions": [
                condition("Ready", "True", "KubeletReady", "longtask node agent is posting ready status"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "not measured"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "not measured"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "not measured"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.node_name},
            ],
            "nodeInfo": {
                "kubeletVersion": "longtask-node-agent",
                "kubeProxyVersion": "",
                "containerRuntimeVersion": "local-process://",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "osImage": "host",
                "kernelVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }

    def heartbeat(self) -> None:
        """Renew the node Lease and the Ready condition: the node lifecycle controller reads both.

        Conditions are a strategic-merge list keyed by type, so lastTransitionTime is only
        rewritten with the same value it had (the node never leaves Ready while we live).
        """
        try:
            current = _json(self.core.read_node, self.node_name).get("status", {})
        except ApiException as exc:
            if exc.status != 404:
                raise
            # Someone deleted the Node: register it again, as a kubelet does.
            self.register_node(capacity=self.capacity)
            return
        self._renew_lease()
        status = self._status()
        since = {c["type"]: c.get("lastTransitionTime") for c in current.get("conditions", [])}
        for cond in status["conditions"]:
            old = [c for c in current.get("conditions", []) if c["type"] == cond["type"]]
            if old and old[0].get("status") == cond["status"] and since.get(cond["type"]):
                cond["lastTransitionTime"] = since[cond["type"]]
        self.core.patch_node_status(self.node_name, {"status": {"conditions": status["conditions"]}})

    def _renew_lease(self) -> None:
        spec = {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": _micro_now(),
        }
        try:
            self.coordination.patch_namespaced_lease(self.node_name, LEASE_NAMESPACE, {"spec": spec})
        except ApiException as exc:
            if exc.status != 404:
                raise
            node_uid = _json(self.core.read_node, self.node_name)["metadata"]["uid"]
            lease = {
                "metadata": {
                    "name": self.node_name,
                    "namespace": LEASE_NAMESPACE,
                    # As the kubelet does: the Lease goes when the Node goes.
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": node_uid}
                    ],
                },
                "spec": spec,
            }
            self.coordination.create_namespaced_lease(LEASE_NAMESPACE, lease)

    # -- pods ------------------------------------------------------------------------------
    def pod_events(self, *, stop: Callable[[], bool]) -> Iterator[tuple[str, Obj]]:
        """("SYNC", {"items": [...]}) after each (re)list, then ("ADDED"|"MODIFIED"|"DELETED", pod).

        A watch that expires (410 Gone) or breaks is followed by a fresh list, so a consumer
        that reconciles on SYNC misses nothing.
        """
        selector = f"spec.nodeName={self.node_name}"
        while not stop():
            try:
                listing = _json(self.core.list_pod_for_all_namespaces, field_selector=selector)
                yield "SYNC", listing
                version = listing["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces,
                    field_selector=selector,
                    resource_version=version,
                    timeout_seconds=30,
                    allow_watch_bookmarks=True,
                    deserialize=False,
                )
                for event in stream:
                    kind, obj = event["type"], event["object"]  # a dict: deserialize=False
                    if kind == "ERROR":
                        break  # usually 410: list again
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        yield kind, obj
                    if stop():
                        return
            except (ApiException, OSError, ValueError) as exc:
                if stop():
                    return
                log.warning("pod watch broke (%s); listing again", exc)

    def get_pod(self, *, namespace: str, name: str) -> Obj | None:
        try:
            return _json(self.core.read_namespaced_pod, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch_pod_status(self, *, namespace: str, name: str, uid: str, status: Obj) -> None:
        """Merge-patch the status (lists replaced whole), guarded by uid; a gone pod is fine."""
        body = {"metadata": {"uid": uid}, "status": status}
        try:
            self.core.patch_namespaced_pod_status(
                name, namespace, body, _content_type="application/merge-patch+json"
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def delete_pod(self, *, namespace: str, name: str, uid: str) -> None:
        """Remove the object once its processes are gone, as a kubelet ends graceful deletion."""
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            self.core.delete_namespaced_pod(name, namespace, body=body)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def event(self, *, pod: Obj, reason: str, message: str, warning: bool = False) -> None:
        """A core/v1 Event about `pod`, from component kubelet on this node (best effort)."""
        meta = pod["metadata"]
        stamp = now()
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "source": {"component": "kubelet", "host": self.node_name},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node_name,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(meta["namespace"], body)
        except ApiException as exc:  # a namespace being deleted refuses new Events
            log.info("event %s for %s not recorded: %s", reason, meta["name"], exc.reason)

    # -- what pods reference ---------------------------------------------------------------------
    def data_of(self, *, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        """The decoded data of a Secret or ConfigMap (`kind`), or None if it does not exist."""
        read = self.core.read_namespaced_secret if kind == "Secret" else self.core.read_namespaced_config_map
        try:
            obj = _json(read, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        if kind == "Secret":
            return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        data: dict[str, str] = dict(obj.get("data") or {})
        data.update({k: base64.b64decode(v).decode() for k, v in (obj.get("binaryData") or {}).items()})
        return data

    def request_token(self, *, pod: Obj, audience: str | None, expiration_seconds: int) -> tuple[str, int]:
        """A TokenRequest for the pod's service account, bound to the pod: (token, seconds valid)."""
        meta = pod["metadata"]
        spec: Obj = {
            "expirationSeconds": expiration_seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
        }
        if audience:
            spec["audiences"] = [audience]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        account = pod["spec"].get("serviceAccountName") or "default"
        answer = _json(self.core.create_namespaced_service_account_token, account, meta["namespace"], body)
        expires = datetime.datetime.fromisoformat(
            answer["status"]["expirationTimestamp"].replace("Z", "+00:00")
        )
        valid = int((expires - datetime.datetime.now(datetime.UTC)).total_seconds())
        return answer["status"]["token"], min(valid, expiration_seconds)

    def services(self) -> list[tuple[str, str, dict[str, str]]]:
        """(namespace, name, selector) of every Service, for the pods' /etc/hosts."""
        listing = _json(self.core.list_service_for_all_namespaces)
        return [
            (s["metadata"]["namespace"], s["metadata"]["name"], s["spec"].get("selector") or {})
            for s in listing.get("items", [])
        ]
