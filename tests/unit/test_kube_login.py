"""The one log-in (longtask_runtime.kube) also serves Kopf, as plain credentials.

Covers: a kubeconfig with a bearer token gives the server, the CA file, the scheme and the
token apart (what Kopf's ConnectionInfo wants); one with a client certificate gives the
certificate and key files and no token; `insecure-skip-tls-verify` comes through.
"""

from __future__ import annotations

import pathlib

import yaml

from longtask_runtime import kube


def _kubeconfig(tmp_path: pathlib.Path, *, user: dict[str, str], insecure: bool = False) -> pathlib.Path:
    ca = tmp_path / "ca.crt"
    ca.write_text("not checked here\n")
    cluster: dict[str, object] = {"server": "https://127.0.0.1:6443"}
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    else:
        cluster["certificate-authority"] = str(ca)
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


async def test_a_token_user_gives_scheme_and_token_apart(tmp_path):
    found = await kube.credentials(kubeconfig=_kubeconfig(tmp_path, user={"token": "s3cret"}))
    assert found["server"] == "https://127.0.0.1:6443"
    assert found["ca_path"] == str(tmp_path / "ca.crt")
    assert (found["scheme"], found["token"]) == ("Bearer", "s3cret")
    assert found["insecure"] is False
    assert found["certificate_path"] is None


async def test_a_certificate_user_gives_its_files_and_no_token(tmp_path):
    (tmp_path / "me.crt").write_text("cert\n")
    (tmp_path / "me.key").write_text("key\n")
    user = {"client-certificate": str(tmp_path / "me.crt"), "client-key": str(tmp_path / "me.key")}
    found = await kube.credentials(kubeconfig=_kubeconfig(tmp_path, user=user, insecure=True))
    assert found["certificate_path"] == str(tmp_path / "me.crt")
    assert found["private_key_path"] == str(tmp_path / "me.key")
    assert found["token"] is None
    assert found["insecure"] is True
