"""A real S3-protocol server on loopback for the storage tests: moto's standalone server.

``moto_endpoint`` starts one ``ThreadedMotoServer`` per session on 127.0.0.1 and a free port.
``s3`` gives each test its own bucket whose delivery MP3s (``<prefix>/clips/``) are publicly
readable through a bucket policy, as in production: anonymous GETs of anything else (masters,
originals) are 403. Throw-away
credentials in the environment for that test only and no AWS configuration files read.

The root conftest loads this module as a plugin (``pytest_plugins``), so every test sees them.
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.engine import create_engine, upgrade
from tests.support.server import ingested, needs_asterisk_sounds
from voicebank.catalogue import Catalogue, ClipRecord
from voicebank.storage.s3 import S3Storage

PREFIX = "clips-store"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The loopback S3 server's URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def public_read_policy(bucket: str, prefix: str) -> str:
    """Anonymous s3:GetObject on the delivery MP3s only: what Twilio needs, and nothing more."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "TwilioFetchesClips",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/{prefix}/clips/*",
                }
            ],
        }
    )


@dataclass
class S3:
    endpoint: str
    bucket: str
    prefix: str
    client: Any  # a boto3 client, for doing things behind the store's back

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def storage(self, cls: type[S3Storage] = S3Storage, **kwargs: Any) -> S3Storage:
        return cls(self.bucket, self.prefix, endpoint_url=self.endpoint, **kwargs)

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    def keys(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@functools.cache
def _admin_client(endpoint: str) -> Any:
    """The tests' own client, for doing things behind the store's back (made once)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def aws_test_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Throw-away credentials; never a real profile, config file or instance role."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(name="s3")
def s3_fixture(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3:
    """A fresh bucket on the loopback S3 server, its delivery MP3s publicly readable."""
    aws_test_environment(monkeypatch, tmp_path)
    bucket = f"vp-test-{uuid.uuid4().hex[:12]}"
    client = _admin_client(moto_endpoint)
    client.create_bucket(Bucket=bucket)
    client.put_bucket_policy(Bucket=bucket, Policy=public_read_policy(bucket, PREFIX))
    return S3(moto_endpoint, bucket, PREFIX, client)


@pytest.fixture(name="sqlite_engine")
async def sqlite_engine_fixture(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite database, for tests where the database is incidental (the S3 round
    trips are what they test, and each costs ~8 ms on moto). Catalogue methods that differ by
    dialect are tested on both through conftest's ``engine``."""
    engine = create_engine(sqlite_url(tmp_path))
    await upgrade(engine)
    yield engine
    await engine.dispose()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'voiceprompt.db'}"


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def stock(
    catalogue: Catalogue, names: Sequence[str], voice: str = "allison"
) -> list[ClipRecord]:
    """Store real Asterisk recordings (processed once per test session) as clips of ``voice``."""
    needs_asterisk_sounds()
    await catalogue.ensure_voice(voice)
    return await catalogue.add_clips(voice, [ingested(n) for n in names], source="asterisk")


__all__ = [
    "S3",
    "aws_test_environment",
    "closed_port",
    "moto_endpoint",
    "s3_fixture",
    "sqlite_engine_fixture",
    "sqlite_url",
    "stock",
]
