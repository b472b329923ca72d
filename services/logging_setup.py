"""Logging for steep's processes: one handler on the root logger, plain text or JSON lines.

Records carry context fields (``job_id`` and ``attempt`` while a worker runs a job,
``request_id`` while the API serves a request). ``log_context`` sets them for a
block of code, and the handler's ``ContextFilter`` copies them onto every record
written inside the block, also by libraries. Context variables do not pass to
new threads: a thread that logs for a job starts inside ``contextvars.copy_context()``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from services.settings import Settings

__all__ = [
    "CONTEXT_FIELDS",
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "log_context",
]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
# The context fields a record may carry, in the order the formatters write them.
CONTEXT_FIELDS = ("job_id", "attempt", "request_id")

_context: ContextVar[dict[str, Any] | None] = ContextVar("steep_log_context", default=None)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every record logged in this context until the block ends.

    Raises:
        ValueError: a field is not one of ``CONTEXT_FIELDS``.
    """
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(
            f"log context fields must be among {', '.join(CONTEXT_FIELDS)}, got "
            f"{', '.join(sorted(unknown))}"
        )
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the fields of the current ``log_context`` onto each record; drops no record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_context.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _context_of(record: logging.LogRecord) -> dict[str, Any]:
    return {
        name: getattr(record, name)
        for name in CONTEXT_FIELDS
        if getattr(record, name, None) is not None
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, process, message, the context
    fields the record carries, and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
            **_context_of(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, followed by the record's context fields as ``name=value``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = _context_of(record)
        if not context:
            return line
        return line + " [" + " ".join(f"{name}={value}" for name, value in context.items()) + "]"


def configure_logging(settings: Settings) -> None:
    """Send every logger's records at ``settings.log_level`` or above to stderr.

    Calling it again replaces the handler, so a process can reconfigure after fork.

    Raises:
        ValueError: ``settings.log_level`` is not a logging level name.
    """
    level = settings.log_level.upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(
            f"log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got "
            f"{settings.log_level!r}"
        )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_json else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Warnings (Celery's SecurityWarning, say) become log records in the same format.
    logging.captureWarnings(True)
