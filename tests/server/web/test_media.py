"""``GET /media/{key}``: local clips served the way Twilio and a CDN expect them.

Exact ``Content-Type: audio/mpeg``, an ETag, ``Cache-Control: public, max-age=31536000,
immutable`` (keys are content addresses), byte ranges, and nothing outside the media folder.
The route reads no database, so these tests run on SQLite only.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.server import (
    Env,
)

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

CACHE_FOREVER = "public, max-age=31536000, immutable"


def clip_path(env: Env) -> str:
    return "/media/" + env.clips["hello"].storage_key


async def raw_get(env: Env, target: str) -> tuple[int, bytes]:
    """Send the request target exactly as written (no client-side normalisation of ``..``)."""
    server = env.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_a_clip_is_served_cacheable_forever(env: Env) -> None:
    path = clip_path(env)
    data = env.clip_path("hello").read_bytes()
    assert env.url("hello") == env.settings.public_url + path
    resp = await env.client.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "audio/mpeg"
    assert resp.headers["Cache-Control"] == CACHE_FOREVER
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["ETag"].strip('W/"')
    assert int(resp.headers["Content-Length"]) == len(data)
    assert await resp.read() == data
    head = await env.client.head(path)
    assert head.status == 200 and head.headers["Content-Type"] == "audio/mpeg"
    assert head.headers["ETag"] == resp.headers["ETag"]
    assert await head.read() == b""


async def test_a_cached_copy_is_revalidated_with_the_etag(env: Env) -> None:
    path = clip_path(env)
    etag = (await env.client.get(path)).headers["ETag"]
    resp = await env.client.get(path, headers={"If-None-Match": etag})
    assert resp.status == 304 and await resp.read() == b""
    assert resp.headers["ETag"] == etag
    resp = await env.client.get(path, headers={"If-None-Match": '"something-else"'})
    assert resp.status == 200


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 100), ("bytes=100-", 100, None), ("bytes=-64", -64, None)],
)
async def test_byte_ranges(env: Env, header: str, start: int, end: int | None) -> None:
    data = env.clip_path("hello").read_bytes()
    resp = await env.client.get(clip_path(env), headers={"Range": header})
    assert resp.status == 206
    assert resp.headers["Content-Type"] == "audio/mpeg"
    part = data[start:end]
    assert await resp.read() == part
    first = start % len(data)
    assert resp.headers["Content-Range"] == f"bytes {first}-{first + len(part) - 1}/{len(data)}"


async def test_a_range_past_the_end_is_416(env: Env) -> None:
    size = len(env.clip_path("hello").read_bytes())
    resp = await env.client.get(clip_path(env), headers={"Range": f"bytes={size + 10}-"})
    assert resp.status == 416


async def test_unknown_keys_are_404(env: Env) -> None:
    key = env.clips["hello"].storage_key
    for path in (
        "/media/clips/00/" + "0" * 64 + ".mp3",
        "/media/clips",
        "/media/clips/",
        "/media/" + key[:-1],
        "/media/" + key + ".mp3",
    ):
        resp = await env.client.get(path)
        assert resp.status == 404, path


async def test_a_deleted_clip_is_404(env: Env) -> None:
    env.clip_path("hello").unlink()
    assert (await env.client.get(clip_path(env))).status == 404


async def test_nothing_outside_the_media_folder_is_served(env: Env) -> None:
    data_dir = env.settings.data_dir
    secret = b"not for the public"
    (data_dir / "secret.txt").write_bytes(secret)
    outside = data_dir.parent / "outside.mp3"
    outside.write_bytes(secret)
    (data_dir / "media" / "clips" / "link.mp3").symlink_to(outside)
    targets = [
        "/media/../secret.txt",
        "/media/%2e%2e/secret.txt",
        "/media/%2E%2E/secret.txt",
        "/media/clips/..%2F..%2Fsecret.txt",
        "/media/..%2fsecret.txt",
        "/media/clips/%2e%2e/%2e%2e/secret.txt",
        "/media/..%5Csecret.txt",
        "/media//" + str(data_dir / "secret.txt").lstrip("/"),
        "/media/%2F" + str(data_dir / "secret.txt").lstrip("/").replace("/", "%2F"),
        "/media/clips/link.mp3",
        "/media/../../outside.mp3",
    ]
    for target in targets:
        status, body = await raw_get(env, target)
        assert status in (400, 403, 404), (target, status)
        assert secret not in body, target
