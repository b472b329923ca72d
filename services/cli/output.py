"""The console the table-printing commands write to."""

from __future__ import annotations

import sys

from rich.console import Console

__all__ = ["PIPED_WIDTH", "table_console"]

# Output that goes to a pipe or a file has no screen to fit. Rich would assume 80
# columns there and cut the cells of wide tables (job lists) down to a few letters.
PIPED_WIDTH = 200


def table_console(*, soft_wrap: bool = False) -> Console:
    """Return a console on stdout, as wide as the terminal, or PIPED_WIDTH when not on one."""
    width = None if sys.stdout.isatty() else PIPED_WIDTH
    return Console(width=width, soft_wrap=soft_wrap)
