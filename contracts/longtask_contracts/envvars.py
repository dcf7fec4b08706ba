"""Environment variables read outside a settings class, declared next to the code that
reads them, so that docs/settings.md lists them beside the settings classes' fields.

Pure data: it must not read the environment itself, and it names no reader module; the
generator (longtask_cli.settingsdoc) collects the declarations.
"""

from __future__ import annotations

import dataclasses

# The readers docs/settings.md groups by, in its order.
GATEWAY = "gateway"
OPERATOR = "operator"
WORKER = "worker"
CLI = "CLI"
DEVTOOLS = "dev tools"
READERS = (GATEWAY, OPERATOR, WORKER, CLI, DEVTOOLS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Variable:
    """One variable: its name, its default as it would be set ("" for none), what it does
    (with its unit), and which components read it. `literal` False: the default is computed
    where it is read and `default` says how (e.g. "the host name")."""

    name: str
    default: str
    description: str
    readers: tuple[str, ...]
    literal: bool = True


def written(name: str, description: str) -> Variable:
    """A variable longtask writes for people (the env file of `longtask dev up`) and no longtask
    process reads: no default, no reader."""
    return Variable(name=name, default="", description=description, readers=())
