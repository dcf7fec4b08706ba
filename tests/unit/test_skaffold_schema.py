"""skaffold.yaml is valid for its apiVersion, so `skaffold dev` is not the first to find a typo.

Covers: skaffold.yaml validates against skaffold's published JSON schema (draft-07) for
its apiVersion, vendored under tests/schemas/ and unchanged since it was copied (its
sha256 is the one tests/schemas/README.md gives with its source); the check has teeth: a
copy of skaffold.yaml with a misspelt key (top level, under build, in a Helm release) or a
value of the wrong type fails, naming the offending key.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SKAFFOLD = ROOT / "skaffold.yaml"
SCHEMAS = ROOT / "tests" / "schemas"


def _schema_file(text: str) -> Path:
    """The vendored schema of the apiVersion `text` (a skaffold.yaml) declares."""
    version = yaml.safe_load(text)["apiVersion"].removeprefix("skaffold/")
    return SCHEMAS / f"skaffold-{version}.json"


def _problems(text: str) -> list[str]:
    """Every leaf validation error of the skaffold.yaml `text`, with where it is."""
    schema = json.loads(_schema_file(text).read_text())
    validator = jsonschema.Draft7Validator(schema)
    found: list[str] = []

    def leaves(errors: Any) -> None:
        for error in errors:
            if error.context:
                leaves(error.context)  # anyOf/oneOf: the branches' own errors say what is wrong
            else:
                where = "/".join(str(p) for p in error.absolute_path)
                found.append(f"{where}: {error.message}")

    leaves(validator.iter_errors(yaml.safe_load(text)))
    return found


def test_the_vendored_schema_is_the_one_the_note_names() -> None:
    path = _schema_file(SKAFFOLD.read_text())
    assert path.exists(), f"no vendored schema for skaffold.yaml's apiVersion: see {SCHEMAS / 'README.md'}"
    jsonschema.Draft7Validator.check_schema(json.loads(path.read_text()))
    note = (SCHEMAS / "README.md").read_text()
    row = next(line for line in note.splitlines() if f"`{path.name}`" in line)
    recorded = re.search(r"sha256 `([0-9a-f]{64})`", row)
    assert recorded is not None, row
    assert hashlib.sha256(path.read_bytes()).hexdigest() == recorded[1], "edited since it was vendored"


def test_skaffold_yaml_is_valid_for_its_api_version() -> None:
    assert _problems(SKAFFOLD.read_text()) == []


@pytest.mark.parametrize(
    ("good", "bad", "named"),
    [
        ("\ndeploy:", "\ndeplyo:", "deplyo"),
        ("  tagPolicy:", "  tagPolcy:", "tagPolcy"),
        ("        chartPath:", "        chartPth:", "chartPth"),
        ("        createNamespace: true", "        createNamespace: [yes]", "createNamespace"),
    ],
)
def test_a_typo_fails_and_is_named(good: str, bad: str, named: str) -> None:
    text = SKAFFOLD.read_text()
    assert text.count(good) == 1, f"skaffold.yaml changed: put another {good.strip()!r} here"
    problems = _problems(text.replace(good, bad))
    assert problems, f"{bad.strip()!r} passed validation"
    assert any(named in problem for problem in problems), problems
