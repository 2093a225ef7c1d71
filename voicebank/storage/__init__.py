"""Where clip audio lives, behind one small interface (``base.Storage``).

``base`` holds the Protocol and what every backend shares (content-addressed keys, object facts),
``local`` the folder backend, ``s3`` the S3 one (the only module that imports boto3), ``sync``
copies a voice bank between two stores. ``open_storage`` picks a backend from a URI. Nothing here
imports ``server``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from voicebank.errors import StorageError
from voicebank.storage.base import Storage
from voicebank.storage.local import LocalStorage

__all__ = ["open_storage"]


def open_storage(
    uri: str, *, media_base_url: str | None, s3_endpoint_url: str | None = None
) -> Storage:
    """A storage backend from ``file:///path`` or ``s3://bucket/prefix``.

    ``media_base_url`` is the public URL the objects are fetched from: the server's ``/media/``
    for a folder (required), a CDN for S3 (optional; default the bucket's own URL).
    """
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        # Imported here: voicebank.storage.s3 is the only module that imports boto3.
        from voicebank.storage.s3 import S3Storage

        return S3Storage(
            parsed.netloc,
            unquote(parsed.path),
            endpoint_url=s3_endpoint_url,
            media_base_url=media_base_url,
        )
    if parsed.scheme in ("file", "") and uri:
        if not media_base_url:
            raise StorageError(f"storage {uri}: a local folder needs a media base URL")
        path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(uri)
        return LocalStorage(path, media_base_url)
    raise StorageError(
        f"unsupported storage {uri!r}: use file:///path/to/folder or s3://bucket/prefix"
    )
