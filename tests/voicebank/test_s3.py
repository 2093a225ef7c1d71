"""The S3 backend against a real S3-protocol server on loopback (moto's standalone server)."""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from server.db.schema import clips as clip_table
from server.runtime import make_storage
from server.settings import Settings
from tests.support.s3_server import (
    S3,
    closed_port,
)
from tests.support.server import ingested, needs_asterisk_sounds
from voicebank.catalogue import Catalogue
from voicebank.errors import ObjectMissing, StorageError
from voicebank.storage import open_storage
from voicebank.storage.base import CACHE_CONTROL
from voicebank.storage.local import LocalStorage
from voicebank.storage.s3 import S3Storage


class CountingS3(S3Storage):
    """Counts the uploads that really happen (not the ones ``put`` skips)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.uploads: list[str] = []

    def _put_object(self, key: str, **kwargs: Any) -> None:
        self.uploads.append(key)
        super()._put_object(key, **kwargs)


@pytest.fixture
def seven():
    needs_asterisk_sounds()
    return ingested("digits/7")


async def test_a_clip_is_uploaded_and_served_anonymously_with_the_right_headers(
    s3: S3, sqlite_engine, seven
):
    storage = s3.storage()
    catalogue = Catalogue(sqlite_engine, storage)
    await catalogue.ensure_voice("allison")
    transcript, processed = seven
    record = await catalogue.add_clip("allison", transcript, processed)

    url = storage.url(record.storage_key)
    assert url == f"{s3.endpoint}/{s3.bucket}/{s3.prefix}/{record.storage_key}"
    assert "?" not in url  # permanent, never presigned
    async with aiohttp.ClientSession() as session, session.get(url) as resp:  # no credentials
        body = await resp.read()
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "audio/mpeg"
        assert resp.headers["Cache-Control"] == CACHE_CONTROL
        assert resp.headers["ETag"].strip('"') == hashlib.md5(body).hexdigest()
    assert hashlib.sha256(body).hexdigest() == record.sha256 and body == processed.mp3
    # Originals and masters are kept too, with their own types, and stay private.
    master = storage.stat(record.master_key)
    assert master is not None and master.content_type == "audio/flac"
    assert storage.get(record.original_key) == processed.original
    async with aiohttp.ClientSession() as session:
        for key in (record.master_key, record.original_key):
            async with session.get(storage.url(key)) as resp:
                assert resp.status == 403
    assert sorted(s3.keys()) == sorted(
        s3.object_key(k) for k in (record.storage_key, record.master_key, record.original_key)
    )


def test_put_skips_an_identical_object_and_rewrites_a_damaged_one(s3: S3):
    storage = s3.storage(CountingS3)
    assert isinstance(storage, CountingS3)
    storage.put("clips/aa/x.mp3", b"ID3 some audio", "audio/mpeg")
    storage.put("clips/aa/x.mp3", b"ID3 some audio", "audio/mpeg")
    assert storage.uploads == ["clips/aa/x.mp3"]
    # Same size, other headers (someone re-uploaded it by hand): put fixes it.
    s3.client.put_object(
        Bucket=s3.bucket,
        Key=s3.object_key("clips/aa/x.mp3"),
        Body=b"ID3 some audio",
        ContentType="binary/octet-stream",
    )
    storage.put("clips/aa/x.mp3", b"ID3 some audio", "audio/mpeg")
    assert len(storage.uploads) == 2
    info = storage.stat("clips/aa/x.mp3")
    assert info is not None and info.content_type == "audio/mpeg"
    assert info.md5 == hashlib.md5(b"ID3 some audio").hexdigest()


def test_get_stat_exists_and_delete(s3: S3):
    storage = s3.storage()
    assert storage.stat("clips/no/such.mp3") is None and not storage.exists("clips/no/such.mp3")
    with pytest.raises(ObjectMissing, match="clips/no/such.mp3 is missing from s3://"):
        storage.get("clips/no/such.mp3")
    storage.put("originals/ab/y.wav", b"RIFF....WAVE", "audio/wav")
    assert storage.exists("originals/ab/y.wav")
    storage.delete("originals/ab/y.wav")
    assert not storage.exists("originals/ab/y.wav")


async def test_endpoint_down_is_a_clear_error_and_the_catalogue_is_unchanged(
    s3: S3, sqlite_engine, seven
):
    engine = sqlite_engine
    good = Catalogue(engine, s3.storage())
    await good.ensure_voice("allison")
    transcript, processed = seven
    first = await good.add_clip("allison", transcript, processed)
    objects = s3.keys()

    port = closed_port()
    down = S3Storage(s3.bucket, s3.prefix, endpoint_url=f"http://127.0.0.1:{port}")
    _, other = ingested("digits/8")
    with pytest.raises(StorageError) as err:
        await Catalogue(engine, down).add_clip("allison", transcript, other)
    message = str(err.value)
    assert f"http://127.0.0.1:{port}" in message and s3.bucket in message
    assert "cannot reach the S3 endpoint" in message
    # Nothing half-written: the earlier take is still the current one, no row without objects.
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(clip_table))).all()
    assert [(r.id, r.replaced_at) for r in rows] == [(first.id, None)]
    assert s3.keys() == objects


def test_a_missing_bucket_and_missing_credentials_are_named(s3: S3, monkeypatch):
    with pytest.raises(StorageError, match="bucket 'vp-nowhere' does not exist at http://127"):
        S3Storage("vp-nowhere", endpoint_url=s3.endpoint).put("k/x.mp3", b"x", "audio/mpeg")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError, match="no AWS credentials for bucket"):
        s3.storage().put("k/x.mp3", b"x", "audio/mpeg")


@pytest.mark.parametrize(
    ("uri", "base", "url"),
    [
        (
            "s3://voice-bank/clips",
            None,
            "https://voice-bank.s3.us-east-1.amazonaws.com/clips/k.mp3",
        ),
        ("s3://voice-bank", None, "https://voice-bank.s3.us-east-1.amazonaws.com/k.mp3"),
        ("s3://voice.bank/a/b/", None, "https://s3.us-east-1.amazonaws.com/voice.bank/a/b/k.mp3"),
        (
            "s3://voice-bank/clips",
            "https://cdn.example.com/vp/",
            "https://cdn.example.com/vp/k.mp3",
        ),
    ],
)
def test_play_urls_are_public_bucket_or_cdn_urls(s3: S3, uri, base, url):
    assert open_storage(uri, media_base_url=base).url("k.mp3") == url


@pytest.mark.parametrize(
    ("uri", "base", "message"),
    [
        ("s3://Bad_Bucket/x", None, "not a valid S3 bucket name"),
        (
            "s3://voice-bank/x",
            "https://voice-bank.s3.amazonaws.com/x?X-Amz-Signature=abc&X-Amz-Expires=604800",
            "presigned URLs expire while Twilio still caches",
        ),
        ("s3://voice-bank/x", "https://d1.cloudfront.net/x?Expires=1&Key-Pair-Id=K", "presigned"),
        ("ftp://host/x", None, "use file:///path/to/folder or s3://bucket/prefix"),
        ("file:///tmp/x", None, "needs a media base URL"),
    ],
)
def test_bad_storage_settings_are_refused(s3: S3, uri, base, message):
    with pytest.raises(StorageError, match=message.replace("?", r"\?")):
        open_storage(uri, media_base_url=base)


def test_settings_choose_the_backend(s3: S3, tmp_path):
    local = make_storage(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalStorage) and local.url("k").startswith(
        "http://127.0.0.1:8080/media/"
    )
    on_s3 = make_storage(
        Settings.from_env(
            {"VOICEPROMPT_STORAGE": s3.uri, "VOICEPROMPT_S3_ENDPOINT_URL": s3.endpoint}
        )
    )
    assert isinstance(on_s3, S3Storage)
    assert on_s3.url("k.mp3") == f"{s3.endpoint}/{s3.bucket}/{s3.prefix}/k.mp3"
    cdn = make_storage(
        Settings.from_env(
            {
                "VOICEPROMPT_STORAGE": s3.uri,
                "VOICEPROMPT_MEDIA_BASE_URL": "https://cdn.example.com/",
            }
        )
    )
    assert cdn.url("k.mp3") == "https://cdn.example.com/k.mp3"
