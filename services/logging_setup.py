"""Logging for steep's processes: one handler on the root logger, plain text or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from services.settings import Settings

__all__ = ["JsonFormatter", "configure_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, process, message, and traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


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
    handler.setFormatter(JsonFormatter() if settings.log_json else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
