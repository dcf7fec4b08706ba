"""A task module for the worker liveness drill: no tasks, only a way to wedge the worker.

Imported by a worker (`--tasks ...,tests.wedgetasks`), it makes SIGUSR2 block the main
thread of the process that receives it for LONGTASK_TEST_WEDGE_SECONDS (default 10): sent
to the worker's main process, that is Celery's consumer event loop stuck, as in a deadlock,
while the process' other threads (the metrics server) go on. It must not be imported by
anything but a test's worker.
"""

from __future__ import annotations

import os
import signal
import time
from types import FrameType


def _wedge(signum: int, frame: FrameType | None) -> None:
    time.sleep(float(os.environ.get("LONGTASK_TEST_WEDGE_SECONDS", "10")))


signal.signal(signal.SIGUSR2, _wedge)
