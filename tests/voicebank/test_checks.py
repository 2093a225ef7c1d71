"""Fetch checks and repairs: the pure verdict as a table, the checker against loopback servers
(moto's S3 and small aiohttp apps that misbehave on purpose), and `voiceprompt bank check`."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner
from multidict import CIMultiDict

from server.cli.main import main
from server.db.engine import create_engine, upgrade
from tests.support.s3_server import (
    S3,
    closed_port,
    sqlite_url,
    stock,
)
from voicebank import audit
from voicebank.audit import check_clips, repair_clips
from voicebank.catalogue import Catalogue, ClipRecord
from voicebank.check_store import CheckStore
from voicebank.checks import Checker, Target, judge, open_session

MD5 = "5d41402abc4b2a76b9719d911017c592"
OK_HEADERS = {"Content-Type": "audio/mpeg", "Content-Length": "5", "ETag": f'"{MD5}"'}
T = Target(1, "http://x/clip.mp3", 5, MD5)


@pytest.mark.parametrize(
    ("status", "headers", "reason"),
    [
        (200, OK_HEADERS, ""),
        (200, {**OK_HEADERS, "Content-Type": "audio/mpeg; charset=binary"}, ""),
        (206, {"Content-Type": "audio/mpeg", "Content-Range": "bytes 0-0/5"}, ""),
        (200, {**OK_HEADERS, "ETag": '"d41d8cd98f00b204e9800998ecf8427e-2"'}, ""),  # multipart
        (200, {**OK_HEADERS, "ETag": '"5f1e2a0-5"'}, ""),  # aiohttp's own file ETag
        (404, {}, "not found (404)"),
        (403, {}, "not publicly readable"),
        (500, {}, "HTTP 500"),
        (200, {**OK_HEADERS, "Content-Type": "text/html"}, "Content-Type 'text/html'"),
        (200, {**OK_HEADERS, "Content-Type": ""}, "Content-Type 'missing'"),
        (206, {"Content-Type": "audio/mpeg", "Content-Range": "bytes 0-0/3"}, "truncated: 3 bytes"),
        (200, {**OK_HEADERS, "Content-Length": "9"}, "too long: 9 bytes"),
        (200, {"Content-Type": "audio/mpeg"}, "no size in the answer"),
        (416, {"Content-Range": "bytes */0"}, "size 0 bytes, expected 5"),
        (200, {**OK_HEADERS, "ETag": '"00000000000000000000000000000000"'}, "checksum: ETag 0000"),
        (
            206,
            {"Content-Type": "text/plain", "Content-Range": "bytes 0-0/2"},
            "Content-Type 'text/plain', expected 'audio/mpeg'; truncated: 2 bytes, expected 5",
        ),
    ],
)
def test_judge(status, headers, reason):
    got = judge(T, status, headers)
    assert (got == "") if reason == "" else (reason in got), got


def test_an_unknown_md5_is_not_compared():
    assert judge(Target(1, "u", 5), 200, {**OK_HEADERS, "ETag": '"' + "0" * 32 + '"'}) == ""


# -- check_all, with fetches answered from memory ----------------------------------------------
class _Answers(Checker):
    """No network: target ``i`` answers after ``i % 3 + 1`` turns of the loop, so answers come
    back out of order; the URL ``bad`` raises (a bug, not a failed fetch)."""

    def __init__(self, *, bad: str = "", concurrency: int = 4) -> None:
        super().__init__(None, concurrency=concurrency, retries=0)  # type: ignore[arg-type]
        self.bad = bad
        self.fetched: list[str] = []

    async def fetch(self, url: str) -> tuple[int, CIMultiDict[str]]:
        for _ in range(int(url.rsplit("/", 1)[1]) % 3 + 1):
            await asyncio.sleep(0)
        self.fetched.append(url)
        if url == self.bad:
            raise RuntimeError(f"bug while fetching {url}")
        return 200, CIMultiDict({"Content-Type": "audio/mpeg", "Content-Length": "1"})


def _targets(n: int) -> list[Target]:
    return [Target(i, f"http://x/{i}", 1) for i in range(n)]


async def test_check_all_keeps_input_order_and_reports_each_result_once():
    seen: list[int] = []
    results = await _Answers().check_all(_targets(20), progress=lambda r: seen.append(r.clip_id))
    assert [r.clip_id for r in results] == list(range(20))
    assert all(r.ok for r in results)
    assert sorted(seen) == list(range(20)) and seen != list(range(20))  # as they finish
    assert await _Answers().check_all([], progress=lambda r: seen.append(-1)) == []
    assert len(seen) == 20


async def test_an_exception_in_one_check_stops_the_others():
    checker = _Answers(bad="http://x/5")
    seen: list[int] = []
    with pytest.raises(RuntimeError, match="http://x/5"):
        await checker.check_all(_targets(40), progress=lambda r: seen.append(r.clip_id))
    reported, fetched = len(seen), len(checker.fetched)
    for _ in range(200):  # far more turns than the remaining 34 fetches need
        await asyncio.sleep(0)
    await asyncio.sleep(0.002)
    # Nothing goes on behind the caller's back once check_all has raised.
    assert (len(seen), len(checker.fetched)) == (reported, fetched)
    assert reported < 10 and 5 not in seen


# -- against moto -----------------------------------------------------------------------------
@pytest.fixture
async def bank(s3: S3, engine) -> tuple[Catalogue, list[ClipRecord]]:
    """Four clips on S3, on SQLite and PostgreSQL (check results are upserted per dialect)."""
    catalogue = Catalogue(engine, s3.storage())
    return catalogue, await stock(catalogue, ["digits/6", "digits/7", "digits/8", "digits/9"])


@pytest.fixture
async def small_bank(s3: S3, sqlite_engine) -> tuple[Catalogue, list[ClipRecord]]:
    catalogue = Catalogue(sqlite_engine, s3.storage())
    return catalogue, await stock(catalogue, ["digits/6"])


def _behind_the_back(s3: S3, key: str, body: bytes, content_type: str = "audio/mpeg") -> None:
    s3.client.put_object(
        Bucket=s3.bucket, Key=s3.object_key(key), Body=body, ContentType=content_type
    )


async def test_deleted_mistyped_truncated_and_altered_objects_are_reported(bank, s3: S3):
    catalogue, (six, seven, eight, nine) = bank
    records = [six, seven, eight, nine]
    async with open_session() as session:
        checker = Checker(session, backoff_s=0.01)
        first = await check_clips(catalogue, checker, records)
        assert [r.reason for r in first] == ["", "", "", ""]
        assert all(r.ok and r.status == 206 for r in first)  # moto refuses anonymous HEAD

        mp3 = {r.id: catalogue.storage.get(r.storage_key) for r in records}
        s3.client.delete_object(Bucket=s3.bucket, Key=s3.object_key(six.storage_key))
        _behind_the_back(s3, seven.storage_key, mp3[seven.id], "binary/octet-stream")
        _behind_the_back(s3, eight.storage_key, mp3[eight.id][:-100])
        altered = bytearray(mp3[nine.id])
        altered[-1] ^= 0xFF
        _behind_the_back(s3, nine.storage_key, bytes(altered))

        results = {r.clip_id: r for r in await check_clips(catalogue, checker, records)}
    assert "not found (404)" in results[six.id].reason
    assert "Content-Type 'binary/octet-stream', expected 'audio/mpeg'" in results[seven.id].reason
    assert f"truncated: {eight.size - 100} bytes, expected {eight.size}" in results[eight.id].reason
    assert "checksum: ETag" in results[nine.id].reason
    assert not any(r.ok for r in results.values())
    stored = await CheckStore(catalogue.engine).latest()
    assert {k: (v.ok, v.reason) for k, v in stored.items()} == {
        k: (v.ok, v.reason) for k, v in results.items()
    }


async def test_a_damaged_object_is_found_on_the_first_check_too(small_bank, s3: S3):
    catalogue, (six,) = small_bank
    data = bytearray(catalogue.storage.get(six.storage_key))
    data[-1] ^= 0xFF
    _behind_the_back(s3, six.storage_key, bytes(data))
    async with open_session() as session:
        (result,) = await check_clips(catalogue, Checker(session), [six])
    assert not result.ok and "damaged in the store" in result.reason


async def test_repair_puts_the_exact_bytes_back(s3: S3, sqlite_engine):
    catalogue = Catalogue(sqlite_engine, s3.storage())
    six, seven, eight, nine = await stock(
        catalogue, ["digits/6", "digits/7", "digits/8", "digits/9"]
    )
    storage = catalogue.storage
    originals = {r.id: storage.get(r.storage_key) for r in (six, seven, eight)}
    storage.delete(six.storage_key)  # the master is there: encode it again
    storage.delete(seven.storage_key)  # master gone too: ingest the original again
    storage.delete(seven.master_key)
    _behind_the_back(s3, eight.storage_key, originals[eight.id], "text/plain")  # just re-upload
    async with open_session() as session:
        checker = Checker(session)
        failed = [
            r.clip_id
            for r in await check_clips(catalogue, checker, [six, seven, eight, nine])
            if not r.ok
        ]
        assert failed == [six.id, seven.id, eight.id]
        repairs = {r.clip_id: r for r in await repair_clips(catalogue, checker, failed)}
        again = await check_clips(catalogue, checker, [six, seven, eight, nine])
    assert repairs[six.id].how == "re-encoded from the master (identical bytes)"
    assert repairs[seven.id].how == "ingested the original again (identical bytes)"
    assert repairs[eight.id].how == "re-uploaded the stored MP3 bytes"
    assert all(
        r.done and r.new_url is None and r.check is not None and r.check.ok
        for r in repairs.values()
    )
    assert all(r.ok for r in again)
    for record in (six, seven, eight):  # same key, same URL, same bytes
        assert (await catalogue.get_clip(record.id)).storage_key == record.storage_key
        assert storage.get(record.storage_key) == originals[record.id]
    assert storage.exists(seven.master_key)  # the master came back with the original


async def test_new_bytes_get_a_new_key_and_url(s3: S3, engine, monkeypatch):
    catalogue = Catalogue(engine, s3.storage())  # both dialects: the clip row is rewritten
    (six,) = await stock(catalogue, ["digits/6"])
    storage = catalogue.storage
    encode = audit._encode_master
    # Another libsndfile/LAME: the master encodes to other bytes than at upload.
    monkeypatch.setattr(audit, "_encode_master", lambda flac: encode(flac) + b"\0")
    storage.delete(six.storage_key)
    storage.delete(six.original_key)
    async with open_session() as session:
        (repair,) = await repair_clips(catalogue, Checker(session), [six.id])
    after = await catalogue.get_clip(six.id)
    assert repair.done and "new URL" in repair.how and repair.check and repair.check.ok
    assert after.storage_key != six.storage_key and repair.new_url == storage.url(after.storage_key)
    assert after.sha256 == hashlib.sha256(storage.get(after.storage_key)).hexdigest()
    assert not storage.exists(six.storage_key)


async def test_a_clip_with_nothing_left_is_not_repaired(small_bank):
    catalogue, (six,) = small_bank
    for key in (six.storage_key, six.master_key, six.original_key):
        catalogue.storage.delete(key)
    async with open_session() as session:
        (repair,) = await repair_clips(catalogue, Checker(session), [six.id])
    assert not repair.done and "all gone or damaged; upload it again" in repair.how


# -- against servers that misbehave -----------------------------------------------------------
BODY = b"\xff\xfb\x90\x00" + b"x" * 96


def _served(request: web.Request, *, content_type: str = "audio/mpeg") -> web.Response:
    if request.headers.get("Range") == "bytes=0-0":
        return web.Response(
            body=BODY[:1],
            status=206,
            headers={"Content-Type": content_type, "Content-Range": f"bytes 0-0/{len(BODY)}"},
        )
    return web.Response(
        body=b"" if request.method == "HEAD" else BODY,
        content_type=content_type,
        headers={"Content-Length": str(len(BODY))},
    )


async def test_head_refused_falls_back_to_a_ranged_get_once_per_origin(aiohttp_server):
    seen: list[str] = []

    async def clip(request: web.Request) -> web.Response:
        seen.append(request.method)
        if request.method == "HEAD":
            raise web.HTTPMethodNotAllowed("HEAD", ["GET"])
        return _served(request)

    app = web.Application()
    app.router.add_route("*", "/{name}", clip)
    server = await aiohttp_server(app)
    targets = [Target(i, str(server.make_url(f"/{i}.mp3")), len(BODY)) for i in range(5)]
    async with open_session() as session:
        results = await Checker(session, concurrency=1).check_all(targets)
    assert all(r.ok and r.status == 206 for r in results), results
    assert seen == ["HEAD", "GET", "GET", "GET", "GET", "GET"]


async def test_transient_failures_are_retried(aiohttp_server):
    calls: dict[str, int] = {}

    async def flaky(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        calls[name] = calls.get(name, 0) + 1
        if name == "busy" and calls[name] < 3:
            return web.Response(status=429, headers={"Retry-After": "0"})
        if name == "hiccup" and calls[name] == 1:
            return web.Response(status=503)
        if name == "broken":
            return web.Response(status=500)
        return _served(request)

    app = web.Application()
    app.router.add_route("*", "/{name}", flaky)
    server = await aiohttp_server(app)
    port = closed_port()
    urls = {n: str(server.make_url(f"/{n}")) for n in ("busy", "hiccup", "broken", "fine")}
    urls["down"] = f"http://127.0.0.1:{port}/x.mp3"
    targets = [Target(i, u, len(BODY)) for i, u in enumerate(urls.values())]
    async with open_session() as session:
        checker = Checker(session, retries=2, backoff_s=0.001)
        busy, hiccup, broken, fine, down = await checker.check_all(targets)
    assert busy.ok and busy.attempts == 3
    assert hiccup.ok and hiccup.attempts == 2
    assert not broken.ok and broken.reason == "HTTP 500" and broken.attempts == 3
    assert fine.ok and fine.attempts == 1
    assert not down.ok and down.status is None and down.reason.startswith("no answer")


# -- the command ------------------------------------------------------------------------------
def _cli(s3: S3, db_url: str, tmp_path: Path) -> CliRunner:
    return CliRunner(
        env={
            "VOICEPROMPT_DATA_DIR": str(tmp_path / "var"),
            "VOICEPROMPT_DATABASE_URL": db_url,
            "VOICEPROMPT_STORAGE": s3.uri,
            "VOICEPROMPT_S3_ENDPOINT_URL": s3.endpoint,
            "COLUMNS": "250",  # the summary table, unwrapped
        }
    )


async def _seed(s3: S3, db_url: str, names: list[str]) -> list[ClipRecord]:
    engine = create_engine(db_url)
    try:
        await upgrade(engine)
        return await stock(Catalogue(engine, s3.storage()), names)
    finally:
        await engine.dispose()


def test_the_check_command_reports_repairs_and_exits_with_the_result(s3: S3, tmp_path):
    db_url = sqlite_url(tmp_path)
    _, seven = asyncio.run(_seed(s3, db_url, ["digits/6", "digits/7"]))
    s3.client.delete_object(Bucket=s3.bucket, Key=s3.object_key(seven.storage_key))
    cli = _cli(s3, db_url, tmp_path)

    found = cli.invoke(main, ["bank", "check"])
    assert found.exit_code == 1, found.output + found.stderr
    assert "not found (404)" in found.output and "seven" in found.output
    assert "2 clips checked: 1 ok, 1 failed" in found.output
    assert "--repair" in found.output

    fixed = cli.invoke(main, ["bank", "check", "--repair"])
    assert fixed.exit_code == 0, fixed.output + fixed.stderr
    assert "re-encoded from the master (identical bytes)" in fixed.output
    assert "2 clips checked: 2 ok, 0 failed (1 repaired)" in fixed.output

    only = cli.invoke(main, ["bank", "check", "--voice", "allison", "--tenant", ""])
    assert only.exit_code == 0 and "2 clips checked: 2 ok" in only.output
