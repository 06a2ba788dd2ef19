"""The browser viewer, served by the HTTP twin itself: ``GET /`` is the page, ``/viewer/*`` its
assets (plain HTML, CSS and JavaScript modules in ``services/gateway/viewer/``, no build step,
nothing fetched from elsewhere).

The page is same-origin with the API it calls (``/v1/models``, ``/v1/explain/stream``); its
Content-Security-Policy lets it load and connect to this origin only, so an image dropped on it
goes to this gateway and nowhere else. The gateway keeps no upload: images live in the
request's memory only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response

__all__ = ["ASSETS", "SECURITY_HEADERS", "VIEWER_PATHS", "mount_viewer"]

ASSETS = Path(__file__).with_name("viewer")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_FILES = tuple(sorted(p.name for p in ASSETS.iterdir() if p.suffix in _TYPES))
VIEWER_PATHS = ("/", *(f"/viewer/{name}" for name in _FILES))
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset_route(body: bytes, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def asset() -> Response:
        return Response(body, media_type=media_type, headers=SECURITY_HEADERS)

    return asset


def mount_viewer(app: FastAPI) -> None:
    """``GET /`` and ``GET /viewer/<asset>`` on ``app`` (the assets are read once, here)."""
    for name in _FILES:
        path = ASSETS / name
        route = _asset_route(path.read_bytes(), _TYPES[path.suffix])
        app.add_api_route(f"/viewer/{name}", route, methods=["GET"], include_in_schema=False)
    index = _asset_route((ASSETS / "index.html").read_bytes(), _TYPES[".html"])
    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
