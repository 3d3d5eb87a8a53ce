"""Serving the dashboard: ``/ui/`` and every page under it answer the same ``index.html``
(the page routes itself with the history API), and its assets come from this package.

The page must learn whether authentication is on without a request that fails (a refused
request is an error in the browser's console), so the server writes it into the page: a
``<script type="application/json" id="cairn-config">`` element, which no browser executes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

HERE: Final = Path(__file__).parent
_CONFIG_SLOT: Final = "<!--cairn-config-->"

# Everything the page loads is its own: no inline script, no other origin. Styles may be
# inline because uPlot positions its cursor and legend with style attributes.
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; connect-src 'self'; frame-ancestors 'none';"
        " base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def routes(*, auth: bool) -> list[BaseRoute]:
    """The dashboard's routes. ``auth``: whether the API asks for tokens."""
    config = json.dumps({"auth": auth})
    # "</" cannot occur in this JSON, so it cannot close the script element early.
    page = (HERE / "index.html").read_text(encoding="utf-8").replace(_CONFIG_SLOT, config, 1)

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers=_SECURITY_HEADERS)

    async def to_index(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=308)

    return [
        Route("/ui", to_index),
        Route("/ui/", index),
        Mount("/ui/assets", StaticFiles(directory=HERE / "assets"), name="ui-assets"),
        Mount("/ui/vendor", StaticFiles(directory=HERE / "vendor"), name="ui-vendor"),
        Route("/ui/{page:path}", index),
    ]
