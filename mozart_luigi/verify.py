"""What a load checks before it commits anything: the manifest, each part's name, size, checksum and footer.

Nothing the lake says is trusted: a manifest is input. Each check raises
:class:`~mozart_luigi.errors.ExtractBrokenError` naming the tenant, table, date and file, so the load can
invalidate the extract (the next run extracts the day again) and nothing is committed.

- **Names** (:func:`check_manifest`): part ``n`` must be called exactly ``part-{run_id}-{n:05d}.parquet``
  with the manifest's own ``run_id``: no ``/``, no ``..``, no glob characters, nothing outside the date
  folder, no other attempt's part. Files are then addressed by exact key, never by pattern.
- **Counts**: ``row_count`` equals the sum of the parts' rows and the source count.
- **Content** (:func:`check_stat`): each part's size, and its SHA-256 (local lake) or the S3 ETag the
  extract recorded (the copy into the table is conditional on it), equal the manifest's.
- **Footer** (:func:`check_footer`): rows from the Parquet footer equal the manifest's, the columns are the
  manifest's schema plus the two pipeline columns, and ``_mozart_date`` holds only the manifest's date.
"""

from __future__ import annotations

__all__ = ["broken", "check_footer", "check_manifest", "check_stat", "etag_equal", "sha256_of"]

import hashlib
from typing import BinaryIO, cast

import pyarrow as pa
import pyarrow.parquet as pq

from mozart_luigi.errors import ExtractBrokenError
from mozart_luigi.manifest import RUN_ID_RE, Manifest, PartFile
from mozart_luigi.parquet import PIPELINE_FIELDS, part_name


def broken(manifest: Manifest, message: str, file: str | None = None) -> ExtractBrokenError:
    return ExtractBrokenError(message, tenant=manifest.tenant, table=manifest.table, date=manifest.date, file=file)


def check_manifest(manifest: Manifest, *, require_etag: bool) -> None:
    """Names, counts and recorded checksums; raises before anything is read or committed."""
    if not RUN_ID_RE.match(manifest.run_id):
        raise broken(manifest, f"run_id {manifest.run_id!r:.80} is not of the writer's form")
    for n, part in enumerate(manifest.files):
        if part.name != part_name(manifest.run_id, n):
            raise broken(
                manifest,
                f"part {n} must be named {part_name(manifest.run_id, n)!r}, the manifest says {part.name!r:.200}",
                file=part.name[:200],
            )
        if part.bytes <= 0 or not part.sha256:
            raise broken(manifest, "size or sha256 missing from the manifest", file=part.name)
        if require_etag and not part.etag:
            raise broken(manifest, "the manifest records no S3 ETag for it", file=part.name)
    rows = sum(part.rows for part in manifest.files)
    if not rows == manifest.row_count == manifest.source_count:
        raise broken(
            manifest,
            f"row counts disagree: parts {rows}, row_count {manifest.row_count}, source_count {manifest.source_count}",
        )


def etag_equal(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and (a or "").strip('"') == (b or "").strip('"')


def check_stat(
    manifest: Manifest, part: PartFile, *, size: int | None, etag: str | None = None, sha256: str | None = None
) -> None:
    """The part as found (``size`` None: missing) against the manifest's size and checksum."""
    if size is None:
        raise broken(manifest, "the part is missing", file=part.name)
    if size != part.bytes:
        raise broken(manifest, f"size is {size} bytes, the manifest says {part.bytes}", file=part.name)
    if etag is not None and not etag_equal(etag, part.etag):
        raise broken(manifest, f"content changed since the extract (ETag {etag}, manifest {part.etag})", file=part.name)
    if sha256 is not None and sha256 != part.sha256:
        raise broken(manifest, "content changed since the extract (SHA-256 differs from the manifest)", file=part.name)


def sha256_of(stream: BinaryIO, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    while block := stream.read(chunk):
        digest.update(block)
    return digest.hexdigest()


def check_footer(manifest: Manifest, part: PartFile, meta: pq.FileMetaData) -> None:
    """Rows, columns and partition value from the part's Parquet footer (no row is decoded)."""
    if meta.num_rows != part.rows:
        raise broken(manifest, f"footer holds {meta.num_rows} rows, the manifest says {part.rows}", file=part.name)
    try:
        found = meta.schema.to_arrow_schema()
    except (pa.ArrowException, ValueError) as exc:
        raise broken(manifest, f"unreadable Parquet schema: {exc}", file=part.name) from None
    wanted = pa.schema([*manifest.schema, *PIPELINE_FIELDS])
    if found.names != wanted.names or not all(_same_type(a.type, b.type) for a, b in zip(found, wanted, strict=True)):
        raise broken(
            manifest, f"columns {_describe(found)} differ from the manifest's {_describe(wanted)}", file=part.name
        )
    _check_date_column(manifest, part, meta, found.get_field_index(PIPELINE_FIELDS[0].name))


def _same_type(found: pa.DataType, wanted: pa.DataType) -> bool:
    """Parquet stores a dictionary as its values and some types by their storage: compare what is read."""
    if pa.types.is_dictionary(wanted):
        wanted = wanted.value_type
    if pa.types.is_dictionary(found):
        found = found.value_type
    return cast(bool, found == wanted)  # pyarrow is untyped


def _describe(schema: pa.Schema) -> str:
    text = ", ".join(f"{f.name} {f.type}" for f in schema)
    return f"[{text[:300]}{'…' if len(text) > 300 else ''}]"


def _check_date_column(manifest: Manifest, part: PartFile, meta: pq.FileMetaData, index: int) -> None:
    for group in range(meta.num_row_groups):
        column = meta.row_group(group).column(_leaf_index(meta, index))
        stats = column.statistics
        if column.num_values == 0 and meta.row_group(group).num_rows == 0:
            continue
        if stats is None or not stats.has_min_max or stats.null_count:
            raise broken(manifest, "_mozart_date has no statistics or holds NULLs", file=part.name)
        if not stats.min == stats.max == manifest.date:
            raise broken(manifest, f"_mozart_date holds {stats.min}..{stats.max}, not {manifest.date}", file=part.name)


def _leaf_index(meta: pq.FileMetaData, top_index: int) -> int:
    """Parquet column (leaf) index of a top-level field: nested fields before it have several leaves."""
    name = meta.schema.to_arrow_schema().field(top_index).name
    for leaf in range(meta.num_columns):
        if meta.schema.column(leaf).path == name:
            return leaf
    raise ValueError(f"no leaf column {name}")
