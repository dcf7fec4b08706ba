"""The `items` command: a batch's items from the gateway (GET .../tasks/{name}/items) and their
printing. It must not start components nor read Redis: the gateway says what each item is."""

from __future__ import annotations

import argparse
import json
from typing import Any

from longtask_cli import taskcmds

PAGE_MAX = 1000  # the gateway's largest page
OUTCOME_CHARS = 80  # a result or error is cut to this in the table (-o json has it whole)
HEADER = f"{'INDEX':>7}  {'PHASE':<10} {'ATTEMPTS':>8}  {'FINISHED':<20}  ERROR / RESULT"


def _outcome(item: dict[str, Any]) -> str:
    if error := item.get("error"):
        text = f"{error.get('type', '')}: {error.get('message', '')}"
    elif "result" in item:
        text = json.dumps(item["result"])
    elif next_at := item.get("nextAttemptAt"):
        text = f"next attempt at {next_at}"
    else:
        text = ""
    return text if len(text) <= OUTCOME_CHARS else text[: OUTCOME_CHARS - 3] + "..."


def row(item: dict[str, Any]) -> str:
    """One table line of an item (the gateway's entry)."""
    return (
        f"{item['index']:>7}  {item['phase']:<10} {item.get('attempts', 0):>8}  "
        f"{item.get('finishedAt') or '-':<20}  {_outcome(item)}"
    ).rstrip()


def items(args: argparse.Namespace) -> int:
    """The batch's items by index (only --phase's), following `continue` to the end or --limit."""
    wanted: int | None = args.limit
    params: dict[str, Any] = {"phase": args.phase} if args.phase else {}
    found: list[dict[str, Any]] = []
    path = f"/v1/namespaces/{args.namespace}/tasks/{args.name}/items"
    with taskcmds.gateway(args) as client:
        while wanted is None or len(found) < wanted:
            params["limit"] = PAGE_MAX if wanted is None else min(PAGE_MAX, wanted - len(found))
            page = taskcmds.answer(client.get(path, params=params))
            if page is None:
                return taskcmds.EXIT_FAILED
            found += page["items"]
            if not page.get("continue"):
                break
            params["continue"] = page["continue"]
    if args.output == "json":
        print(json.dumps(found, indent=2))
        return taskcmds.EXIT_SUCCEEDED
    print(HEADER)
    for item in found:
        print(row(item))
    return taskcmds.EXIT_SUCCEEDED
