"""The clip catalogue and importers, on real Asterisk recordings and a real database."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from prompts.models import Variant
from voicebank.asterisk import (
    DEFAULT_SOUNDS,
    TRANSCRIPT_PLACES,
    find_sounds,
    parse_transcripts,
    read_transcript_file,
)
from voicebank.catalogue import Catalogue
from voicebank.errors import CatalogueError, SplitError, StorageError
from voicebank.importer import add_file, add_take, import_sounds, transcript_from_filename
from voicebank.storage.base import content_key
from voicebank.storage.local import LocalStorage

pytestmark = pytest.mark.skipif(
    not (DEFAULT_SOUNDS / "digits" / "1.wav").is_file(),
    reason="asterisk-core-sounds-en-wav is not installed (make setup installs it)",
)


def sound(name: str) -> bytes:
    return (DEFAULT_SOUNDS / f"{name}.wav").read_bytes()


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "media", "http://test/media")


@pytest.fixture
async def catalogue(engine, storage) -> Catalogue:
    cat = Catalogue(engine, storage)
    await cat.ensure_voice("allison", "Allison")
    return cat


def stored_files(storage: LocalStorage) -> list[Path]:
    return sorted(p for p in storage.root.rglob("*") if p.is_file())


def test_transcript_list_is_parsed_and_typos_fixed():
    text = (
        "digits/h-40: fourtieth\ndigits/a-m: A.M.\nbeep: [this is a simple beep tone]\n"
        "silence/1: (1 second of silence)\nnoise\n"
    )
    assert parse_transcripts(text) == {"digits/h-40": "fortieth", "digits/a-m": "A.M."}


def test_the_debian_pack_maps_names_to_words():
    transcripts = read_transcript_file(TRANSCRIPT_PLACES[0])
    assert transcripts["digits/h-12"] == "twelfth"
    assert transcripts["digits/mon-10"] == "November"
    assert transcripts["digits/h-40"] == "fortieth"
    digits = list(find_sounds(DEFAULT_SOUNDS, transcripts, ("digits/",)))
    assert len(digits) == 94 and all(e.path.suffix == ".wav" for e in digits)


@pytest.mark.parametrize(
    ("filename", "words", "variant"),
    [
        ("your-appointment-with.wav", "your appointment with", Variant.ANY),
        ("thank_you.final.mp3", "thank you", Variant.FINAL),
        ("is at.CONTINUING.flac", "is at", Variant.CONTINUING),
    ],
)
def test_transcript_from_filename(filename, words, variant):
    assert transcript_from_filename(filename) == (words, variant)


async def test_import_stores_clips_and_a_rerun_changes_nothing(catalogue, storage):
    transcripts = read_transcript_file(TRANSCRIPT_PLACES[0])
    entries = [
        e
        for e in find_sounds(DEFAULT_SOUNDS, transcripts, ("digits/",))
        if e.name in ("digits/1", "digits/h-12", "digits/a-m")
    ]
    seen: list[str] = []
    report = await import_sounds(catalogue, "allison", entries, progress=seen.append)
    assert seen == ["digits/1", "digits/a-m", "digits/h-12"]
    assert len(report.added) == 3 and not report.rejected
    clips = await catalogue.list_clips("allison")
    assert sorted(c.transcript for c in clips) == ["A.M.", "one", "twelfth"]
    for c in clips:
        assert storage.exists(c.storage_key) and storage.exists(c.master_key)
        mp3 = storage.get(c.storage_key)
        assert mp3.startswith(b"ID3") or (mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0)
        assert abs(c.lufs - -19.0) <= 1.0
    again = await import_sounds(catalogue, "allison", entries)
    assert len(again.unchanged) == 3 and not again.added
    assert len(await catalogue.list_clips("allison", include_replaced=True)) == 3


async def test_a_new_take_replaces_the_old_one_and_keeps_it(catalogue, storage):
    first = await add_file(catalogue, "allison", "one.wav", sound("digits/1"), "one")
    second = await add_file(catalogue, "allison", "one-again.wav", sound("digits/2"), "one")
    assert first.clip and second.clip and first.clip.id != second.clip.id
    history = await catalogue.history("allison", "One.")
    assert [h.id for h in history] == [second.clip.id, first.clip.id]
    assert history[0].current and not history[1].current
    assert history[1].replaced_by == second.clip.id
    # Old audio stays: Twilio may still hold its URL, and it can be restored.
    assert storage.exists(first.clip.storage_key)
    index = await catalogue.clip_index("allison")
    assert [e.clip_id for e in index.get(("one",))] == [str(second.clip.id)]


async def test_variants_are_separate_takes(catalogue):
    a = await add_file(
        catalogue, "allison", "a.wav", sound("digits/1"), "one", variant=Variant.CONTINUING
    )
    b = await add_file(
        catalogue, "allison", "b.wav", sound("digits/1"), "one", variant=Variant.FINAL
    )
    assert a.clip and b.clip and a.clip.current and b.clip.current
    index = await catalogue.clip_index("allison")
    assert {e.variant for e in index.get(("one",))} == {Variant.CONTINUING, Variant.FINAL}


async def test_rejected_file_changes_nothing(catalogue, storage):
    await add_file(catalogue, "allison", "one.wav", sound("digits/1"), "one")
    before = stored_files(storage)
    result = await add_file(catalogue, "allison", "broken.wav", b"RIFF\x00\x00garbage", "one")
    assert not result.ok and result.error and result.error.startswith("broken.wav: ")
    assert stored_files(storage) == before
    current = await catalogue.list_clips("allison")
    assert [c.original_name for c in current] == ["one.wav"]


async def test_tenant_takes_hide_shared_ones_for_that_tenant_only(catalogue):
    shared = await add_file(catalogue, "allison", "s.wav", sound("digits/1"), "one")
    own = await add_file(catalogue, "allison", "t.wav", sound("digits/2"), "one", tenant="smile")
    assert shared.clip and own.clip
    smile = await catalogue.clip_index("allison", "smile")
    other = await catalogue.clip_index("allison", "other")
    assert [e.clip_id for e in smile.get(("one",))] == [str(own.clip.id)]
    assert [e.clip_id for e in other.get(("one",))] == [str(shared.clip.id)]
    assert smile.get(("one",))[0].url == f"http://test/media/{own.clip.storage_key}"


async def test_unknown_voice_is_a_clear_error(engine, storage):
    cat = Catalogue(engine, storage)
    result = await add_file(cat, "nobody", "one.wav", sound("digits/1"), "one")
    assert result.error and "unknown voice 'nobody'" in result.error


async def test_a_long_take_splits_into_one_clip_per_line(catalogue):
    from tests.support.audio import take_from_sounds

    names = ["digits/1", "digits/2", "digits/3"]
    take = take_from_sounds(names, gap_ms=700)
    records = await add_take(catalogue, "allison", "take.wav", take, ["one", "", "two", "three"])
    assert [r.transcript for r in records] == ["one", "two", "three"]
    assert all(r.source == "split" for r in records)
    with pytest.raises(SplitError, match="found 3"):
        await add_take(catalogue, "allison", "take.wav", take, ["one", "two"])
    assert len(await catalogue.list_clips("allison", include_replaced=True)) == 3


def test_storage_keys_are_content_addressed_and_stay_inside(tmp_path):
    store = LocalStorage(tmp_path, "http://x/media")
    key = content_key("clips", b"abc", "mp3")
    assert key == ("clips/ba/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad.mp3")
    store.put(key, b"abc", "audio/mpeg")
    store.put(key, b"abc", "audio/mpeg")  # idempotent
    assert store.get(key) == b"abc" and store.url(key) == f"http://x/media/{key}"
    assert not list(tmp_path.rglob(".tmp-*"))
    with pytest.raises(StorageError, match="escapes"):
        store.get("../secret")


async def test_unknown_clip_id(catalogue):
    with pytest.raises(CatalogueError, match="no clip with id 99"):
        await catalogue.get_clip(99)


async def test_two_files_with_the_same_words_import_once_and_reruns_are_stable(catalogue):
    transcripts = read_transcript_file(TRANSCRIPT_PLACES[0])
    entries = [
        e
        for e in find_sounds(DEFAULT_SOUNDS, transcripts)
        if e.name in ("auth-thankyou", "digits/7")
    ]
    # A second file that says "Thank you." too (the pack has several such pairs).
    twin = replace(entries[0], name="zz-thank-you-again")
    first = await import_sounds(catalogue, "allison", [*entries, twin])
    assert len(first.added) == 2
    assert [r.skipped for r in first.skipped] == ["same words as auth-thankyou.wav"]
    again = await import_sounds(catalogue, "allison", [*entries, twin])
    assert not again.added and len(again.unchanged) == 2 and len(again.skipped) == 1
    assert len(await catalogue.list_clips("allison", include_replaced=True)) == 2
