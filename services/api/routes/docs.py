"""``/docs``: the Swagger UI for the OpenAPI document, served from this process.

FastAPI's default page loads Swagger UI's script, stylesheet and icon from a CDN,
so it is blank without internet access. These assets come from the
``swagger-ui-bundle`` package instead.
"""

from __future__ import annotations

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="steep API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
    )


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and its assets; the app must be built with ``docs_url=None``."""
    app.mount(ASSETS_PATH, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), "docs-assets")
    app.include_router(router)
