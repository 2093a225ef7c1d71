"""Stitched sentences in the database and in `bank check`: a row per stored sentence, checks of
the public URL and of the stored bytes, repairs by rendering the recipe again.

Real pieces throughout: clips from the Asterisk recordings in the catalogue (SQLite and
PostgreSQL), objects on the loopback S3 server with the delivery bucket policy of docs/storage.md
(``clips/*`` public), and the checker fetching anonymously as Twilio does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.schema import metadata
from tests.support.s3_server import S3, stock
from voicebank import encode
from voicebank.audit import SENTENCE_MISSING, check_sentences, repair_sentences
from voicebank.catalogue import Catalogue
from voicebank.checks import Checker, open_session
from voicebank.render import Renderer
from voicebank.sentence_store import SentenceCheck, SentenceStore
from voicebank.stitch import CatalogueMasters, SentenceRecipe, Stitcher
from voicebank.storage.base import Storage
from voicebank.tts import PlaceholderTts

VOICE = "allison"


class Bank:
    def __init__(self, engine: AsyncEngine, storage: Storage, clip_ids: Sequence[str]) -> None:
        self.catalogue = Catalogue(engine, storage)
        self.storage = storage
        self.clip_ids = list(clip_ids)
        self.sentences = SentenceStore(engine)
        self.masters = CatalogueMasters(self.catalogue)
        self.stitcher = Stitcher(
            storage,
            Renderer(self.masters, tts=PlaceholderTts()),
            recorder=self.sentences.recorder(asyncio.get_running_loop()),
        )

    def recipe(self, *picks: int, tail_ms: int = 400) -> SentenceRecipe:
        clips = tuple(self.clip_ids[i] for i in picks)
        return SentenceRecipe(VOICE, clips, (90,) * (len(clips) - 1), tail_ms, -19.0)

    async def ensure(self, recipe: SentenceRecipe) -> str:
        await self.masters.resolve(recipe.clip_ids)
        return await asyncio.to_thread(self.stitcher.ensure, recipe)

    async def prepare(self, recipe: SentenceRecipe) -> None:
        await self.masters.resolve(recipe.clip_ids)


async def _bank(engine: AsyncEngine, s3: S3) -> Bank:
    catalogue = Catalogue(engine, s3.storage())
    records = await stock(catalogue, ["hello", "digits/3", "goodbye"], voice=VOICE)
    return Bank(engine, catalogue.storage, [str(r.id) for r in records])


def _by_key(checks: Sequence[SentenceCheck]) -> dict[str, SentenceCheck]:
    return {c.key: c for c in checks}


async def test_stored_sentences_are_recorded_checked_and_repaired(engine, s3: S3):
    bank = await _bank(engine, s3)
    lost, altered, mistyped = bank.recipe(0, 1), bank.recipe(1, 2), bank.recipe(2)
    for r in (lost, altered, mistyped, lost):
        assert await bank.ensure(r) == r.key
    assert bank.stitcher.renders == 3

    rows = {r.key: r for r in await bank.sentences.records()}
    assert set(rows) == {lost.key, altered.key, mistyped.key}
    stored = {k: bank.storage.get(k) for k in rows}
    for key, row in rows.items():
        assert (row.size, row.voice_id, row.check) == (len(stored[key]), VOICE, None)
        assert row.recipe.key == key and row.created_at.tzinfo is not None
    assert [r.key for r in await bank.sentences.records("nobody")] == []
    assert await bank.sentences.keys() == sorted(rows)

    async with open_session() as session:
        checker = Checker(session, backoff_s=0.01)
        first = await check_sentences(bank.sentences, bank.storage, checker)
        # Public under clips/, as the delivery bucket policy has it: Twilio can fetch them.
        assert [c.reason for c in first if not c.ok] == [] and len(first) == 3

        # Behind the store's back: one deleted, one changed (same size), one mistyped.
        s3.client.delete_object(Bucket=s3.bucket, Key=s3.object_key(lost.key))
        damaged = bytearray(stored[altered.key])
        damaged[len(damaged) // 2] ^= 0xFF
        for key, body, content_type in (
            (altered.key, bytes(damaged), "audio/mpeg"),
            (mistyped.key, stored[mistyped.key], "text/plain"),
        ):
            s3.client.put_object(
                Bucket=s3.bucket, Key=s3.object_key(key), Body=body, ContentType=content_type
            )
        seen: list[str] = []
        second = _by_key(
            await check_sentences(
                bank.sentences, bank.storage, checker, progress=lambda c: seen.append(c.key)
            )
        )
        assert sorted(seen) == sorted(rows)
        assert not any(c.ok for c in second.values())
        assert SENTENCE_MISSING in second[lost.key].reason
        assert second[lost.key].status in (403, 404)
        assert "checksum: ETag" in second[altered.key].reason
        assert "changed in the store: MD5" in second[altered.key].reason
        assert "Content-Type 'text/plain'" in second[mistyped.key].reason
        latest = {r.key: r.check for r in await bank.sentences.records()}
        assert all(c is not None and not c.ok and c.reason for c in latest.values())

        repairs = {
            r.key: r
            for r in await repair_sentences(
                bank.sentences, bank.stitcher, checker, list(second), prepare=bank.prepare
            )
        }
        assert repairs[lost.key].how == "rendered again from its recipe (identical bytes)"
        assert repairs[altered.key].how == "rendered again from its recipe (identical bytes)"
        assert repairs[mistyped.key].how == "re-uploaded the stored bytes"
        assert all(r.done and r.check is not None and r.check.ok for r in repairs.values())
        assert {k: bank.storage.get(k) for k in rows} == stored
        third = await check_sentences(bank.sentences, bank.storage, checker, voice_id=VOICE)
        assert [c.ok for c in third] == [True] * 3
    assert bank.stitcher.renders == 3  # repairs render, but store nothing new


async def test_a_repair_after_an_encoder_change_keeps_the_url(sqlite_engine, s3: S3, monkeypatch):
    bank = await _bank(sqlite_engine, s3)
    r = bank.recipe(0, 2)
    await bank.ensure(r)
    before = await bank.sentences.get(r.key)
    s3.client.delete_object(Bucket=s3.bucket, Key=s3.object_key(r.key))
    monkeypatch.setattr(encode, "GAPLESS_COMPRESSION_LEVEL", 0.6)
    assert r.key != SentenceRecipe.from_json(r.to_json()).key  # new calls get a new URL ...
    async with open_session() as session:
        checker = Checker(session, backoff_s=0.01)
        [repair] = await repair_sentences(
            bank.sentences, bank.stitcher, checker, [r.key], prepare=bank.prepare
        )
        # ... while the old one, which prepared answers may name, serves the sentence again.
        assert repair.done and "new bytes" in repair.how, repair.how
        assert repair.check is not None and repair.check.ok, repair.check
        after = await bank.sentences.get(r.key)
        assert before is not None and after is not None
        assert after.sha256 != before.sha256 and after.size == len(bank.storage.get(r.key))
        [check] = await check_sentences(bank.sentences, bank.storage, checker)
        assert check.ok, check.reason


async def test_what_cannot_be_repaired_says_why(sqlite_engine, s3: S3):
    bank = await _bank(sqlite_engine, s3)
    r = bank.recipe(1)
    await bank.ensure(r)
    s3.client.delete_object(Bucket=s3.bucket, Key=s3.object_key(r.key))
    [master_key] = (await bank.catalogue.master_keys([int(bank.clip_ids[1])])).values()
    s3.client.delete_object(Bucket=s3.bucket, Key=s3.object_key(master_key))
    fresh = Bank(sqlite_engine, bank.storage, bank.clip_ids)  # `bank check --repair`: cold caches
    async with open_session() as session:
        checker = Checker(session, backoff_s=0.01)
        repairs = await repair_sentences(
            fresh.sentences,
            fresh.stitcher,
            checker,
            [r.key, "clips/sentences/00/none.mp3"],
            prepare=fresh.prepare,
        )
    assert [(x.done, x.check) for x in repairs] == [(False, None), (False, None)]
    assert f"clip {bank.clip_ids[1]!r} is unavailable" in repairs[0].how
    assert repairs[1].how == "no stitched sentence has this key"


async def test_ensure_on_the_event_loop_is_refused(sqlite_engine, s3: S3):
    bank = await _bank(sqlite_engine, s3)
    r = bank.recipe(0)
    await bank.prepare(r)
    with pytest.raises(RuntimeError, match=r"asyncio\.to_thread"):
        bank.stitcher.ensure(r)  # the recorder would wait for the loop it is blocking
    assert not bank.storage.exists(r.key) and await bank.sentences.records() == []


async def test_an_unknown_clip_is_unavailable(sqlite_engine, s3: S3):
    bank = await _bank(sqlite_engine, s3)
    r = SentenceRecipe(VOICE, ("999999",), (), 0, -19.0)
    with pytest.raises(Exception, match="clip 999999 is not in the catalogue"):
        await bank.ensure(r)


async def test_the_migration_makes_the_table_the_schema_describes(engine):
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), metadata)
        )
    assert [d for d in diff if "stitched_sentences" in repr(d)] == []
