"""An example package of user tasks: point a worker at it with --tasks acme_tasks.

    PYTHONPATH=examples/tasks longtask worker --tasks acme_tasks

Then `kubectl apply -f examples/acme-wordcount.yaml`.
"""

from __future__ import annotations

import collections
import re

from longtask_worker import sdk

_WORD = re.compile(r"[a-zA-Z']+")


@sdk.task("acme.wordcount")
def wordcount(ctx: sdk.TaskContext, *, texts: list[str], top: int = 5) -> dict[str, object]:
    """Count words over many texts, reporting progress per text; returns the most common."""
    if not texts:
        raise sdk.PermanentError("texts is empty")
    counts: collections.Counter[str] = collections.Counter()
    for i, text in enumerate(texts):
        ctx.check_cancelled()
        counts.update(w.lower() for w in _WORD.findall(text))
        ctx.progress(100 * (i + 1) / len(texts), f"counted text {i + 1} of {len(texts)}", step="count")
    return {"words": sum(counts.values()), "top": counts.most_common(top)}
