"""The dashboard: static HTML, JavaScript modules and CSS that the API serves at ``/``.

The page has no build step and loads nothing from other hosts; its charts are SVG
drawn by its own code. ``STATIC_DIR`` is the folder of its files.
"""

from pathlib import Path

__all__ = ["STATIC_DIR"]

STATIC_DIR = Path(__file__).parent / "static"
