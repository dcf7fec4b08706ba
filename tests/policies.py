"""ValidatingAdmissionPolicies that make the apiserver refuse something, for fault drills.

Each policy refuses the given operations on the given LongTask resource (or subresource)
for the objects of one namespace that carry a label, and is bound to that namespace only.
"""

from __future__ import annotations

import json

from longtask_contracts import names
from tests import helpers, lt


def refusing(*, namespace: str, label: str, operations: list[str], resource: str) -> tuple[str, str]:
    """(policy name, manifests to apply) refusing `operations` on `resource` ("longtasks",
    "longtasks/status") of `namespace`'s LongTasks labelled `label`."""
    name = f"refuse-{resource.replace('/', '-')}-{namespace}"
    # DELETE has no `object`, only `oldObject`; the others are refused on the object written.
    subject = "oldObject" if operations == ["DELETE"] else "object"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [names.GROUP],
                        "apiVersions": [names.VERSION],
                        "operations": operations,
                        "resources": [resource],
                    }
                ]
            },
            "validations": [
                {
                    "expression": f"!has({subject}.metadata.labels) || "
                    f"!('{label}' in {subject}.metadata.labels)",
                    "message": f"{resource} of this LongTask refused by a test policy",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    return name, json.dumps({"apiVersion": "v1", "kind": "List", "items": [policy, binding]})


def status_writes_refused(kubectl: lt.Kubectl, *, namespace: str, name: str) -> bool:
    """Whether a status write of LongTask `name` is refused by a test policy (it is in force)."""
    result = kubectl(
        "patch", "-n", namespace, f"lt/{name}", "--subresource=status", "--type=merge",
        "-p", '{"status": {"message": "probe"}}', check=False,
    )  # fmt: skip
    return result.returncode != 0 and "refused by a test policy" in result.stderr


def wait_in_force(kubectl: lt.Kubectl, *, namespace: str, name: str) -> None:
    helpers.poll(
        lambda: status_writes_refused(kubectl, namespace=namespace, name=name),
        timeout=30,
        what="the policy to apply",
    )


def remove(kubectl: lt.Kubectl, name: str) -> None:
    kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name, check=False)
