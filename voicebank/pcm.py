"""Decode accepted audio formats to PCM, mix to mono and resample with an anti-aliasing filter.

Formats are recognised from the bytes (magic numbers), not from the file name: browsers and phones
send ``.wav`` files that are really MP3 or AAC. WAV, FLAC, OGG and MP3 decode in-process with
libsndfile (through soundfile); M4A/AAC, and anything libsndfile refuses, goes through ffmpeg via
pydub. That costs a process or two, which is fine at ingest and never happens on the render path.

Resampling uses soxr: pydub's ``set_frame_rate`` (audioop.ratecv) has no anti-alias filter and lets
a 6 kHz tone through a 48k->8k conversion as a 2 kHz alias at full level (research/audio.md §3b).
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr
from numpy.typing import NDArray
from pydub import AudioSegment

from voicebank.errors import DecodeError

Float = NDArray[np.float64]
Int16 = NDArray[np.int16]

#: Rate of masters, delivery MP3s and renders: twice telephone bandwidth is plenty for a voice
#: that ends up on an 8 kHz phone line, and it is one of MP3's native rates.
MASTER_RATE = 22050
ACCEPTED_FORMATS = ("wav", "mp3", "flac", "ogg", "m4a")

# ffmpeg demuxer names for the formats that may need it.
_FFMPEG_FORMATS = {"wav": "wav", "mp3": "mp3", "flac": "flac", "ogg": "ogg", "m4a": "mp4"}


@dataclass(frozen=True)
class Decoded:
    """Decoded audio, full scale = 1.0, shape (frames, channels), at its own rate."""

    samples: Float
    sample_rate: int

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_ms(self) -> float:
        return 1000.0 * self.frames / self.sample_rate


def _mpeg_frame(head: bytes) -> bool:
    """True when ``head`` starts with a plausible MPEG audio frame header (layer I-III)."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    layer = (head[1] >> 1) & 3  # 0 is reserved; ADTS AAC uses it, so AAC is not taken for MP3
    bitrate = head[2] >> 4
    rate = (head[2] >> 2) & 3
    return layer != 0 and bitrate != 0xF and rate != 3


def sniff_format(data: bytes) -> str | None:
    """The accepted format these bytes are in, from magic numbers only; None if unrecognised."""
    head = data[:16]
    if head[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[4:8] == b"ftyp":
        return "m4a"  # ISO BMFF (MP4/M4A/3GP); ffmpeg decodes whatever audio codec is inside
    if head[:3] == b"ID3" and len(data) >= 10:
        # ID3v2: a 10-byte header whose size is "syncsafe" (7 bits per byte), plus an optional
        # 10-byte footer. Some taggers put ID3 in front of FLAC too, so look past it.
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        after = 10 + size + (10 if data[5] & 0x10 else 0)
        return "flac" if data[after : after + 4] == b"fLaC" else "mp3"
    if _mpeg_frame(head):
        return "mp3"
    return None


def guess_format(data: bytes, filename: str) -> str | None:
    """The content's format, or None; the file name only helps with headerless MP3.

    An MP3 without an ID3 tag is a bare stream of frames, and some encoders put junk or padding
    before the first one; for a ``.mp3`` the first 4 KB are searched for a frame header. Any
    other content that its magic number does not identify is refused, whatever its name.
    """
    sniffed = sniff_format(data)
    if sniffed or not filename.lower().endswith(".mp3"):
        return sniffed
    head = data[:4096]
    pos = head.find(b"\xff")
    while 0 <= pos < len(head) - 4:
        if _mpeg_frame(head[pos : pos + 4]):
            return "mp3"
        pos = head.find(b"\xff", pos + 1)
    return None


def _decode_soundfile(data: bytes) -> Decoded:
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        # "Error opening <_io.BytesIO object at 0x...>: Format not recognised." -> the reason.
        raise DecodeError(re.sub(r"^Error opening <[^>]*>: ", "", str(exc))) from exc
    return Decoded(np.ascontiguousarray(samples), int(rate))


def _decode_ffmpeg(data: bytes, fmt: str) -> Decoded:
    # A real file rather than a pipe: MP4s often keep their index (moov) at the end, and ffmpeg
    # cannot seek back in a pipe. mkstemp + unlink rather than NamedTemporaryFile, because
    # ffmpeg opens the path itself.
    fd, path = tempfile.mkstemp(suffix=f".{fmt}", prefix="voicebank-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            seg = AudioSegment.from_file(path, format=_FFMPEG_FORMATS.get(fmt, fmt))
        except FileNotFoundError as exc:
            raise DecodeError(f"{fmt} needs ffmpeg, which is not installed") from exc
        except Exception as exc:  # pydub raises CouldntDecodeError, IndexError, KeyError...
            last = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
            raise DecodeError(f"ffmpeg could not decode it ({last[0][:200]})") from exc
    finally:
        os.unlink(path)
    width = int(seg.sample_width)
    raw = np.array(seg.get_array_of_samples(), dtype=np.float64)
    samples = raw.reshape(-1, int(seg.channels)) / float(1 << (8 * width - 1))
    return Decoded(samples, int(seg.frame_rate))


def decode(data: bytes, fmt: str) -> Decoded:
    """Decode ``data`` (in accepted format ``fmt``); raises DecodeError.

    libsndfile first (in-process, gapless-aware for MP3); ffmpeg for M4A and as a second opinion
    for files libsndfile refuses (e.g. an OGG with a codec libsndfile lacks).
    """
    if fmt == "m4a":
        decoded = _decode_ffmpeg(data, fmt)
    else:
        try:
            decoded = _decode_soundfile(data)
        except DecodeError as first:
            try:
                decoded = _decode_ffmpeg(data, fmt)
            except DecodeError:
                raise first from None
    if decoded.frames == 0 or decoded.channels == 0:
        raise DecodeError("it contains no audio frames")
    if not np.all(np.isfinite(decoded.samples)):
        raise DecodeError("it contains NaN or infinite samples")
    return decoded


def to_mono(samples: Float) -> Float:
    """Average the channels (a mono voice recorded on both sides of a stereo file)."""
    if samples.ndim == 1:
        return samples
    if samples.shape[1] == 1:
        return np.ascontiguousarray(samples[:, 0])
    return np.ascontiguousarray(samples.mean(axis=1))


def resample(x: Float, from_rate: int, to_rate: int) -> Float:
    """Band-limited resampling with soxr (HQ: >100 dB alias rejection, a few ms per 30 s)."""
    if from_rate == to_rate:
        return x
    out: Float = soxr.resample(x, from_rate, to_rate, quality="HQ")
    return out


def to_int16(x: Float) -> Int16:
    """Float (full scale 1.0) -> int16, rounded and saturated; 32768 matches soundfile's reader."""
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def from_int16(x: Int16) -> Float:
    return x.astype(np.float64) / 32768.0
