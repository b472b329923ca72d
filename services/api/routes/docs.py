"""``/docs``: the Swagger UI for the OpenAPI document, served from this process.

FastAPI's default page loads Swagger UI's script, stylesheet and icon from a CDN,
so it is blank without internet access. These assets come from the
``swagger-ui-bundle`` package instead. The page starts Swagger UI from a script
file rather than an inline script, so its Content-Security-Policy needs no
``'unsafe-inline'``.

Each route also serves HEAD, with GET's status and headers and no body.
"""

from __future__ import annotations

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"

router = APIRouter(include_in_schema=False)

DOCS_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>steep API</title>
  <link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
  <link rel="icon" href="{ASSETS_PATH}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
  <script src="/docs/start.js"></script>
</body>
</html>
"""

# validatorUrl null: Swagger UI would otherwise show a badge image from
# validator.swagger.io, a request to another host that the page's policy blocks.
START_SCRIPT = """\
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""


@router.api_route("/docs", methods=["GET", "HEAD"])
def swagger_ui() -> HTMLResponse:
    return HTMLResponse(DOCS_PAGE)


@router.api_route("/docs/start.js", methods=["GET", "HEAD"])
def swagger_ui_start() -> Response:
    return Response(START_SCRIPT, media_type="text/javascript; charset=utf-8")


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and its assets; the app must be built with ``docs_url=None``."""
    app.mount(ASSETS_PATH, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), "docs-assets")
    app.include_router(router)
