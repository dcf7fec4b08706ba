"""A multi-step, agent-style pipeline: plan → execute → summarize, each with its own progress.

Retrieval and summarising are real (TF-IDF scoring, extractive summary) and local, so
the example needs no model; each step is where a model call would go.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from longtask_worker import sdk

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "how",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "to",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
    ]
)


def _terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def plan(question: str) -> list[str]:
    """Split a question into sub-queries: its clauses, or else its key terms."""
    parts = [p.strip() for p in re.split(r"\band\b|[,;?]", question) if _terms(p)]
    return parts or [question]


def score(query: str, sentences: list[str]) -> list[tuple[float, str]]:
    docs = [Counter(_terms(s)) for s in sentences]
    df = Counter(t for d in docs for t in d)
    n = len(docs)
    ranked = []
    for sentence, tf in zip(sentences, docs, strict=True):
        s = sum(tf[t] * math.log((n + 1) / (df[t] + 0.5)) for t in _terms(query) if t in tf)
        ranked.append((s, sentence))
    return sorted(ranked, key=lambda pair: -pair[0])


@sdk.task("agent.research")
def research(ctx: sdk.TaskContext, *, question: str, corpus: list[str], per_query: int = 2) -> dict[str, Any]:
    """Answer `question` from `corpus` (a list of texts) in three visible steps."""
    if not corpus:
        raise sdk.PermanentError("corpus is empty")
    ctx.progress(5, "planning sub-queries", step="plan")
    queries = plan(question)
    ctx.progress(20, f"{len(queries)} sub-queries", step="plan")
    sentences = [s for text in corpus for s in _SENTENCE.split(text) if s.strip()]
    findings: list[str] = []
    for i, query in enumerate(queries):
        ctx.check_cancelled()
        best = [s for sc, s in score(query, sentences)[:per_query] if sc > 0]
        findings.extend(s for s in best if s not in findings)
        ctx.progress(20 + 60 * (i + 1) / len(queries), f"searched: {query}", step="execute")
    ctx.progress(90, "summarizing", step="summarize")
    summary = " ".join(findings[:5]) or "Nothing in the corpus answers the question."
    ctx.progress(100, "done", step="summarize")
    return {"question": question, "queries": queries, "summary": summary, "evidence": len(findings)}
