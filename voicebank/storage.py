"""Where clip audio lives, behind one small interface.

Keys are content-addressed (sha256 of the bytes), so a new take gets a new key and a new URL:
Twilio caches media by URL, and nothing is ever overwritten. This module ships the local-folder
backend; other backends implement the same Protocol.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
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


def content_key(kind: str, data: bytes, ext: str) -> str:
    """``kind/ab/abcdef....ext``: the sha256 of the bytes, fanned out over 256 folders."""
    digest = hashlib.sha256(data).hexdigest()
    return f"{kind}/{digest[:2]}/{digest}.{ext}"


class Storage(Protocol):
    """A blob store for clip audio. Implementations must be safe to call from threads."""

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

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
        if path.exists() and path.stat().st_size == len(data):
            return  # content-addressed: same key, same bytes
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

    def url(self, key: str) -> str:
        return f"{self.base_url}/{key}"

    def path(self, key: str) -> Path:
        """The file behind a key (the /media/ route serves it)."""
        return self._path(key)

    def describe(self) -> str:
        return f"local folder {self.root}"


def open_storage(uri: str, *, media_base_url: str) -> Storage:
    """A storage backend from ``file:///path`` (S3 arrives with its own issue)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return LocalStorage(Path(unquote(parsed.path)), media_base_url)
    if parsed.scheme == "" and uri:
        return LocalStorage(Path(uri), media_base_url)
    raise StorageError(f"unsupported storage {uri!r}: use file:///path/to/folder")
