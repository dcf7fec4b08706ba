"""The files behind a pod's volumes on this node: emptyDir folders, projected service-account
tokens, Secret / ConfigMap / downward-API files, and the pod's /etc/hosts.

Everything lives under the pod's folder and is bind-mounted by the container shim
(podproc). Tokens come from the TokenRequest API, bound to the pod and refreshed at 80 % of
their life. It must not start or stop processes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from longtask_dev import nodekube, podspec

Obj = dict[str, Any]
HOSTS_TARGET = "/etc/hosts"


class MakeTarget(Protocol):
    def __call__(self, target: Path, *, directory: bool) -> object: ...


@dataclass
class _Token:
    path: Path
    audience: str | None
    expiration: int
    refresh_at: float = 0.0


def _write(path: Path, content: str | bytes, mode: int = 0o644) -> None:
    """Replace the file atomically: a reader never sees half a token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content.encode() if isinstance(content, str) else content)
    tmp.chmod(mode)
    os.replace(tmp, path)


class Volumes:
    """A pod's volumes under `pod_dir/volumes/<name>`; prepare() once, refresh() when due."""

    def __init__(self, *, kube: nodekube.NodeKube, pod: Obj, pod_dir: Path, host_ip: str) -> None:
        self.kube = kube
        self.pod = pod
        self.dir = pod_dir / "volumes"
        self.host_ip = host_ip
        self.tokens: list[_Token] = []
        self.hosts_file = pod_dir / "etc-hosts"

    def lookup(self, kind: str, name: str) -> Mapping[str, str] | None:
        return self.kube.data_of(kind=kind, namespace=self.pod["metadata"]["namespace"], name=name)

    def prepare(self) -> None:
        """Write every volume's files; a missing non-optional Secret/ConfigMap raises ConfigError."""
        self.tokens.clear()
        for volume in self.pod["spec"].get("volumes") or []:
            target = self.dir / volume["name"]
            target.mkdir(parents=True, exist_ok=True)
            if "emptyDir" in volume:
                target.chmod(0o777)  # as the kubelet makes them: any user of the pod may write
            elif "projected" in volume:
                for source in volume["projected"].get("sources") or []:
                    self._project(source, target)
            elif "secret" in volume:
                spec = volume["secret"]
                self._data(target, "Secret", {**spec, "name": spec.get("secretName", "")})
            elif "configMap" in volume:
                self._data(target, "ConfigMap", volume["configMap"])
            elif "downwardAPI" in volume:
                self._downward(target, volume["downwardAPI"].get("items") or [])
        self.refresh()

    def _project(self, source: Obj, target: Path) -> None:
        if "serviceAccountToken" in source:
            spec = source["serviceAccountToken"]
            self.tokens.append(
                _Token(target / spec["path"], spec.get("audience"), int(spec.get("expirationSeconds", 3600)))
            )
        elif "secret" in source:
            self._data(target, "Secret", source["secret"])
        elif "configMap" in source:
            self._data(target, "ConfigMap", source["configMap"])
        elif "downwardAPI" in source:
            self._downward(target, source["downwardAPI"].get("items") or [])

    def _data(self, target: Path, kind: str, spec: Obj) -> None:
        data = self.lookup(kind, spec["name"])
        if data is None:
            if spec.get("optional"):
                return
            raise podspec.ConfigError(f'{kind.lower()} "{spec["name"]}" not found')
        items = spec.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item["key"] not in data:
                if spec.get("optional"):
                    continue
                raise podspec.ConfigError(f"key {item['key']} not found in {kind} {spec['name']}")
            _write(target / item["path"], data[item["key"]], int(item.get("mode", 0o644)))

    def _downward(self, target: Path, items: list[Obj]) -> None:
        for item in items:
            value = "0"  # resourceFieldRef: no resource accounting here
            if "fieldRef" in item:
                value = podspec.field_ref(self.pod, item["fieldRef"]["fieldPath"], host_ip=self.host_ip)
            _write(target / item["path"], value)

    def next_refresh(self) -> float:
        """time.monotonic() at which a token is due for renewal (inf without tokens)."""
        return min((t.refresh_at for t in self.tokens), default=float("inf"))

    def refresh(self) -> None:
        """Request the tokens that are due; a fresh one replaces the file in place."""
        for token in self.tokens:
            if token.refresh_at > time.monotonic():
                continue
            value, valid = self.kube.request_token(
                pod=self.pod, audience=token.audience, expiration_seconds=token.expiration
            )
            _write(token.path, value, 0o600)
            token.refresh_at = time.monotonic() + 0.8 * max(valid, 10)

    def write_hosts(self, *, hostname: str, services: list[tuple[str, str]]) -> None:
        """localhost, the pod's hostname and the given Services' DNS names, all on 127.0.0.1.

        There is no kube-proxy: a Service name works from a pod only when its port equals
        the targetPort of its pod (true of the chart's gateway).
        """
        lines = [
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
            f"127.0.0.1\t{hostname}",
        ]
        namespace = self.pod["metadata"]["namespace"]
        for ns, name in services:
            names = [f"{name}.{ns}.svc.cluster.local", f"{name}.{ns}.svc", f"{name}.{ns}"]
            if ns == namespace:
                names.append(name)
            lines.append("127.0.0.1\t" + " ".join(names))
        for alias in self.pod["spec"].get("hostAliases") or []:
            lines.append(f"{alias['ip']}\t{' '.join(alias.get('hostnames') or [])}")
        _write(self.hosts_file, "\n".join(lines) + "\n")

    def mounts(self, container: Obj, *, hold: MakeTarget) -> list[Obj]:
        """The container's bind mounts for the shim; `hold` makes a missing mount point exist."""
        volumes = {v["name"]: v for v in self.pod["spec"].get("volumes") or []}
        out: list[Obj] = [{"source": str(self.hosts_file), "target": HOSTS_TARGET, "readOnly": False}]
        for mount in container.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            if "hostPath" in volume:
                source = Path(volume["hostPath"]["path"])
                if volume["hostPath"].get("type") == "DirectoryOrCreate":
                    source.mkdir(parents=True, exist_ok=True)
            else:
                source = self.dir / mount["name"]
            if mount.get("subPath"):
                source = source / mount["subPath"]
                source.mkdir(parents=True, exist_ok=True)
            target = Path(mount["mountPath"])
            hold(target, directory=source.is_dir())
            out.append(
                {"source": str(source), "target": str(target), "readOnly": bool(mount.get("readOnly"))}
            )
        return out
