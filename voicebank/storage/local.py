"""The local-folder backend: a folder on disk that the server publishes under ``/media/``."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from voicebank.errors import ObjectMissing, StorageError
from voicebank.storage.base import CACHE_CONTROL, ObjectInfo, content_type_for


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
