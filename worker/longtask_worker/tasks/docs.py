"""Documents: split text into chunks and embed each chunk, one document or many per call.

Two forms: many documents in one task (`directory` or `documents`, with per-document
progress; examples/embed-docs.yaml), or one document per call (`path` or `text`), which
is the form a batch's items take: each item names its document and gets its own result,
retries and error (examples/embed-docs-batch.yaml, docs/batches.md).
The embedding is a real, dependency-free one (signed feature hashing of word unigrams and
bigrams, L2-normalised), so the example runs anywhere; swap `embed_chunk` for a model call.
It must not touch files outside the worker's files root (ctx.open checks every path).
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
    raise sdk.PermanentError(
        "give params.directory or params.documents (many), or params.path or params.text (one)"
    )


def _one_document(
    ctx: sdk.TaskContext, *, path: str | None, text: str | None, name: str | None
) -> tuple[str, str]:
    """The (name, text) of the one document a call names: a file under the files root, or text."""
    if path is not None and text is not None:
        raise sdk.PermanentError("give either params.path or params.text, not both")
    if text is not None or path is None:
        return (name or "text", text or "")
    with ctx.open(path, "rb") as f:  # inside the worker's files root, or PermanentError
        return (name or path, f.read().decode(errors="replace"))


def _embed_one(
    ctx: sdk.TaskContext,
    *,
    document: tuple[str, str],
    output: str | None,
    chunk_words: int,
    overlap: int,
    dims: int,
) -> dict[str, Any]:
    """One document's result: its name, size in words, chunks and their dimensions."""
    name, text = document
    if not text.split():
        raise sdk.PermanentError(f"document {name!r} has no words")
    chunks = split_chunks(text, chunk_words=chunk_words, overlap=overlap)
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(ctx.open(output, "w")) if output else None
        for n, chunk in enumerate(chunks):
            vector = embed_chunk(chunk, dims=dims)
            if sink:
                sink.write(json.dumps({"doc": name, "chunk": n, "vector": vector}) + "\n")
    return {"name": name, "words": len(text.split()), "chunks": len(chunks), "dims": dims, "output": output}


@sdk.task("docs.embed")
def embed(
    ctx: sdk.TaskContext,
    *,
    directory: str | None = None,
    documents: list[dict[str, str]] | None = None,
    path: str | None = None,
    text: str | None = None,
    name: str | None = None,
    output: str | None = None,
    chunk_words: int = 200,
    overlap: int = 20,
    dims: int = 256,
) -> dict[str, Any]:
    """Chunk and embed the documents; write JSON lines to `output` if given.

    Many documents (`directory` or `documents`): the result counts them all. One document
    (`path`, or `text` with an optional `name`; a batch item's form): the result is that
    document's {name, words, chunks, dims, output}. `directory`, `path` and `output` are
    paths under the worker's files root (LONGTASK_FILES_ROOT).
    """
    if path is not None or text is not None:
        if directory is not None or documents is not None:
            raise sdk.PermanentError("give one document (path or text) or many (directory or documents)")
        document = _one_document(ctx, path=path, text=text, name=name)
        return _embed_one(
            ctx, document=document, output=output, chunk_words=chunk_words, overlap=overlap, dims=dims
        )
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
