"""Encoders, all in-process: the lossless master, the per-clip delivery MP3 and the render MP3.

Two MP3 encoders on purpose (measured in research/audio.md and bench/render.py):

* ``mp3_gapless`` (libsndfile's LAME via soundfile) writes a Xing/Info + LAME tag carrying the
  encoder delay and padding, so players that honour it (ffmpeg on files, mpg123, libsndfile)
  play a clip without the 50-76 ms of extra silence per file an untagged MP3 gets at 22.05 kHz.
  Each clip is <Play>ed on its own, so the tag matters there. It is ~4x slower than lameenc
  (180 vs 43 ms for 30 s at 22.05 kHz), which is irrelevant once per upload.
* ``mp3_fast`` (lameenc, LAME at -q 7, CBR) for renders: one encode per preview, where speed
  matters and a single file pays the encoder delay only once.
"""

from __future__ import annotations

import io

import lameenc
import numpy as np
import soundfile as sf
from numpy.typing import NDArray

Int16 = NDArray[np.int16]

RENDER_BITRATE_KBPS = 48
RENDER_QUALITY = 7  # LAME -q: 2 best .. 7 fastest; speech at 48 kbps loses nothing audible at 7

# mp3_gapless's settings, spelled out: libsndfile's own defaults (VBR at compression level 0.4),
# so clips encoded before they were named here still re-encode to the same bytes (audit repairs).
GAPLESS_BITRATE_MODE = "VARIABLE"
GAPLESS_COMPRESSION_LEVEL = 0.4


def gapless_settings() -> dict[str, str | float]:
    """Everything that decides mp3_gapless's bytes for given PCM and rate.

    Stitched sentences hash this into their keys: a new libsndfile (hence LAME) or new settings
    give new URLs, so Twilio's cache, which is keyed by URL, never serves the old bytes for them.
    """
    return {
        "encoder": "libsndfile",
        "libsndfile": str(sf.__libsndfile_version__),
        "soundfile": str(sf.__version__),  # its wheel bundles libsndfile and LAME
        "format": "MP3/MPEG_LAYER_III",
        "bitrate_mode": GAPLESS_BITRATE_MODE,
        "compression_level": GAPLESS_COMPRESSION_LEVEL,
    }


def flac(pcm: Int16, rate: int) -> bytes:
    """Mono 16-bit FLAC: the lossless master every later render or re-encode starts from."""
    buf = io.BytesIO()
    sf.write(buf, pcm, rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def mp3_gapless(pcm: Int16, rate: int) -> bytes:
    """VBR MP3 with a Xing/Info + LAME gapless tag (soundfile writes it even into memory).

    Deterministic: the same PCM, rate and ``gapless_settings()`` give the same bytes (LAME keeps
    no clock or random state, and libsndfile writes no date or tool tag into an MP3).
    """
    buf = io.BytesIO()
    with sf.SoundFile(
        buf,
        "w",
        samplerate=rate,
        channels=1,
        format="MP3",
        subtype="MPEG_LAYER_III",
        compression_level=GAPLESS_COMPRESSION_LEVEL,
        bitrate_mode=GAPLESS_BITRATE_MODE,
    ) as out:
        out.write(pcm)
    return buf.getvalue()


def mp3_fast(
    pcm: Int16, rate: int, *, bitrate_kbps: int = RENDER_BITRATE_KBPS, quality: int = RENDER_QUALITY
) -> bytes:
    """CBR MP3 through lameenc: no tag, so decoders add ~50 ms of delay plus frame padding."""
    enc = lameenc.Encoder()
    enc.set_channels(1)
    enc.set_in_sample_rate(rate)
    enc.set_out_sample_rate(rate)
    enc.set_bit_rate(bitrate_kbps)
    enc.set_quality(quality)
    enc.silence()  # lameenc prints its banner to stderr otherwise
    return bytes(enc.encode(np.ascontiguousarray(pcm, dtype="<i2").tobytes()) + enc.flush())


def gapless_tag(mp3: bytes) -> tuple[int, int] | None:
    """(encoder delay, padding) in samples from the LAME tag of the first frame, or None."""
    head = mp3[:4096]
    if head[:3] == b"ID3":
        size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
        head = mp3[10 + size : 10 + size + 4096]
    xing = max(head.find(b"Xing"), head.find(b"Info"))
    lame = head.find(b"LAME", xing) if xing >= 0 else -1
    if lame < 0 or lame + 24 > len(head):
        return None
    # LAME tag: 9-byte version string, then 12 bytes up to the 3-byte delay/padding field.
    d = head[lame + 21 : lame + 24]
    return (d[0] << 4) | (d[1] >> 4), ((d[1] & 0x0F) << 8) | d[2]
