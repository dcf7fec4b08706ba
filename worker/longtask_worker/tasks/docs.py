"""A document batch: split text files into chunks and embed each chunk, with per-file progress.

The embedding is a real, dependency-free one (signed feature hashing of word unigrams and
bigrams, L2-normalised), so the example runs anywhere; swap `embed_chunk` for a model call.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import re
from typing import Any

from longtask_worker import sdk

_WORD = re.compile(r"[a-z0-9]+")


def split_chunks(text: str, *, chunk_words: int, overlap: int) -> list[str]:
    """Split text into chunks of `chunk_words` words, consecutive chunks sharing `overlap`."""
    words = text.split()
    step = max(1, chunk_words - overlap)
    return [
        " ".join(words[i : i + chunk_words])
        for i in range(0, max(len(words) - overlap, 1), step)
        if words[i : i + chunk_words]
    ]


def embed_chunk(chunk: str, *, dims: int) -> list[float]:
    tokens = _WORD.findall(chunk.lower())
    vector = [0.0] * dims
    for feature in (*tokens, *(f"{a} {b}" for a, b in itertools.pairwise(tokens))):
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dims
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [round(v / norm, 6) for v in vector]


def _documents(
    ctx: sdk.TaskContext, directory: str | None, documents: list[dict[str, str]] | None
) -> list[tuple[str, str]]:
    if documents:
        return [(d["name"], d["text"]) for d in documents]
    if directory:
        root = ctx.path(directory)  # inside the worker's files root, or PermanentError
        if not root.is_dir():
            raise sdk.PermanentError(f"directory {directory!r} does not exist on the worker")
        # The listing gives names only; each file is checked and opened in one step, so a
        # link that leads out of the root fails the task (PermanentError) instead of being read.
        found = []
        for p in sorted(root.glob("*.txt")):
            with ctx.open(str(p), "rb") as f:
                found.append((p.name, f.read().decode(errors="replace")))
        return found
    raise sdk.PermanentError("give either params.directory or params.documents")


@sdk.task("docs.embed")
def embed(
    ctx: sdk.TaskContext,
    *,
    directory: str | None = None,
    documents: list[dict[str, str]] | None = None,
    output: str | None = None,
    chunk_words: int = 200,
    overlap: int = 20,
    dims: int = 256,
) -> dict[str, Any]:
    """Chunk and embed every document; write JSON lines to `output` if given.

    `directory` and `output` are paths under the worker's files root (LONGTASK_FILES_ROOT).
    """
    docs = _documents(ctx, directory, documents)
    if not docs:
        raise sdk.PermanentError("no documents to embed")
    chunks_total = 0
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(ctx.open(output, "w")) if output else None
        for i, (name, text) in enumerate(docs):
            ctx.check_cancelled()
            chunks = split_chunks(text, chunk_words=chunk_words, overlap=overlap)
            for n, chunk in enumerate(chunks):
                vector = embed_chunk(chunk, dims=dims)
                if sink:
                    sink.write(json.dumps({"doc": name, "chunk": n, "vector": vector}) + "\n")
            chunks_total += len(chunks)
            ctx.progress(100 * (i + 1) / len(docs), f"{name}: {len(chunks)} chunks", step="embed")
    return {"documents": len(docs), "chunks": chunks_total, "dims": dims, "output": output}
