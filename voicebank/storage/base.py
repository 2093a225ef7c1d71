"""What every storage backend shares: the Protocol, content-addressed keys, object facts.

Keys are content-addressed (sha256 of the bytes), so a new take gets a new key and a new URL:
Twilio caches media by URL, and nothing is ever overwritten. Methods are blocking: async callers
use ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

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
