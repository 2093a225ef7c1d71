"""Import an Asterisk sound pack (e.g. Debian's asterisk-core-sounds-en-wav) as a voice.

The pack's transcript list (``core-sounds-en.txt(.gz)``) has lines ``name: text``; file names such
as ``digits/h-12`` become clips with the transcript "twelfth". Tone files (``[beep tone]``) are
skipped. Spelled letters (``letters/a`` .. ``letters/z``) become "letter A" .. "letter Z", never
the bare letter (see ``SPELLED_LETTER``). The packs are CC-BY-SA-3.0: trimmed and levelled clips
are an adaptation, fine as a development voice; ship your own recordings.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SOUNDS = Path("/usr/share/asterisk/sounds/en")
TRANSCRIPT_PLACES = (
    Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"),
    Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt"),
)
AUDIO_SUFFIXES = (".wav", ".gsm", ".g722", ".ulaw", ".alaw", ".sln", ".mp3", ".flac", ".ogg")

# Known mistakes in the pack's transcript list.
TYPO_FIXES = {"fourtieth": "fortieth"}
# A spelled letter is the letter's name said on its own, not a word: imported as "a" (the pack's
# transcript), letters/a (543 ms, "ay") played for the article in "a reminder", and letters/i
# would play for "I". Its transcript is "letter A" instead: the planner matches clips by their
# tokens, and "letter a" is not a phrase of reminder text, so no ordinary word maps onto a
# spelled letter; something that spells (codes, initials) can still ask for ("letter", "a").
SPELLED_LETTER = re.compile(r"^letters/(?P<letter>[a-z])$")
# Transcripts the planner's rules spell differently from the pack ("A.M." is the token "a.m.").
_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_\-/]+):\s*(?P<text>.*\S)\s*$")


@dataclass(frozen=True)
class SoundEntry:
    name: str
    transcript: str
    path: Path


def _fix(text: str) -> str:
    words = text.split()
    fixed = [
        TYPO_FIXES.get(w.lower().strip(".,"), w) if w.lower().strip(".,") in TYPO_FIXES else w
        for w in words
    ]
    return " ".join(fixed)


def sound_transcript(name: str, text: str) -> str:
    """What a sound of the pack says, as a clip transcript: the list's text with its typos fixed,
    or "letter A" for the spelled letter ``letters/a`` (whose list text is "a")."""
    spelled = SPELLED_LETTER.match(name)
    if spelled and text.strip().lower().rstrip(".") == spelled["letter"]:
        return f"letter {spelled['letter'].upper()}"
    return _fix(text)


def parse_transcripts(text: str) -> dict[str, str]:
    """``name: text`` lines -> {name: text}, typos fixed, tone descriptions dropped, spelled
    letters named "letter A" .. "letter Z"."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        body = m["text"].strip()
        if body[:1] in "[(" and body[-1:] in "])":
            continue  # a tone, a sound effect or a stretch of silence: not speech
        out[m["name"]] = sound_transcript(m["name"], body)
    return out


def find_transcript_file(sounds_dir: Path) -> Path | None:
    for candidate in (
        sounds_dir / "core-sounds-en.txt",
        sounds_dir / "core-sounds-en.txt.gz",
        *TRANSCRIPT_PLACES,
    ):
        if candidate.is_file():
            return candidate
    return None


def read_transcript_file(path: Path) -> dict[str, str]:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return parse_transcripts(raw.decode("utf-8", errors="replace"))


def find_sounds(
    sounds_dir: Path, transcripts: dict[str, str], only: tuple[str, ...] = ()
) -> Iterator[SoundEntry]:
    """Every sound file that has a transcript, in name order (WAV preferred over other codecs).

    ``only`` narrows the set: a name ending in "/" selects a folder ("digits/"), anything else
    one sound ("digits/7", not "digits/70").
    """
    for name in sorted(transcripts):
        if only and not any(name.startswith(p) if p.endswith("/") else name == p for p in only):
            continue
        for suffix in AUDIO_SUFFIXES:
            path = sounds_dir / f"{name}{suffix}"
            if path.is_file():
                yield SoundEntry(name=name, transcript=transcripts[name], path=path)
                break
