"""``GET /media/{key}``: clip audio from the local folder, the way a CDN would serve it.

Content-addressed keys never change content, so responses are cacheable forever; aiohttp's
FileResponse gives ETag, Last-Modified, conditional requests and Range support.
"""

from __future__ import annotations

from aiohttp import web

from server.keys import runtime_key
from voicebank.errors import StorageError
from voicebank.storage.base import CACHE_CONTROL, CONTENT_TYPES
from voicebank.storage.local import LocalStorage

routes = web.RouteTableDef()


@routes.get("/media/{key:.+}")
async def media(request: web.Request) -> web.StreamResponse:
    storage = request.app[runtime_key].storage
    if not isinstance(storage, LocalStorage):
        raise web.HTTPNotFound(text="media are served by the object store, not this server")
    key = request.match_info["key"]
    try:
        path = storage.path(key)
    except StorageError:
        raise web.HTTPNotFound() from None
    if not path.is_file():
        raise web.HTTPNotFound()
    ext = key.rsplit(".", 1)[-1].lower()
    return web.FileResponse(
        path,
        headers={
            "Content-Type": CONTENT_TYPES.get(ext, "application/octet-stream"),
            "Cache-Control": CACHE_CONTROL,
            "Access-Control-Allow-Origin": "*",
        },
    )
