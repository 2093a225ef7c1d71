"""The Asterisk importer names spelled letters apart from words: letters/a is "letter A", never
the article "a" (a 543 ms spelled letter played in "a reminder")."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, time
from pathlib import Path

import pytest

from prompts.models import ClipSegment
from prompts.planner import plan_message
from prompts.text import tokens_key
from voicebank.asterisk import (
    DEFAULT_SOUNDS,
    TRANSCRIPT_PLACES,
    find_sounds,
    parse_transcripts,
    read_transcript_file,
    sound_transcript,
)
from voicebank.catalogue import Catalogue
from voicebank.importer import import_sounds
from voicebank.storage.local import LocalStorage

pytestmark = pytest.mark.skipif(
    not (DEFAULT_SOUNDS / "letters" / "a.wav").is_file() or not TRANSCRIPT_PLACES[0].is_file(),
    reason="asterisk-core-sounds-en-wav is not installed (make setup installs it)",
)

ALPHABET = "abcdefghijklmnopqrstuvwxyz"
DAY = date(2026, 12, 7)


@pytest.fixture
async def catalogue(engine, tmp_path: Path) -> Catalogue:
    cat = Catalogue(engine, LocalStorage(tmp_path / "media", "http://test/media"))
    await cat.ensure_voice("allison", "Allison")
    return cat


def test_spelled_letters_get_their_own_names_and_words_keep_theirs():
    transcripts = read_transcript_file(TRANSCRIPT_PLACES[0])
    for letter in ALPHABET:
        assert transcripts[f"letters/{letter}"] == f"letter {letter.upper()}"
    assert transcripts["digits/a-m"] == "A.M."
    assert transcripts["digits/at"] == "at"
    assert transcripts["letters/dot"] == "dot [.]"  # a symbol's name is a word: kept
    # No ordinary word of one letter is a clip any more ("a", "i", "o").
    single = {k: v for k, v in transcripts.items() if len(tokens_key(v)) == 1}
    assert not [v for v in single.values() if len(tokens_key(v)[0]) == 1]
    # Only the letters folder's single letters are renamed, and the rule is idempotent.
    assert parse_transcripts("letters/a: a\nletters/at: at [@]\nvm-a: a") == {
        "letters/a": "letter A",
        "letters/at": "at [@]",
        "vm-a": "a",
    }
    assert sound_transcript("letters/a", "letter A") == "letter A"
    assert sound_transcript("letters/q", "Q.") == "letter Q"


async def test_after_import_the_article_is_not_the_spelled_letter(catalogue: Catalogue):
    transcripts = read_transcript_file(TRANSCRIPT_PLACES[0])
    entries = list(find_sounds(DEFAULT_SOUNDS, transcripts, ("letters/", "digits/at", "hello")))
    report = await import_sounds(catalogue, "allison", entries)
    assert not report.rejected
    clips = {c.original_name: c for c in await catalogue.list_clips("allison")}
    # Every spelled letter is still imported, under its own name.
    for letter in ALPHABET:
        clip = clips[f"letters/{letter}.wav"]
        assert clip.transcript == f"letter {letter.upper()}"
    index = await catalogue.clip_index("allison")
    assert ("letter", "a") in index and ("a",) not in index and ("i",) not in index
    letter_a = index.get(("letter", "a"))[0].clip_id
    plan = plan_message("Hello, a reminder at {t:time}.", {"t": time(16, 47)}, index, today=DAY)
    played = {s.clip_id for s in plan.segments if isinstance(s, ClipSegment)}
    assert letter_a not in played
    assert "a reminder" in plan.missing
    # A re-run changes nothing, and an entry that still says "a" goes in as the letter too.
    again = await import_sounds(catalogue, "allison", entries)
    assert not again.added and not again.rejected
    old_style = [replace(e, transcript="a") for e in entries if e.name == "letters/a"]
    third = await import_sounds(catalogue, "allison", old_style)
    assert [r.transcript for r in third.results] == ["letter A"] and third.unchanged
    assert ("a",) not in await catalogue.clip_index("allison")
