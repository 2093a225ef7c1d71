"""Where clip audio lives, behind one small interface.

Keys are content-addressed (sha256 of the bytes), so a new take gets a new key and a new URL:
Twilio caches media by URL, and nothing is ever overwritten. This module ships the local-folder
backend; ``voicebank.s3`` implements the same Protocol on S3 (or any S3-compatible store).
Methods are blocking: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from voicebank.errors import ObjectMissing, StorageError

CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "ogg": "audio/ogg",
    "m4a": "audio/mp4",
}
CACHE_CONTROL = "public, max-age=31536000, immutable"


_CONTENT_KEY = re.compile(r"^[a-z]+/([0-9a-f]{2})/(\1[0-9a-f]{62})\.[a-z0-9]+$")


def content_key(kind: str, data: bytes, ext: str) -> str:
    """``kind/ab/abcdef....ext``: the sha256 of the bytes, fanned out over 256 folders."""
    digest = hashlib.sha256(data).hexdigest()
    return f"{kind}/{digest[:2]}/{digest}.{ext}"


def key_digest(key: str) -> str | None:
    """The sha256 a content-addressed key names (so its bytes can be verified), else None."""
    m = _CONTENT_KEY.match(key)
    return m.group(2) if m else None


_MD5_ETAG = re.compile(r'^"?([0-9a-f]{32})"?$')


def etag_md5(etag: str | None) -> str | None:
    """The MD5 an ETag carries (S3 single-part uploads), or None (multipart ``...-N``, weak, other).

    S3 and CDNs passing its ETag through say ``"<md5 hex>"``; aiohttp's file ETags and most web
    servers' contain a dash, so they are never mistaken for one.
    """
    m = _MD5_ETAG.match((etag or "").strip())
    return m.group(1) if m else None


def content_type_for(key: str) -> str:
    return CONTENT_TYPES.get(key.rsplit(".", 1)[-1].lower(), "application/octet-stream")


@dataclass(frozen=True)
class ObjectInfo:
    """What a store says about one object, without its bytes."""

    size: int
    md5: str | None  # hex digest of the bytes, when the store knows it (S3: a single-part ETag)
    content_type: str | None
    cache_control: str | None = None


class Storage(Protocol):
    """A blob store for clip audio. Implementations must be safe to call from threads."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store the bytes, unless the key already holds exactly them (content addressing)."""
        ...

    def replace(self, key: str, data: bytes, content_type: str) -> None:
        """Store the bytes without looking first (the object is known to be missing or bad)."""
        ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def stat(self, key: str) -> ObjectInfo | None:
        """Size, checksum and headers of a stored object; None when it is not there."""
        ...

    def url(self, key: str) -> str:
        """The permanent public URL Twilio fetches the object from."""
        ...

    def describe(self) -> str: ...


class LocalStorage:
    """A folder on disk; the server publishes it under ``/media/``."""

    def __init__(self, root: Path, base_url: str) -> None:
        self.root = root
        self.base_url = base_url.rstrip("/")

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()) or ".." in key.split("/"):
            raise StorageError(f"storage key {key!r} escapes the media folder")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        # Content-addressed: the same key holds the same bytes, unless it was damaged (a repair
        # rewrites it), so compare before skipping; equal sizes are rare otherwise.
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return
        self.replace(key, data, content_type)

    def replace(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a crash never leaves a half-written clip under its real key.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"cannot write {key} under {self.root}: {exc.strerror}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(f"{key} is missing from {self.root}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {key} from {self.root}: {exc.strerror}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {key} from {self.root}: {exc.strerror}") from exc
        # The /media/ route sets these from the extension, so they are what a fetch gets.
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        return ObjectInfo(len(data), md5, content_type_for(key), CACHE_CONTROL)

    def url(self, key: str) -> str:
        return f"{self.base_url}/{key}"

    def path(self, key: str) -> Path:
        """The file behind a key (the /media/ route serves it)."""
        return self._path(key)

    def describe(self) -> str:
        return f"local folder {self.root}"


def open_storage(
    uri: str, *, media_base_url: str | None, s3_endpoint_url: str | None = None
) -> Storage:
    """A storage backend from ``file:///path`` or ``s3://bucket/prefix``.

    ``media_base_url`` is the public URL the objects are fetched from: the server's ``/media/``
    for a folder (required), a CDN for S3 (optional; default the bucket's own URL).
    """
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        # Imported here: voicebank.s3 is the only module that imports boto3.
        from voicebank.s3 import S3Storage

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
