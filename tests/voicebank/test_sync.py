"""Moving the voice bank between backends: local folder <-> S3 (moto on loopback)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from click.testing import CliRunner

from server.cli.main import main
from server.db.engine import create_engine, upgrade
from tests.support.s3_server import (
    S3,
    closed_port,
    sqlite_url,
    stock,
)
from voicebank.catalogue import Catalogue
from voicebank.storage.local import LocalStorage
from voicebank.storage.s3 import S3Storage
from voicebank.storage.sync import ObjectResult, Outcome, sync

NAMES = ["digits/1", "digits/2", "digits/3", "digits/4"]


class CountingS3(S3Storage):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.uploads: list[str] = []

    def _put_object(self, key: str, **kwargs: Any) -> None:
        self.uploads.append(key)
        super()._put_object(key, **kwargs)


class Interrupted(Exception):
    pass


@pytest.fixture
async def local_bank(sqlite_engine, tmp_path) -> Catalogue:
    catalogue = Catalogue(
        sqlite_engine, LocalStorage(tmp_path / "media", "http://127.0.0.1:8080/media")
    )
    await stock(catalogue, NAMES)
    return catalogue


async def test_an_interrupted_sync_resumes_and_copies_every_object_exactly_once(
    local_bank: Catalogue, s3: S3
):
    dest = s3.storage(CountingS3)
    assert isinstance(dest, CountingS3)
    keys = await local_bank.object_keys()
    assert len(keys) == 3 * len(NAMES)  # an MP3, a master and an original per clip
    done: list[ObjectResult] = []

    def stop_after_five(result: ObjectResult) -> None:
        done.append(result)
        if len(done) == 5:
            raise Interrupted

    with pytest.raises(Interrupted):
        await sync(local_bank.storage, dest, keys, concurrency=3, progress=stop_after_five)
    copied_before = len(dest.uploads)
    assert 5 <= copied_before < len(keys)  # the copies in flight landed too

    report = await sync(local_bank.storage, dest, keys, concurrency=3)
    assert report.verified
    assert report.count(Outcome.PRESENT) == copied_before
    assert report.count(Outcome.COPIED) == len(keys) - copied_before
    assert sorted(dest.uploads) == keys  # every object uploaded exactly once
    assert s3.keys() == sorted(s3.object_key(k) for k in keys)
    for key in keys:
        assert dest.get(key) == local_bank.storage.get(key)

    again = await sync(local_bank.storage, dest, keys)
    assert again.count(Outcome.PRESENT) == len(keys) and sorted(dest.uploads) == keys


async def test_a_damaged_source_object_is_reported_not_copied(local_bank: Catalogue, s3: S3):
    storage = local_bank.storage
    assert isinstance(storage, LocalStorage)
    keys = await local_bank.object_keys()
    storage.path(keys[0]).write_bytes(b"not what the key says")
    report = await sync(storage, s3.storage(), keys)
    assert not report.verified
    assert [(r.key, r.reason) for r in report.failed] == [
        (keys[0], "damaged in the source: sha256 differs")
    ]
    assert not s3.storage().exists(keys[0])


async def test_sync_from_s3_back_to_a_folder(local_bank: Catalogue, s3: S3, tmp_path):
    keys = await local_bank.object_keys()
    await sync(local_bank.storage, s3.storage(), keys)
    back = LocalStorage(tmp_path / "elsewhere", "http://x/media")
    report = await sync(s3.storage(), back, keys)
    assert report.verified and report.count(Outcome.COPIED) == len(keys)
    assert all(back.get(k) == local_bank.storage.get(k) for k in keys)


def test_the_sync_command_copies_verifies_and_switches_nothing(s3: S3, tmp_path):
    db_url = sqlite_url(tmp_path)
    env = {"VOICEPROMPT_DATA_DIR": str(tmp_path / "var"), "VOICEPROMPT_DATABASE_URL": db_url}
    cli = CliRunner(env={**env, "VOICEPROMPT_S3_ENDPOINT_URL": s3.endpoint})

    async def seed() -> int:
        eng = create_engine(db_url)
        try:
            await upgrade(eng)
            media = LocalStorage(
                (tmp_path / "var" / "media").resolve(), "http://127.0.0.1:8080/media"
            )
            await stock(Catalogue(eng, media), NAMES[:2])
            return len(await Catalogue(eng, media).object_keys())
        finally:
            await eng.dispose()

    count = asyncio.run(seed())
    first = cli.invoke(main, ["bank", "sync", "--to", s3.uri])
    assert first.exit_code == 0, first.output + first.stderr
    assert f"{count} copied, 0 already there, 0 failed" in first.output
    assert f"all {count} objects are in s3://{s3.bucket}/{s3.prefix}" in first.output
    assert (
        f"VOICEPROMPT_STORAGE={s3.uri}" in first.output and "Nothing was switched" in first.output
    )
    assert len(s3.keys()) == count

    again = cli.invoke(main, ["bank", "sync", "--to", s3.uri])
    assert f"0 copied, {count} already there" in again.output
    config = json.loads(cli.invoke(main, ["config"]).output)
    assert config["storage"].startswith("file://")  # still serving from the folder

    # The new store serves: the catalogue works unchanged on S3 once the setting says so.
    on_s3 = CliRunner(
        env={
            **env,
            "VOICEPROMPT_STORAGE": s3.uri,
            "VOICEPROMPT_S3_ENDPOINT_URL": s3.endpoint,
            "COLUMNS": "200",
        }
    )
    checked = on_s3.invoke(main, ["bank", "check"])
    assert checked.exit_code == 0 and "2 clips checked: 2 ok" in checked.output

    same = on_s3.invoke(main, ["bank", "sync", "--to", s3.uri])
    assert same.exit_code == 2 and "is the current storage" in same.stderr


def test_sync_to_an_endpoint_that_is_down_fails_clearly(tmp_path, s3: S3):
    db_url = sqlite_url(tmp_path)
    port = closed_port()
    cli = CliRunner(
        env={"VOICEPROMPT_DATA_DIR": str(tmp_path / "var"), "VOICEPROMPT_DATABASE_URL": db_url}
    )

    async def seed() -> None:
        eng = create_engine(db_url)
        try:
            await upgrade(eng)
            media = LocalStorage(
                (tmp_path / "var" / "media").resolve(), "http://127.0.0.1:8080/media"
            )
            await stock(Catalogue(eng, media), NAMES[:1])
        finally:
            await eng.dispose()

    asyncio.run(seed())
    result = cli.invoke(
        main, ["bank", "sync", "--to", s3.uri, "--to-endpoint-url", f"http://127.0.0.1:{port}"]
    )
    assert result.exit_code == 1, result.output
    assert (
        f"cannot reach the S3 endpoint http://127.0.0.1:{port} (bucket '{s3.bucket}')"
        in result.stderr
    )
    assert "nothing to switch yet" in result.output
