"""Errors of the voice bank, translated to HTTP statuses or exit codes only at the edges.

VoiceBankError
 +-- IngestError          an uploaded file was rejected; names the file and the reason (422)
 |    +-- SplitError      a long take did not split into its script's phrases (422)
 +-- DecodeError          bytes no decoder accepts (ingest and render translate it, with context)
 +-- RenderError          a plan could not be rendered
 |    +-- ClipUnavailable a clip's master could not be loaded or decoded; names the clip id
 |    +-- TtsError        text-to-speech failed for a Say segment
 +-- StorageError         the clip store failed (503)
 |    +-- ObjectMissing   a stored object is gone (404)
 +-- CatalogueError       the clip catalogue refused an operation (e.g. unknown voice or clip)

Every class carries ``status``, a hint for the HTTP edge; nothing in this package uses it.
"""

from __future__ import annotations


class VoiceBankError(Exception):
    """Base of every voice-bank error."""

    status = 500


class IngestError(VoiceBankError):
    """An uploaded file was rejected; nothing was stored.

    ``str(err)`` reads ``"greeting.wav: clipped: 3.2% of samples at full scale"``: the file name,
    then a short reason a person can act on.
    """

    status = 422

    def __init__(self, filename: str, reason: str) -> None:
        super().__init__(f"{filename}: {reason}")
        self.filename = filename
        self.reason = reason


class SplitError(IngestError):
    """A long take's phrases did not match its script; nothing was stored.

    A subclass of IngestError because it is the same kind of failure (this upload cannot be
    used), so callers that report rejected uploads need only one ``except``.
    """


class DecodeError(VoiceBankError):
    """Bytes that no decoder accepts: corrupt, truncated or not audio at all."""

    status = 422


class RenderError(VoiceBankError):
    """A plan could not be rendered."""


class ClipUnavailable(RenderError):
    """A clip named by the plan could not be loaded or decoded (our data, so a server error)."""

    def __init__(self, clip_id: str, reason: str) -> None:
        super().__init__(f"clip {clip_id!r} is unavailable: {reason}")
        self.clip_id = clip_id
        self.reason = reason


class TtsError(RenderError):
    """Text-to-speech failed (the engine crashed, timed out or produced no audio)."""


class StorageError(VoiceBankError):
    """The clip store could not be read or written."""

    status = 503


class ObjectMissing(StorageError):
    """An object the catalogue refers to is not in the store."""

    status = 404


class CatalogueError(VoiceBankError):
    """The catalogue refused an operation (unknown voice, clip or variant)."""

    status = 422
