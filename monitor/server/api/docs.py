"""GET /docs: Swagger UI served from the installed ``swagger-ui-bundle-v2`` package.

FastAPI's own /docs page loads Swagger UI from a CDN: blank where the server has no internet, and
whatever the CDN serves runs with the page's origin. Here the page, its script and its stylesheet
come from this server. There is no /redoc (no package ships ReDoc's standalone build for us).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def swagger_ui_dir() -> Path:
    """The folder of Swagger UI's distribution files inside the installed package."""
    from swagger_ui_bundle import swagger_ui_path

    return Path(swagger_ui_path)


def install(app: FastAPI) -> None:
    """Serve /docs and its assets on ``app``."""
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_dir()), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
        )
