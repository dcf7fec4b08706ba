"""How the CLI shows a task's events: a live rich progress bar on a terminal, plain lines otherwise.

Pure presentation: it receives sseclient.Events and prints; it talks to no server.
"""

from __future__ import annotations

import json
import sys
import time
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

from longtask_cli import sseclient


def event_line(event: sseclient.Event) -> str:
    """One plain line: time, phase, progress, [step] message (or the result at the end)."""
    d = event.data
    stamp = time.strftime("%H:%M:%S", time.localtime(d.get("at", time.time())))
    progress = f"{d['progress']:5.1f}%" if d.get("progress") is not None else "      "
    detail = d.get("message") or (d.get("error") or {}).get("message") or ""
    if d.get("step"):
        detail = f"[{d['step']}] {detail}"
    if event.event == "succeeded" and d.get("result") is not None:
        detail = f"result: {json.dumps(d['result'])}"
    return f"{stamp}  {d.get('phase', event.event):<10} {progress}  {detail}".rstrip()


class Watch:
    """A context manager; show(event) for each event. A bar on a terminal, lines when piped."""

    def __init__(self, title: str, *, out: TextIO | None = None, force_terminal: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.console = Console(file=self.out, force_terminal=force_terminal, highlight=False)
        self.live = self.console.is_terminal
        self.title = title
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> Watch:
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=None),
                TaskProgressColumn(),
                TextColumn("{task.fields[phase]:<9}"),
                TextColumn("{task.fields[detail]}", markup=False),
                TimeElapsedColumn(),
                console=self.console,
                expand=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.title, total=100, phase="Pending", detail="")
        return self

    def show(self, event: sseclient.Event) -> None:
        if self.progress is None or self.task is None:
            print(event_line(event), file=self.out, flush=True)
            return
        d: dict[str, Any] = event.data
        detail = d.get("message") or (d.get("error") or {}).get("message") or ""
        if d.get("step"):
            detail = f"[{d['step']}] {detail}"
        update: dict[str, Any] = {"phase": d.get("phase", event.event), "detail": detail[:80]}
        if d.get("progress") is not None:
            update["completed"] = float(d["progress"])
        if event.event == "succeeded":
            update["completed"] = 100.0
        self.progress.update(self.task, **update)
        if event.event in ("succeeded", "failed", "cancelled"):
            self.progress.refresh()

    def note(self, text: str) -> None:
        """A message beside the bar (on stderr when piped)."""
        if self.progress is not None:
            self.progress.console.print(text, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.progress is not None:
            self.progress.stop()
