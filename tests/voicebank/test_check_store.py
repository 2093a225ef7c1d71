"""The fetch-check store (clip_checks) on both databases: the upsert keeps a cached MD5 a new
check does not bring, and statuses join each clip with its latest check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.s3_server import stock
from voicebank.catalogue import Catalogue
from voicebank.check_store import CheckStore
from voicebank.checks import CheckResult
from voicebank.storage.local import LocalStorage


def _check(clip_id: int, ok: bool, at: datetime, reason: str = "") -> CheckResult:
    return CheckResult(clip_id, f"http://test/media/{clip_id}", ok, 200 if ok else 404, reason, at)


async def test_a_check_replaces_the_last_one_and_keeps_the_md5(engine, tmp_path: Path):
    catalogue = Catalogue(engine, LocalStorage(tmp_path / "media", "http://test/media"))
    six, seven = await stock(catalogue, ["digits/6", "digits/7"])
    checks = CheckStore(engine)
    first = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    await checks.record([_check(six.id, True, first)], {six.id: "a" * 32})
    assert await checks.known_md5s() == {six.id: "a" * 32}

    later = first + timedelta(hours=1)
    await checks.record([_check(six.id, False, later, "gone"), _check(seven.id, True, later)])
    latest = await checks.latest()
    assert {k: (v.ok, v.reason, v.checked_at) for k, v in latest.items()} == {
        six.id: (False, "gone", later),
        seven.id: (True, "", later),
    }
    assert await checks.known_md5s() == {six.id: "a" * 32}  # no MD5 this time: the old one stays
    assert list(await checks.latest([seven.id])) == [seven.id]

    await checks.record([_check(seven.id, True, later)], {seven.id: "b" * 32})
    assert await checks.known_md5s() == {six.id: "a" * 32, seven.id: "b" * 32}
    await catalogue.replace_delivery(six.id, storage_key="clips/x.mp3", sha256="0" * 64, size=1)
    assert await checks.known_md5s() == {seven.id: "b" * 32}  # the old bytes' MD5 is dropped


async def test_statuses_join_clips_with_their_latest_check(engine, tmp_path: Path):
    catalogue = Catalogue(engine, LocalStorage(tmp_path / "media", "http://test/media"))
    six, seven = await stock(catalogue, ["digits/6", "digits/7"])
    checks = CheckStore(engine)
    at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    await checks.record([_check(seven.id, False, at, "gone")], {seven.id: "c" * 32})

    statuses = await checks.clip_statuses()
    assert [(s.clip.id, s.check, s.md5) for s in statuses] == [
        (six.id, None, None),
        (seven.id, _check(seven.id, False, at, "gone"), "c" * 32),
    ]
    assert [s.clip.id for s in await checks.clip_statuses([seven.id])] == [seven.id]
    assert await checks.clip_statuses(voice_id="nobody") == []
    assert await checks.clip_statuses(tenants=["smile"]) == []
