"""The web page: / and its two static files, served as they are (no build, nothing fetched elsewhere).

Open to everyone (they hold no data; the page asks for a token and calls the API with it).
A strict Content-Security-Policy allows only this origin's script, style and connections.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)
WEB = Path(__file__).resolve().parent.parent / "web"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_TYPES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(WEB / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/ui/app.js")
async def script() -> FileResponse:
    return FileResponse(WEB / "app.js", media_type=_TYPES["app.js"], headers=HEADERS)


@router.get("/ui/app.css")
async def style() -> FileResponse:
    return FileResponse(WEB / "app.css", media_type=_TYPES["app.css"], headers=HEADERS)
