"""The admin dashboard at `/ui/`: server-rendered pages (Jinja2 + htmx) over the API's service layer.

Its JavaScript and CSS are files of this package (static/, vendored in static/vendor/ with a SHA-256
manifest, refreshed by `python -m uivendor`): nothing is fetched from the network at run time.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def install_ui(app: FastAPI) -> None:
    """Mounts the dashboard's static files and pages on the app."""
    from scheduledjob_api.ui import stream
    from scheduledjob_api.ui.routes import PREFIX, router

    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="ui-static")
    app.include_router(router)
    app.include_router(stream.router)
