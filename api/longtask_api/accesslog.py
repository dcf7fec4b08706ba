"""Names the task of an access-log line: a request under /v1/namespaces/NS/tasks/NAME is
about that task, so its JSON line carries namespace and name (longtask_contracts.logs).

It must not log nor change the line's text: it only adds fields to uvicorn's record.
"""

from __future__ import annotations

import logging
import re

_TASK_PATH = re.compile(r"^/v1/namespaces/(?P<namespace>[^/?]+)/(?:tasks|deadletters)(?:/(?P<name>[^/?]+))?")


class TaskPath(logging.Filter):
    """uvicorn.access records carry (client, method, path, http version, status) as args."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3:
            match = _TASK_PATH.match(str(args[2]))
            if match:
                record.longtask_task = {k: v for k, v in match.groupdict().items() if v}
        return True


def install() -> None:
    logging.getLogger("uvicorn.access").addFilter(TaskPath())
