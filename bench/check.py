"""Fetch-check benchmark: the checker against boto3 ``head_object`` one by one, on loopback S3.

    python bench/check.py [--objects 2000] [--concurrency 64] [--endpoint URL]

Starts moto's standalone S3 server in a subprocess on 127.0.0.1 (its own process, so it does not
share this one's GIL), or uses an S3-compatible server already running at ``--endpoint``
(credentials from the usual AWS variables; objects must be readable anonymously, as call audio
is), makes a bucket whose ``bench/clips/`` prefix is publicly readable, uploads ``--objects``
small content-addressed objects through ``S3Storage``, then times, on the same objects in the
same run:

* checker: ``voicebank.checks.Checker``, anonymous like Twilio, ``--concurrency`` at a time,
  verifying status, Content-Type, size and the ETag against each object's MD5;
* boto3: ``head_object`` for each object, one after the other (the obvious first version);
* the server's ceiling: bare HEAD requests, ``--concurrency`` at a time, nothing checked, nothing
  stored: no client in this process can check faster than the server answers these;
* checker at concurrency 1, for the per-request cost of the server itself.

Prints URLs per second and the ratio checker / boto3 (target >= 10x), and the ratio the server
allows at most (ceiling / boto3). moto serves every request under one lock in one Python process,
so with moto the ratio measures that server's ceiling more than the checker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import botocore.exceptions  # noqa: E402

from voicebank.checks import Checker, Target, open_session  # noqa: E402
from voicebank.storage.base import content_key  # noqa: E402
from voicebank.storage.s3 import S3Storage  # noqa: E402

BUCKET = "vp-bench"
PREFIX = "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def start_moto(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("moto's server did not start")


def fake_mp3(i: int) -> bytes:
    """A small object that starts like an MP3 frame; distinct bytes, so distinct keys."""
    tail = hashlib.sha256(str(i).encode()).digest() * 60
    return b"\xff\xfb\x90\x64" + i.to_bytes(4, "big") + tail


def upload(storage: S3Storage, n: int) -> list[Target]:
    blobs = [fake_mp3(i) for i in range(n)]
    keys = [content_key("clips", b, "mp3") for b in blobs]
    with ThreadPoolExecutor(16) as pool:
        pairs = zip(keys, blobs, strict=True)
        list(pool.map(lambda kb: storage.replace(kb[0], kb[1], "audio/mpeg"), pairs))
    return [
        Target(i, storage.url(k), len(b), hashlib.md5(b).hexdigest())
        for i, (k, b) in enumerate(zip(keys, blobs, strict=True))
    ]


async def run_checker(targets: list[Target], concurrency: int) -> tuple[float, int]:
    async with open_session(concurrency) as session:
        checker = Checker(session, concurrency=concurrency)
        started = time.perf_counter()
        results = await checker.check_all(targets)
        elapsed = time.perf_counter() - started
    bad = [r for r in results if not r.ok]
    if bad:
        raise SystemExit(f"{len(bad)} checks failed, e.g. {bad[0]}")
    return elapsed, len(results)


async def run_ceiling(targets: list[Target], concurrency: int) -> float:
    """Bare requests, ``concurrency`` at a time: what the server itself can answer. HEAD, or
    the checker's ranged GET where the server refuses an anonymous HEAD (moto does)."""
    pending = iter(targets)
    async with open_session(concurrency) as session:
        async with session.head(targets[0].url) as resp:
            method, headers = (
                ("HEAD", {}) if resp.status == 200 else ("GET", {"Range": "bytes=0-0"})
            )

        async def worker() -> None:
            for target in pending:
                async with session.request(method, target.url, headers=headers) as resp:
                    await resp.read()
                    if resp.status not in (200, 206):
                        raise SystemExit(f"{method} {target.url}: HTTP {resp.status}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def make_bucket(storage: S3Storage) -> None:
    client = storage.client
    exists = (client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists)
    with contextlib.suppress(*exists):
        client.create_bucket(Bucket=BUCKET)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{BUCKET}/{PREFIX}/clips/*",
            }
        ],
    }
    try:
        client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
    except botocore.exceptions.ClientError as exc:
        # Some S3-compatible servers have no policies (and serve every object anonymously).
        print(f"note: bucket policy not set ({exc.response['Error'].get('Code')})")


def run_boto3(storage: S3Storage, targets: list[Target]) -> float:
    keys = [storage.object_key(t.url.rsplit(f"/{PREFIX}/", 1)[1]) for t in targets]
    client = storage.client
    started = time.perf_counter()
    for key, target in zip(keys, targets, strict=True):
        head = client.head_object(Bucket=BUCKET, Key=key)
        if head["ContentLength"] != target.size or head["ETag"].strip('"') != target.md5:
            raise SystemExit(f"head_object disagrees for {key}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--endpoint",
        default="",
        help="an S3-compatible server already running (default: start moto's on loopback)",
    )
    args = parser.parse_args(argv)
    proc = None
    if args.endpoint:
        endpoint, server = args.endpoint.rstrip("/"), args.endpoint
    else:
        os.environ.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
        )
        port = free_port()
        proc = start_moto(port)
        endpoint, server = f"http://127.0.0.1:{port}", "moto"
    try:
        storage = S3Storage(BUCKET, PREFIX, endpoint_url=endpoint)
        make_bucket(storage)
        started = time.perf_counter()
        targets = upload(storage, args.objects)
        print(
            f"uploaded {len(targets)} objects to {server} in {time.perf_counter() - started:.1f} s"
        )

        fast, n = asyncio.run(run_checker(targets, args.concurrency))
        slow = run_boto3(storage, targets)
        ceiling = asyncio.run(run_ceiling(targets, args.concurrency))
        one, _ = asyncio.run(run_checker(targets[:500], 1))
        print(
            f"checker, {args.concurrency} at a time: {n} URLs in {fast:.2f} s = "
            f"{n / fast:.0f} URLs/s"
        )
        print(f"boto3 head_object one by one: {n} objects in {slow:.2f} s = {n / slow:.0f}/s")
        print(
            f"server ceiling, bare requests {args.concurrency} at a time: {n / ceiling:.0f}/s "
            f"(the checker reaches {ceiling / fast:.0%} of it)"
        )
        print(f"checker, 1 at a time (500 URLs): {500 / one:.0f} URLs/s")
        print(
            f"ratio checker / boto3: {slow / fast:.1f}x (target >= 10x); "
            f"this server allows at most {slow / ceiling:.1f}x"
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
