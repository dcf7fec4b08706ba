"""Plain values out of Redis replies, which are bytes or str depending on how a client decodes.

Pure conversions, no I/O: every component that reads Redis raw (decode_responses off, as the
fast paths do) turns replies into text here, the same way.
"""

from __future__ import annotations


def text(value: object) -> str:
    """`value` as text: bytes decoded as UTF-8, anything else through str()."""
    return value.decode() if isinstance(value, bytes) else str(value)


def text_or_none(value: object) -> str | None:
    """Like text(), but a missing value (None: no such key or field) stays None."""
    return None if value is None else text(value)
