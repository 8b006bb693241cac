"""The web console at /console: live calls, the callback queue, grammar editing and testing,
analytics and a browser softphone, as static files (plain ES modules, no build step) that
talk to the /v1 API with the token the user enters once.

Only the page is public; everything it shows comes from the API, which checks the token.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
PREFIX = "/console"

# The page loads nothing from elsewhere (the console must work offline): say so, so an
# injected script or a stray third-party URL is refused by the browser.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self' blob:;"
    " connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)


async def _to_index(request: web.Request) -> web.Response:
    raise web.HTTPFound(f"{PREFIX}/")


async def _revalidate(request: web.Request, response: web.StreamResponse) -> None:
    """Console files are small and change with the server: browsers ask again each time
    (a 304 when unchanged) instead of running a stale script against a newer API."""
    if request.path.startswith(f"{PREFIX}/"):
        response.headers.setdefault("Cache-Control", "no-cache")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")


def add_console_routes(app: web.Application) -> None:
    app.router.add_get(PREFIX, _to_index)
    app.router.add_get(f"{PREFIX}/", _index)
    app.router.add_static(f"{PREFIX}/static", STATIC)
    app.on_response_prepare.append(_revalidate)
