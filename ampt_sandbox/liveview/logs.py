"""Log handlers of ``dev``: plain lines, JSON lines, and the buffer the live view draws from.

Only the CLI installs them, on the ``ampt_sandbox`` logger.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections import deque
from typing import TextIO

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def install_handler(handler: logging.Handler, level: str) -> None:
    """Make ``handler`` the only log handler: for ``ampt_sandbox`` at ``level``, for other libraries at WARNING.

    Warnings of other libraries (asyncio's "exception was never retrieved",
    for one) then share the format, instead of reaching stderr as bare text
    that would break JSON lines or draw over the live view.
    """
    package = logging.getLogger("ampt_sandbox")
    package.handlers[:] = [handler]
    package.setLevel(level.upper())
    package.propagate = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


def plain_handler(stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(PLAIN_FORMAT, "%H:%M:%S"))
    return handler


def json_handler(stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    return handler


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: time, level, logger, message, and traceback if any.

    ``time`` is ISO 8601 in UTC with milliseconds. A multi-line message (an
    app's traceback) stays one line because JSON escapes its newlines.
    """

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            body["traceback"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False)


class LogBuffer(logging.Handler):
    """Keeps the latest records for the live view, unformatted until they are drawn.

    Storing a record costs one deque append, so logging every message stays
    cheap at a thousand messages a second. Only the records that fit on the
    screen are ever formatted.
    """

    def __init__(self, capacity: int = 1000) -> None:
        super().__init__()
        self.records: deque[logging.LogRecord] = deque(maxlen=capacity)
        # Grows by one per record, so the view can tell whether to redraw.
        self.version = 0
        self.last_error: logging.LogRecord | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.version += 1
        if record.levelno >= logging.ERROR:
            self.last_error = record
