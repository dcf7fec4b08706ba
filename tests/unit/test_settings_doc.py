"""docs/settings.md stays the generated list of every variable longtask reads.

Covers: the file is exactly what `python -m longtask_cli.settingsdoc` writes now (else the
failure says how to regenerate it); every LONGTASK_* name product code mentions is in it;
every variable the chart's templates set is in it; every settings field has a description
and the generator refuses a field without one, or a computed default it cannot show.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import Field

from longtask_cli import settingsdoc
from longtask_runtime import settings

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("contracts", "runtime", "api", "operator", "worker", "cli", "devtools")
# A whole name: `LONGTASK_METRICS_*` (several names at once) and the bare prefix are not one.
LONGTASK_NAME = re.compile(r"\bLONGTASK_[A-Z0-9_]*[A-Z0-9]\b(?!_?\*)")
CHART_ENV = re.compile(r"^\s*- name: ([A-Z][A-Z0-9_]*)\s*$", re.MULTILINE)


def documented() -> str:
    return (ROOT / "docs" / "settings.md").read_text()


def test_docs_settings_md_is_current():
    assert settingsdoc.DOC == ROOT / "docs" / "settings.md"
    assert documented() == settingsdoc.render(), (
        f"docs/settings.md is stale: regenerate it with `{settingsdoc.COMMAND}` and commit it"
    )


def test_every_longtask_variable_named_in_product_code_is_documented():
    """Every LONGTASK_* name in product code, read or written: a name read by hand must be
    declared in an ENVIRONMENT next to its reader (settings fields are listed anyway), and a
    name written is one of two kinds, both documented: a setting the CLI passes on to the
    component it becomes (`longtask worker --pool` sets LONGTASK_POOL), or a line of the
    `.longtask/env` file `longtask dev up` writes for a shell (LONGTASK_METRICS_API), which
    no longtask process reads but users source, so it has its own section. Docstrings and
    messages count too: a name they mention should exist and be explained."""
    text = documented()
    named: dict[str, set[str]] = {}
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            for name in LONGTASK_NAME.findall(path.read_text()):
                named.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert "LONGTASK_LOG_FORMAT" in named  # the scan sees names read by hand
    missing = {name: sorted(paths) for name, paths in named.items() if f"`{name}`" not in text}
    assert not missing, f"named in product code, absent from docs/settings.md: {missing}"


def test_every_variable_the_chart_sets_is_documented():
    text = documented()
    set_by_chart = {
        name
        for path in (ROOT / "charts" / "longtask" / "templates").rglob("*")
        if path.is_file()
        for name in CHART_ENV.findall(path.read_text())
    }
    assert "REDIS_URL" in set_by_chart
    set_by_chart.discard("REDISCLI_AUTH")  # redis-cli's, in the built-in Redis' container
    missing = sorted(name for name in set_by_chart if f"`{name}`" not in text)
    assert not missing, f"set by the chart, absent from docs/settings.md: {missing}"


@pytest.mark.parametrize(("reader", "cls"), [(settings.Base.__name__, settings.Base), *settingsdoc.CLASSES])
def test_every_field_has_a_description(reader: str, cls: type[settings.Base]):
    assert [name for name, field in cls.model_fields.items() if not (field.description or "").strip()] == []


def test_the_generator_refuses_an_undocumented_field():
    class Undocumented(settings.Base):
        quiet: int = 1

    with pytest.raises(settingsdoc.UndocumentedError, match=r"Undocumented\.quiet"):
        settingsdoc.from_class(readers=("gateway",), cls=Undocumented, names=["quiet"])


def test_the_generator_refuses_a_computed_default_it_cannot_show():
    class Computed(settings.Base):
        somewhere: str = Field(default_factory=lambda: "here", description="Where.")

    with pytest.raises(settingsdoc.UndocumentedError, match=r"Computed\.somewhere"):
        settingsdoc.from_class(readers=("gateway",), cls=Computed, names=["somewhere"])


def test_a_field_is_listed_under_its_variable_with_its_default():
    variables = {(v.name, v.readers): v for v in settingsdoc.variables()}
    redis = variables[("REDIS_URL", ("gateway", "operator", "worker"))]
    assert redis.default == settings.REDIS_URL
    assert variables[("LONGTASK_AUTH", ("gateway",))].default == "true"
    consumer = variables[("LONGTASK_CONSUMER", ("operator",))]
    assert (consumer.default, consumer.literal) == ("the host name", False)
