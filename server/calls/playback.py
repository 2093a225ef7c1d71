"""TwiML played the way Twilio plays it, into PCM: what the line carries to the callee.

The preview renders a call by asking the webhooks' own views for the TwiML of the chosen answer
and playing it here, so what the preview plays is what the call plays (the same files, the
same ``<Say>`` sentences, pauses rounded to Twilio's whole seconds). The verbs, as Twilio
documents them:

* ``<Play>``: the file at the URL, decoded (libsndfile honours an MP3's gapless tag); ``loop``
  times (``loop="0"``, "until the call ends", plays once here). ``<Play digits>``: DTMF tones,
  ``w`` half a second and ``W`` a second of silence.
* ``<Say>``: the local text-to-speech stand-in for Twilio's voice (``loop`` as for Play).
* ``<Pause length>``: silence; ``<Gather>``: its nested verbs, with nobody pressing a key; the
  wait for input after them is not part of the message, so it is not rendered.
* ``<Redirect>``, ``<Hangup>``, ``<Reject>``: the document ends there (a redirect fetches a new
  document: the next turn of the call, not this message).

A URL is fetched by the caller's ``fetch`` (the preview reads our own storage); one that fails
is skipped, as Twilio skips a ``<Play>`` it cannot fetch, and is reported in ``skipped``.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from numpy.typing import NDArray

from voicebank import pcm
from voicebank.render import RENDER_RATE
from voicebank.tts import Tts

Int16 = NDArray[np.int16]

MAX_SECONDS = 15 * 60  # a document that would play longer is cut here
MAX_LOOP = 10
# DTMF: the two frequencies of each key (ITU-T Q.23), 100 ms of tone and 100 ms of silence.
_LOW = {"1": 697, "2": 697, "3": 697, "A": 697, "4": 770, "5": 770, "6": 770, "B": 770}
_LOW |= {"7": 852, "8": 852, "9": 852, "C": 852, "*": 941, "0": 941, "#": 941, "D": 941}
_HIGH = {"1": 1209, "4": 1209, "7": 1209, "*": 1209, "2": 1336, "5": 1336, "8": 1336, "0": 1336}
_HIGH |= {"3": 1477, "6": 1477, "9": 1477, "#": 1477, "A": 1633, "B": 1633, "C": 1633, "D": 1633}
_TONE_MS = 100


@dataclass(frozen=True, slots=True)
class Heard:
    """One verb as the callee heard it, on the call's clock (ms from the document's start)."""

    verb: str  # play, digits, say, pause
    start_ms: int
    end_ms: int
    what: str  # the URL, the keys, the words or the length


@dataclass(frozen=True)
class Playback:
    pcm: Int16
    rate: int
    heard: tuple[Heard, ...]
    skipped: tuple[str, ...]  # URLs that could not be fetched or decoded

    @property
    def duration_ms(self) -> int:
        return round(1000 * self.pcm.size / self.rate)


def decode_file(data: bytes, rate: int) -> Int16:
    """An audio file (MP3 with or without a gapless tag, WAV, FLAC) as mono int16 at ``rate``."""
    samples, sr = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    return pcm.to_int16(pcm.resample(pcm.to_mono(samples), int(sr), rate))


def dtmf(keys: str, rate: int) -> Int16:
    """The tones ``<Play digits>`` sends (w: 0.5 s pause, W: 1 s)."""
    pieces: list[NDArray[np.float64]] = []
    t = np.arange(round(rate * _TONE_MS / 1000)) / rate
    gap = np.zeros(t.size)
    for key in keys:
        if key in "wW":
            pieces.append(np.zeros(rate // 2 if key == "w" else rate))
        elif key.upper() in _LOW:
            k = key.upper()
            pieces += [0.25 * (np.sin(2 * np.pi * _LOW[k] * t) + np.sin(2 * np.pi * _HIGH[k] * t))]
            pieces.append(gap)
    return pcm.to_int16(np.concatenate(pieces)) if pieces else np.zeros(0, np.int16)


def _loops(el: ET.Element) -> int:
    text = el.get("loop", "1")
    count = int(text) if text.isascii() and text.isdigit() else 1
    return min(max(count, 1), MAX_LOOP)


class _Player:
    def __init__(self, fetch: Callable[[str], bytes], tts: Tts, rate: int) -> None:
        self.fetch = fetch
        self.tts = tts
        self.rate = rate
        self.pieces: list[Int16] = []
        self.heard: list[Heard] = []
        self.skipped: list[str] = []
        self.samples = 0
        self.ended = False

    def add(self, verb: str, what: str, x: Int16) -> None:
        room = self.rate * MAX_SECONDS - self.samples
        if room <= 0:
            self.ended = True
            return
        x = x[:room]
        start = round(1000 * self.samples / self.rate)
        self.pieces.append(x)
        self.samples += x.size
        self.heard.append(Heard(verb, start, round(1000 * self.samples / self.rate), what))

    def play(self, el: ET.Element) -> None:
        if el.get("digits"):
            self.add("digits", el.get("digits", ""), dtmf(el.get("digits", ""), self.rate))
            return
        url = (el.text or "").strip()
        try:
            x = decode_file(self.fetch(url), self.rate)
        except Exception:  # noqa: BLE001 - Twilio skips a Play it cannot fetch or decode
            self.skipped.append(url)
            return
        for _ in range(_loops(el)):
            self.add("play", url, x)

    def say(self, el: ET.Element) -> None:
        words = " ".join((el.text or "").split())
        if not words:
            return
        x = self.tts.speak(words)
        if self.rate != RENDER_RATE:  # the stand-in speaks at the render rate
            x = pcm.to_int16(pcm.resample(pcm.from_int16(x), RENDER_RATE, self.rate))
        for _ in range(_loops(el)):
            self.add("say", words, x)

    def pause(self, el: ET.Element) -> None:
        text = el.get("length", "1")
        seconds = int(text) if text.isascii() and text.isdigit() else 1
        self.add("pause", f"{seconds} s", np.zeros(self.rate * min(seconds, 600), np.int16))

    def run(self, parent: ET.Element) -> None:
        for el in parent:
            if self.ended:
                return
            if el.tag == "Play":
                self.play(el)
            elif el.tag == "Say":
                self.say(el)
            elif el.tag == "Pause":
                self.pause(el)
            elif el.tag == "Gather":
                self.run(el)
            elif el.tag in ("Redirect", "Hangup", "Reject"):
                self.ended = True


def play_twiml(doc: str, *, fetch: Callable[[str], bytes], tts: Tts, rate: int) -> Playback:
    """The audio of a TwiML document (see the module docstring); raises ValueError when the
    document is not TwiML."""
    try:
        root = ET.fromstring(doc)
    except ET.ParseError as exc:
        raise ValueError(f"not an XML document: {exc}") from None
    if root.tag != "Response":
        raise ValueError(f"not TwiML: the root element is <{root.tag}>, not <Response>")
    player = _Player(fetch, tts, rate)
    player.run(root)
    audio = np.concatenate(player.pieces) if player.pieces else np.zeros(0, np.int16)
    return Playback(audio, rate, tuple(player.heard), tuple(player.skipped))
