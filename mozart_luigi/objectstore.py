"""S3 object operations that ``pyarrow.fs`` does not offer: ETags, conditional copies and conditional PUTs.

The one module that imports ``boto3``. The load uses it to copy a verified part into the table's own data
location **server-side** (no download) and **only if the source still has the ETag the extract recorded**
(``x-amz-copy-source-if-match``): the bytes the warehouse registers are the bytes the extract wrote. The
completion markers use plain PUT/LIST/DELETE on small objects, and a publish-once PUT (``If-None-Match: *``).

Errors leave here translated: a refused precondition is :class:`ObjectChangedError`; 5xx, throttling and
connection errors are :class:`~mozart_luigi.errors.StorageUnavailableError` (retried by the caller); the
rest is :class:`~mozart_luigi.errors.StorageError`. The credentials are never part of a message.
"""

from __future__ import annotations

__all__ = ["ObjectChangedError", "ObjectInfo", "S3Objects", "split_s3_url"]

import builtins
import datetime as dt
import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from mozart_luigi.errors import StorageError, StorageUnavailableError
from mozart_luigi.secrets import redact
from mozart_luigi.settings import Settings

log = logging.getLogger(__name__)
_TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "503", "500"}


class ObjectChangedError(StorageError):
    """A conditional operation was refused: the object is not the one the caller expected."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    modified: dt.datetime | None = None  # HEAD's Last-Modified (UTC), when the call reports it


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StorageError(f"not an s3:// URL: {url!r}")
    return parsed.netloc, parsed.path.lstrip("/")


class S3Objects:
    """A thin, translated boto3 client for the lake's S3 endpoint and credentials."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @cached_property
    def _client(self) -> Any:
        return _shared_client(self._settings)

    # ------------------------------------------------------------------------------------- reads
    def head(self, url: str) -> ObjectInfo | None:
        """Size and ETag of an object, or None when there is none."""
        bucket, key = split_s3_url(url)
        try:
            answer = self._call("head", url, self._client.head_object, Bucket=bucket, Key=key)
        except _Missing:
            return None
        modified = answer.get("LastModified")
        return ObjectInfo(
            key=key,
            size=int(answer["ContentLength"]),
            etag=answer["ETag"],
            modified=modified if isinstance(modified, dt.datetime) else None,
        )

    def get(self, url: str) -> bytes | None:
        bucket, key = split_s3_url(url)
        try:
            answer = self._call("read", url, self._client.get_object, Bucket=bucket, Key=key)
        except _Missing:
            return None
        body = answer["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def tail(self, url: str, length: int) -> bytes | None:
        """The last ``length`` bytes of an object (all of it when it is smaller), in one ranged GET."""
        found = self.tail_and_info(url, length)
        return None if found is None else found[0]

    def tail_and_info(self, url: str, length: int) -> tuple[bytes, ObjectInfo] | None:
        """:meth:`tail`, with what a HEAD would say (whole size, ETag, Last-Modified) from the same answer."""
        bucket, key = split_s3_url(url)
        try:
            answer = self._call(
                "read", url, self._client.get_object, Bucket=bucket, Key=key, Range=f"bytes=-{int(length)}"
            )
        except _Missing:
            return None
        body = answer["Body"]
        try:
            data = bytes(body.read())
        finally:
            body.close()
        whole = str(answer.get("ContentRange") or "").rpartition("/")[2]  # "bytes a-b/total"; none: all of it
        modified = answer.get("LastModified")
        info = ObjectInfo(
            key=key,
            size=int(whole) if whole.isdigit() else len(data),
            etag=str(answer.get("ETag") or ""),
            modified=modified if isinstance(modified, dt.datetime) else None,
        )
        return data, info

    def list(self, prefix_url: str) -> Iterator[ObjectInfo]:
        """Every object under a prefix (all pages), keys relative to the bucket."""
        bucket, prefix = split_s3_url(prefix_url)
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                args["ContinuationToken"] = token
            try:
                page = self._call("list", prefix_url, self._client.list_objects_v2, **args)
            except _Missing:
                return
            for item in page.get("Contents", ()):
                yield ObjectInfo(key=item["Key"], size=int(item["Size"]), etag=item.get("ETag", ""))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def prefixes(self, prefix_url: str) -> builtins.list[str]:  # `list` here is the method above
        """The 'folders' directly under a prefix (``CommonPrefixes`` with ``/``), names only, sorted."""
        bucket, prefix = split_s3_url(prefix_url)
        names: list[str] = []
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/", "MaxKeys": 1000}
            if token:
                args["ContinuationToken"] = token
            try:
                page = self._call("list", prefix_url, self._client.list_objects_v2, **args)
            except _Missing:
                return []
            names += [p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", ())]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return sorted(names)

    # ------------------------------------------------------------------------------------ writes
    def copy_if_match(self, source_url: str, target_url: str, etag: str) -> ObjectInfo:
        """Server-side copy, refused (:class:`ObjectChangedError`) unless the source's ETag is ``etag``."""
        src_bucket, src_key = split_s3_url(source_url)
        bucket, key = split_s3_url(target_url)
        try:
            answer = self._call(
                "copy",
                source_url,
                self._client.copy_object,
                Bucket=bucket,
                Key=key,
                CopySource={"Bucket": src_bucket, "Key": src_key},
                CopySourceIfMatch=etag,
            )
        except _Missing:
            raise ObjectChangedError(f"{source_url} is gone (expected ETag {etag})") from None
        return ObjectInfo(key=key, size=-1, etag=answer["CopyObjectResult"]["ETag"])

    def put(self, url: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> bool:
        """Write a small object. ``if_absent``: only when no object exists (``If-None-Match: *``);
        ``if_match``: only when the object still has that ETag. Returns False, writing nothing, when the
        condition does not hold."""
        bucket, key = split_s3_url(url)
        extra = {"IfNoneMatch": "*"} if if_absent else {"IfMatch": if_match} if if_match else {}
        try:
            self._call("write", url, self._client.put_object, Bucket=bucket, Key=key, Body=data, **extra)
        except ObjectChangedError:
            if extra:
                return False
            raise
        return True

    def delete(self, url: str) -> None:
        bucket, key = split_s3_url(url)
        try:
            self._call("delete", url, self._client.delete_object, Bucket=bucket, Key=key)
        except _Missing:
            return

    # ---------------------------------------------------------------------------------- boundary
    def _call(self, what: str, url: str, method: Any, **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
                raise _Missing from None
            message = self._clean(f"S3 {what} of {url} failed: {code} {error.get('Message', '')}".rstrip())
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict") or status == 412:
                raise ObjectChangedError(message) from None
            if code in _TRANSIENT_CODES or status >= 500:
                raise StorageUnavailableError(message) from None
            raise StorageError(message) from None
        except (BotoConnectionError, BotoCoreError) as exc:
            raise StorageUnavailableError(self._clean(f"S3 {what} of {url} failed: {exc}")) from None

    def _clean(self, text: str) -> str:
        return redact(text, self._settings.secrets())


_SESSION: list[boto3.session.Session] = []  # one per process: it holds botocore's parsed endpoint data
_CLIENTS: dict[tuple[int, str | None, str, str], Any] = {}
_LOCK = threading.Lock()


def _shared_client(s: Settings) -> Any:
    """One S3 client per process and endpoint/credentials. Building one parses botocore's endpoint data
    (~0.3-1 s on a busy box): paid once per worker process, not once per task. After a fork (Luigi's task
    processes) the child builds its own client (sockets are never shared) from the inherited session."""
    access = s.s3_access_key.reveal() if s.s3_access_key else ""
    secret = s.s3_secret_key.reveal() if s.s3_secret_key else ""
    digest = hashlib.sha256(f"{access}\0{secret}".encode()).hexdigest()
    key = (os.getpid(), s.s3_endpoint_url, s.s3_region, digest)
    with _LOCK:
        if key not in _CLIENTS:
            if not _SESSION:
                _SESSION.append(boto3.session.Session())
            _CLIENTS[key] = _SESSION[0].client(
                "s3",
                endpoint_url=s.s3_endpoint_url,
                aws_access_key_id=access or None,
                aws_secret_access_key=secret or None,
                region_name=s.s3_region,
                config=BotoConfig(
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=60,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    max_pool_connections=32,
                ),
            )
        return _CLIENTS[key]


class _Missing(Exception):
    """Internal: the object or bucket does not exist."""
