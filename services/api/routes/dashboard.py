"""``/``: the dashboard page, and ``/dashboard/<file>``: its scripts, styles and icon.

Each route also serves HEAD, with GET's status and headers and no body.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from services.dashboard import STATIC_DIR
from services.errors import NotFound

router = APIRouter(include_in_schema=False)

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Flat lower-case file names only, so no request can name a path outside STATIC_DIR.
_FILE_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\.(?:js|css|svg)")
# Browsers revalidate on every load, so a new release is picked up at once.
_HEADERS = {"Cache-Control": "no-cache"}


@router.api_route("/", methods=["GET", "HEAD"])
def dashboard_page() -> FileResponse:
    return _static_file("index.html")


@router.api_route("/dashboard/{name}", methods=["GET", "HEAD"])
def dashboard_file(name: Annotated[str, Path(max_length=100)]) -> FileResponse:
    """Serve one of the page's files.

    Raises:
        NotFound: the name is not a file of the dashboard.
    """
    if not _FILE_NAME.fullmatch(name) or not (STATIC_DIR / name).is_file():
        raise NotFound(f"dashboard file {name!r} not found")
    return _static_file(name)


def _static_file(name: str) -> FileResponse:
    path = STATIC_DIR / name
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=_HEADERS)
