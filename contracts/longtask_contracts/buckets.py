"""Histogram buckets shared by every component's Prometheus metrics; no I/O here.

Tasks run from milliseconds (a no-op) to hours (a corpus refresh), so one set of buckets
spans 5 ms to 12 h; every histogram of longtask uses it, so panels can compare them.
"""

from __future__ import annotations

SECONDS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
)  # fmt: skip
