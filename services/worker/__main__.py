"""Run a Celery worker for steep's jobs: ``python -m services.worker worker [celery options]``.

``steep worker`` and ``steep serve`` start workers this way, in a new process,
so that the BLAS thread variables they set apply before NumPy loads.
"""

from __future__ import annotations

import sys

import services.worker.tasks  # noqa: F401  (registers the task with every Celery app)
from services.logging_setup import configure_logging
from services.settings import get_settings
from services.worker.celery_app import celery_app


def main(argv: list[str]) -> int:
    """Run the Celery command line with ``argv`` on steep's app; return its exit code."""
    # Celery warns (running as root, say) before it sets up logging, so logging is
    # configured first and those warnings get the configured format too.
    configure_logging(get_settings())
    exit_code = celery_app().start(argv)
    return int(exit_code or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
