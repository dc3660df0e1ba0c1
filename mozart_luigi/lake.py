"""The lake: a URL (``s3://raw`` or ``file:///.../lake/raw``) -> paths, a pyarrow filesystem and Luigi targets.

This is the one module that touches ``pyarrow.fs``; S3 and local folders go through the same code.
"""

from __future__ import annotations

__all__ = ["Lake", "LakeFileTarget", "ManifestTarget"]

import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import os
import uuid
from functools import cached_property
from typing import TYPE_CHECKING, cast
from urllib.parse import urlparse

import luigi
import pyarrow as pa
import pyarrow.fs as pafs

from mozart_luigi.errors import ExtractBrokenError, StorageError
from mozart_luigi.manifest import MANIFEST_NAME, Manifest, ManifestFormatError
from mozart_luigi.settings import Settings

if TYPE_CHECKING:
    from mozart_luigi.objectstore import S3Objects

log = logging.getLogger(__name__)


class Lake:
    """Raw layout ``{url}/{tenant}/{table}/{YYYY-MM-DD}/``; ``url`` has no trailing slash."""

    def __init__(self, url: str, settings: Settings | None = None) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("s3", "file"):
            raise StorageError(f"unsupported lake URL {url!r}: use s3://bucket[/prefix] or file:///path")
        self.url = url.rstrip("/")
        self.scheme = parsed.scheme
        self._settings = settings or Settings()

    @classmethod
    def from_settings(cls, settings: Settings) -> Lake:
        return cls(settings.lake_url, settings)

    # ------------------------------------------------------------------------------------------ paths
    def date_url(self, tenant: str, table: str, date: dt.date) -> str:
        return f"{self.url}/{tenant}/{table}/{date.isoformat()}"

    def table_url(self, tenant: str, table: str) -> str:
        return f"{self.url}/{tenant}/{table}"

    def manifest_url(self, tenant: str, table: str, date: dt.date) -> str:
        return f"{self.date_url(tenant, table, date)}/{MANIFEST_NAME}"

    def fs_path(self, url: str) -> str:
        """The path that :attr:`filesystem` understands for a lake URL. A ``file://`` URL is percent-encoded
        (``Path.as_uri()``: a data folder ``my data#1`` is ``file:///my%20data%231``), so its path is unquoted."""
        from urllib.parse import unquote  # local: this fix touches fs_path only

        parsed = urlparse(url)
        if parsed.scheme == "s3":
            return f"{parsed.netloc}{parsed.path}"
        return unquote(parsed.path)

    # ------------------------------------------------------------------------------------ filesystem
    @cached_property
    def filesystem(self) -> pafs.FileSystem:
        if self.scheme == "file":
            return pafs.LocalFileSystem()
        s = self._settings
        endpoint = urlparse(s.s3_endpoint_url) if s.s3_endpoint_url else None
        return pafs.S3FileSystem(
            access_key=s.s3_access_key.reveal() if s.s3_access_key else None,
            secret_key=s.s3_secret_key.reveal() if s.s3_secret_key else None,
            region=s.s3_region,
            endpoint_override=endpoint.netloc if endpoint else None,
            scheme=endpoint.scheme if endpoint else "https",
            force_virtual_addressing=False,
            allow_bucket_creation=False,
            request_timeout=60,
            connect_timeout=10,
        )

    @cached_property
    def objects(self) -> S3Objects:
        """ETags, conditional copies and PUTs (S3 lakes only)."""
        from mozart_luigi.objectstore import S3Objects

        return S3Objects(self._settings)

    def etag(self, url: str, size: int | None = None) -> str:
        """The S3 ETag of an object just written (checked against ``size`` when given)."""
        info = self.objects.head(url)
        if info is None or (size is not None and info.size != size):
            found = "nothing" if info is None else f"{info.size} bytes"
            raise StorageError(f"{url}: expected {size} bytes after writing it, found {found}")
        return info.etag

    def size(self, url: str) -> int | None:
        """Size in bytes of a file, or None when there is no such file."""
        try:
            info = self.filesystem.get_file_info(self.fs_path(url))
        except OSError as exc:
            raise StorageError(f"cannot check {url}: {exc}") from exc
        return info.size if info.type == pafs.FileType.File else None

    def modified(self, url: str) -> dt.datetime | None:
        """Last modification time (UTC) of a file, or None when there is none."""
        try:
            info = self.filesystem.get_file_info(self.fs_path(url))
        except OSError as exc:
            raise StorageError(f"cannot check {url}: {exc}") from exc
        if info.type != pafs.FileType.File or info.mtime is None:
            return None
        return cast(dt.datetime, info.mtime if info.mtime.tzinfo else info.mtime.replace(tzinfo=dt.UTC))

    def exists(self, url: str) -> bool:
        try:
            return cast(bool, self.filesystem.get_file_info(self.fs_path(url)).type == pafs.FileType.File)
        except OSError as exc:
            raise StorageError(f"cannot check {url}: {exc}") from exc

    def read_text(self, url: str) -> str:
        if self.scheme == "s3":  # one GET (Arrow's input stream asks HEAD first)
            data = self.objects.get(url)
            if data is None:
                raise StorageError(f"cannot read {url}: no such object")
            return data.decode("utf-8")
        try:
            with self.filesystem.open_input_stream(self.fs_path(url)) as stream:
                return cast(str, stream.read().decode("utf-8"))
        except OSError as exc:
            raise StorageError(f"cannot read {url}: {exc}") from exc

    def write_text_atomic(self, url: str, text: str) -> None:
        """Publish a small file atomically: S3 PUTs are atomic; locally write a temp file, then rename."""
        path = self.fs_path(url)
        target = path if self.scheme == "s3" else f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            if self.scheme == "file":
                self.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
            with self.filesystem.open_output_stream(target) as stream:
                stream.write(text.encode("utf-8"))
            if target != path:
                self.filesystem.move(target, path)
        except OSError as exc:
            raise StorageError(f"cannot write {url}: {exc}") from exc

    def write_text_once(self, url: str, text: str) -> bool:
        """Publish a small file only if none exists (S3 ``If-None-Match: *``; locally a hard link, which
        fails when the name is taken). Returns False, writing nothing, when the file already exists."""
        if self.scheme == "s3":
            return self.objects.put(url, text.encode("utf-8"), if_absent=True)
        path = self.fs_path(url)
        temp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(temp, "wb") as out:
                out.write(text.encode("utf-8"))
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temp, path)
            except FileExistsError:
                return False
            return True
        except OSError as exc:
            raise StorageError(f"cannot write {url}: {exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def move_aside(self, url: str, suffix: str) -> str:
        """Rename a file to ``{url}.{suffix}`` (kept for inspection); returns the new URL."""
        target = f"{url}.{suffix}"
        try:
            self.filesystem.move(self.fs_path(url), self.fs_path(target))
        except FileNotFoundError:
            return target
        except OSError as exc:
            raise StorageError(f"cannot move {url} aside: {exc}") from exc
        return target

    def open_output(self, url: str) -> pa.NativeFile:
        path = self.fs_path(url)
        if self.scheme == "file":
            self.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        return self.filesystem.open_output_stream(path)

    def list_files(self, dir_url: str) -> list[str]:
        """File names directly under a folder (empty when the folder does not exist)."""
        selector = pafs.FileSelector(self.fs_path(dir_url), allow_not_found=True, recursive=False)
        try:
            infos = self.filesystem.get_file_info(selector)
        except OSError as exc:
            raise StorageError(f"cannot list {dir_url}: {exc}") from exc
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File)

    def delete_file(self, url: str) -> None:
        try:
            self.filesystem.delete_file(self.fs_path(url))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"cannot delete {url}: {exc}") from exc

    def clear_dir(self, dir_url: str) -> int:
        """Delete every file in a date folder (stale parts of a failed attempt). Returns how many."""
        names = self.list_files(dir_url)
        for name in names:
            self.delete_file(f"{dir_url}/{name}")
        if names:
            log.info("removed %d stale file(s) under %s", len(names), dir_url)
        return len(names)

    # ------------------------------------------------------------------------------------- manifests
    def manifest_target(self, tenant: str, table: str, date: dt.date) -> ManifestTarget:
        return ManifestTarget(self, self.manifest_url(tenant, table, date), tenant=tenant, table=table, date=date)

    def read_manifest(self, tenant: str, table: str, date: dt.date) -> Manifest:
        """The manifest, checked: unreadable JSON, a wrong shape or another slice's manifest raise
        :class:`ExtractBrokenError` naming the file, tenant, table and date."""
        url = self.manifest_url(tenant, table, date)
        try:
            manifest = Manifest.from_json(self.read_text(url))
        except ManifestFormatError as exc:
            raise ExtractBrokenError(
                f"manifest is unreadable: {exc}", tenant=tenant, table=table, date=date, file=url
            ) from None
        found = (manifest.tenant, manifest.table, manifest.date)
        if found != (tenant, table, date):
            raise ExtractBrokenError(
                f"manifest describes {found}, not this slice", tenant=tenant, table=table, date=date, file=url
            )
        return manifest

    def publish_manifest(self, manifest: Manifest) -> tuple[bool, Manifest | None]:
        """Publish the day's manifest unless a newer attempt already did.

        Attempts are ordered by ``extracted_at`` (when each started). A day with no manifest, or with an
        unreadable one, or with an older attempt's, gets this one; a day whose manifest comes from this
        attempt's start or later keeps it (False, nothing written): a straggler never overwrites a newer
        extract. The write is conditional on what was read (S3 ``If-None-Match``/``If-Match``; locally a
        hard link or a rename under a lock), so two attempts racing cannot both win. The parts are checked
        to exist first. Returns whether it was published, and the manifest it replaced (if any).
        """
        url = self.manifest_url(manifest.tenant, manifest.table, manifest.date)
        existing, tag = self._current_manifest(url)
        if existing is not None and existing.extracted_at >= manifest.extracted_at:
            return False, existing
        folder = self.date_url(manifest.tenant, manifest.table, manifest.date)
        for part in manifest.files:  # published only if its parts exist (a straggler's may have been removed)
            if self.size(f"{folder}/{part.name}") != part.bytes:
                raise StorageError(f"{folder}/{part.name} vanished or changed before the manifest was published")
        if tag is None:
            return self.write_text_once(url, manifest.to_json()), None
        return self._replace_text(url, manifest.to_json(), tag), existing

    def _current_manifest(self, url: str) -> tuple[Manifest | None, str | None]:
        """The manifest there now (None if absent or unreadable) and a tag of its exact content."""
        if self.scheme == "s3":
            info = self.objects.head(url)
            if info is None:
                return None, None
            text, tag = self.read_text(url), info.etag
        else:
            if not self.exists(url):
                return None, None
            text = self.read_text(url)
            tag = hashlib.sha256(text.encode("utf-8")).hexdigest()
        try:
            return Manifest.from_json(text), tag
        except ManifestFormatError:
            return None, tag

    def _replace_text(self, url: str, text: str, tag: str) -> bool:
        """Replace a file only if it is still the one read (``tag``): S3 ``If-Match``; locally a lock."""
        if self.scheme == "s3":
            return self.objects.put(url, text.encode("utf-8"), if_match=tag)
        path = self.fs_path(url)
        with open(f"{path}.lock", "a", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = self.read_text(url)
            except StorageError:
                current = ""
            if hashlib.sha256(current.encode("utf-8")).hexdigest() != tag:
                return False
            self.write_text_atomic(url, text)
            return True

    def write_manifest(self, manifest: Manifest) -> None:
        """Write (or replace) a manifest unconditionally (tests and tools; the extract publishes once)."""
        self.write_text_atomic(self.manifest_url(manifest.tenant, manifest.table, manifest.date), manifest.to_json())


class LakeFileTarget(luigi.Target):
    """A Luigi target for one file in the lake: it exists when the file does."""

    def __init__(self, lake: Lake, url: str) -> None:
        self.lake = lake
        self.url = url
        self.path = url  # luigi shows target paths in the visualizer

    def exists(self) -> bool:
        return self.lake.exists(self.url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class ManifestTarget(LakeFileTarget):
    """The ``_SUCCESS`` manifest of one extract; exists only once every part was written."""

    def __init__(self, lake: Lake, url: str, *, tenant: str, table: str, date: dt.date) -> None:
        super().__init__(lake, url)
        self.tenant, self.table, self.date = tenant, table, date

    def read(self) -> Manifest:
        return self.lake.read_manifest(self.tenant, self.table, self.date)
