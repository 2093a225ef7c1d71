"""Clip storage on S3 or any S3-compatible store; the only module that imports boto3.

Objects live at ``prefix/key`` with the exact ``Content-Type`` and an immutable ``Cache-Control``,
uploaded in one part so that the ETag is the MD5 of the bytes (the fetch checks compare it).

Play URLs are permanent public URLs: ``VOICEPROMPT_MEDIA_BASE_URL`` (a CDN) or the bucket's own
URL, readable through a bucket policy. They are never presigned: a presigned URL expires, while
Twilio keeps caching and playing the URL it was given, so calls would go silent days later.

Credentials come from boto3's usual chain (environment, ``~/.aws``, SSO, an instance or task
role), never from the project's settings or files.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlparse

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from voicebank.errors import ObjectMissing, StorageError
from voicebank.storage.base import CACHE_CONTROL, ObjectInfo, etag_md5

T = TypeVar("T")

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Query parameters of presigned URLs (SigV4, SigV2, CloudFront signed URLs).
_SIGNED = re.compile(r"(x-amz-signature|x-amz-credential|signature=|key-pair-id=|expires=)", re.I)
_MISSING = {"NoSuchKey", "404", "NotFound"}
_DENIED = {
    "AccessDenied",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
}


def refuse_presigned(url: str) -> None:
    """Play URLs must not expire; raise StorageError for anything that looks signed."""
    if urlparse(url).query or _SIGNED.search(url):
        raise StorageError(
            f"media base URL {url.split('?')[0]}?... has a query string or a signature: "
            "presigned URLs expire while Twilio still caches and plays them; use the bucket's "
            "public URL (bucket policy) or a CDN instead"
        )


@functools.cache
def _loader() -> Any:
    return botocore.session.get_session().get_component("data_loader")


def _botocore_session() -> botocore.session.Session:
    """A new session (credentials resolved afresh) sharing the parsed service models: loading
    the S3 model again costs ~0.3 s per store."""
    session = botocore.session.Session()
    session.register_component("data_loader", _loader())
    return session


class S3Storage:
    """A bucket (and a prefix in it) holding content-addressed clip objects."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        media_base_url: str | None = None,
        region: str | None = None,
        max_attempts: int = 3,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise StorageError(f"s3://{bucket}: not a valid S3 bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        config = Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            max_pool_connections=32,
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        # A session of its own: boto3's default session is not thread-safe, clients are.
        session = boto3.session.Session(botocore_session=_botocore_session())
        self.client: Any = session.client(
            "s3", endpoint_url=self.endpoint_url, region_name=region, config=config
        )
        if media_base_url:
            refuse_presigned(media_base_url)
            self.base_url = media_base_url.rstrip("/")
        else:
            self.base_url = self._bucket_url()

    def _bucket_url(self) -> str:
        if self.endpoint_url:
            base = f"{self.endpoint_url}/{self.bucket}"
        else:
            region = self.client.meta.region_name or "us-east-1"
            # Dotted bucket names break virtual-hosted TLS certificates: use the path style.
            base = (
                f"https://s3.{region}.amazonaws.com/{self.bucket}"
                if "." in self.bucket
                else f"https://{self.bucket}.s3.{region}.amazonaws.com"
            )
        return f"{base}/{quote(self.prefix)}" if self.prefix else base

    @property
    def where(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.client.meta.region_name or 'us-east-1'})"

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, action: str, key: str, fn: Callable[..., T], **kwargs: Any) -> T:
        """One S3 request, its failures turned into StorageError naming endpoint and bucket."""
        target = f"s3://{self.bucket}/{self.object_key(key)}"
        try:
            return fn(Bucket=self.bucket, Key=self.object_key(key), **kwargs)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            if code in _MISSING:
                raise ObjectMissing(f"{key} is missing from {self.describe()}") from None
            if code == "NoSuchBucket":
                raise StorageError(
                    f"bucket {self.bucket!r} does not exist at {self.where}"
                ) from None
            if code in _DENIED:
                raise StorageError(
                    f"S3 refused to {action} {target} at {self.where} ({code}): check the AWS "
                    "credentials (environment, ~/.aws, role) and the bucket policy"
                ) from None
            message = err.get("Message") or code
            raise StorageError(f"cannot {action} {target} at {self.where}: {message}") from None
        except (NoCredentialsError, PartialCredentialsError):
            raise StorageError(
                f"no AWS credentials for bucket {self.bucket!r}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an instance or task role"
            ) from None
        except (BotoConnectionError, HTTPClientError) as exc:
            raise StorageError(
                f"cannot reach the S3 endpoint {self.where} (bucket {self.bucket!r}) to "
                f"{action} {key}: {exc}"
            ) from None
        except BotoCoreError as exc:
            raise StorageError(f"cannot {action} {target} at {self.where}: {exc}") from None

    def _put_object(self, key: str, **kwargs: Any) -> None:
        """The upload itself (a seam tests use to count uploads)."""
        self._call("write", key, self.client.put_object, **kwargs)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        md5 = hashlib.md5(data, usedforsecurity=False)
        have = self.stat(key)
        if (
            have is not None
            and have.size == len(data)
            and have.md5 in (None, md5.hexdigest())
            and have.content_type == content_type
            and have.cache_control == CACHE_CONTROL
        ):
            return  # content-addressed: the same key with the same bytes and headers
        self.replace(key, data, content_type)

    def replace(self, key: str, data: bytes, content_type: str) -> None:
        md5 = hashlib.md5(data, usedforsecurity=False)
        self._put_object(
            key,
            Body=data,
            ContentType=content_type,
            CacheControl=CACHE_CONTROL,
            # S3 refuses the upload if the bytes it received do not match.
            ContentMD5=base64.b64encode(md5.digest()).decode("ascii"),
        )

    def get(self, key: str) -> bytes:
        resp = self._call("read", key, self.client.get_object)
        body = resp["Body"]
        try:
            data: bytes = body.read()
        except (BotoCoreError, OSError) as exc:
            raise StorageError(f"reading {key} from {self.describe()} failed: {exc}") from None
        finally:
            body.close()
        return data

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            head = self._call("stat", key, self.client.head_object)
        except ObjectMissing:
            return None
        return ObjectInfo(
            size=int(head["ContentLength"]),
            md5=etag_md5(head.get("ETag")),
            content_type=head.get("ContentType"),
            cache_control=head.get("CacheControl"),
        )

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def delete(self, key: str) -> None:
        self._call("delete", key, self.client.delete_object)

    def url(self, key: str) -> str:
        return f"{self.base_url}/{quote(key)}"

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"{where} at {self.where}"
