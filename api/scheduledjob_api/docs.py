"""Swagger UI and ReDoc served from assets packaged with the API (fastapi-offline's copies of
swagger-ui-dist and redoc's standalone bundle): the docs work in an offline or air-gapped cluster.

Pages: `{base}/docs` (Swagger UI), `{base}/redoc` (ReDoc); assets under `{base}/docs/assets/`. `GET /`
points to them and to the dashboard.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from scheduledjob_api.envelope import respond

ASSETS = Path(fastapi_offline.__file__).parent / "static"


def install_docs(app: FastAPI, base: str) -> None:
    """Mounts the assets and the two pages; the app must be built with docs_url=None, redoc_url=None."""
    assets = f"{base}/docs/assets"
    openapi_url = app.openapi_url or f"{base}/openapi.json"
    redirect_url = f"{base}/docs/oauth2-redirect"
    app.mount(assets, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get(f"{base}/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect_url}",
            swagger_js_url=f"{root}{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{assets}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge from validator.swagger.io
        )

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(f"{base}/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{assets}/favicon.png",
            with_google_fonts=False,
        )


def install_root(app: FastAPI, base: str, ui: str = "/ui/") -> None:
    """`GET /`: a browser (it accepts text/html) is redirected to the dashboard; any other client gets a
    small envelope with the links (dashboard, docs, OpenAPI document, the API), not a bare 404."""
    openapi_url = app.openapi_url or f"{base}/openapi.json"

    @app.get("/", include_in_schema=False, response_model=None)
    async def root(request: Request) -> JSONResponse | RedirectResponse:
        root_path = request.scope.get("root_path", "")
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(f"{root_path}{ui}", status_code=307)
        links = {
            "ui": ui,
            "docs": f"{base}/docs",
            "redoc": f"{base}/redoc",
            "openapi": openapi_url,
            "api": f"{base}/admin/scheduled-jobs",
        }
        return respond(request, {"title": app.title, "links": {k: f"{root_path}{v}" for k, v in links.items()}})
