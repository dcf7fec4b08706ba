"""The LongTaskSchedule CRD's template.spec is the LongTask CRD's spec schema.

Covers: the copy is the LongTask spec schema exactly, less the rules that compare with
oldSelf (immutability: they would stop anyone editing a schedule's template; a run is a
new LongTask each time, so they still hold for it); every field kubectl explain shows has
a description; the printer columns the issue asks for.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import yaml

CRDS = pathlib.Path(__file__).resolve().parents[2] / "charts" / "longtask" / "crds"


def _schema(name: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / name).read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _without_old_self(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_old_self(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {key: _without_old_self(value) for key, value in node.items() if key != "x-kubernetes-validations"}
    kept = [rule for rule in node.get("x-kubernetes-validations", []) if "oldSelf" not in rule["rule"]]
    if kept:
        out["x-kubernetes-validations"] = kept
    return out


def test_template_spec_is_the_longtask_spec_without_its_immutability_rules():
    longtask = _without_old_self(copy.deepcopy(_schema("longtasks.longtask.io.yaml")["properties"]["spec"]))
    template = _schema("longtaskschedules.longtask.io.yaml")["properties"]["spec"]["properties"]["template"]
    copied = dict(template["properties"]["spec"])
    assert "oldSelf" not in yaml.safe_dump(copied)
    copied.pop("description"), longtask.pop("description")
    assert copied == longtask, "regenerate template.spec from longtasks.longtask.io.yaml's spec"


def _undocumented(node: dict[str, Any], path: str) -> list[str]:
    # (the apiserver allows nothing but name and generateName under metadata)
    found = [] if node.get("description") or path in ("", ".metadata") else [path]
    for key, child in (node.get("properties") or {}).items():
        found += _undocumented(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        found += _undocumented(node["items"], f"{path}[]")
    return found


def test_every_field_is_documented_for_kubectl_explain():
    schema = _schema("longtaskschedules.longtask.io.yaml")
    assert _undocumented(schema, "") == []


def test_printer_columns():
    crd = yaml.safe_load((CRDS / "longtaskschedules.longtask.io.yaml").read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    shown = [c["name"] for c in columns if not c.get("priority")]
    assert shown == ["Schedule", "Suspend", "Active", "Last Schedule", "Age"]
