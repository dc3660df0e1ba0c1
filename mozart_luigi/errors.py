"""One exception root with categories, and an explicit transient/terminal split.

Transient errors (``retryable = True``) are retried with bounded backoff *inside* the operation that raised
them (see :func:`mozart_luigi.retry.retrying`); terminal ones fail the Luigi task at once. Driver exceptions are
translated at one boundary per client (``raise ... from exc``) so messages name the tenant, table and setting
at fault, and never carry a secret.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "ExtractBrokenError",
    "LoadError",
    "MozartError",
    "SchemaDriftError",
    "SourceError",
    "SourceUnavailableError",
    "StorageError",
    "StorageUnavailableError",
    "TransformError",
    "TypeMappingError",
    "VerificationError",
    "WarehouseUnavailableError",
]

from dataclasses import dataclass


class MozartError(Exception):
    """Root of every error this package raises on purpose."""

    retryable: bool = False

    def __init__(self, message: str, *, tenant: str | None = None, table: str | None = None) -> None:
        self.tenant = tenant
        self.table = table
        super().__init__(self._prefix() + message)

    def _prefix(self) -> str:
        parts = []
        if self.tenant:
            parts.append(f"tenant '{self.tenant}'")
        if self.table:
            parts.append(f"table '{self.table}'")
        return (", ".join(parts) + ": ") if parts else ""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found while validating configuration; all are reported together."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


class ConfigError(MozartError):
    """The configuration is invalid. Carries every problem found, not only the first."""

    def __init__(self, problems: list[ConfigProblem] | str) -> None:
        if isinstance(problems, str):
            problems = [ConfigProblem("config", "-", problems)]
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} configuration problem(s):\n{lines}")


class SourceError(MozartError):
    """Reading a source database failed in a way a retry will not fix (bad password, missing table)."""


class SourceUnavailableError(SourceError):
    """The source database could not be reached; retried with backoff."""

    retryable = True


class TypeMappingError(SourceError):
    """A source column has a type we cannot store exactly (and no explicit policy says what to do)."""


class StorageError(MozartError):
    """The lake (S3 or local folder) failed."""


class StorageUnavailableError(StorageError):
    """The object store answered 5xx, throttled, or could not be reached; retried with backoff."""

    retryable = True


class VerificationError(MozartError):
    """Counts did not match: rows written vs counted, or loaded vs the manifest. Nothing was published."""


class ExtractBrokenError(VerificationError):
    """A published extract cannot be loaded as it is: its manifest is unreadable or disagrees with its
    parts (a part missing, truncated, replaced, misnamed, or from another date), or its frozen schema is
    refused by the warehouse. The load moves the manifest aside (the extract becomes incomplete), so the
    next run extracts the day again; nothing was committed."""

    def __init__(
        self,
        message: str,
        *,
        tenant: str | None = None,
        table: str | None = None,
        date: object = None,
        file: str | None = None,
    ) -> None:
        self.date = date
        self.file = file
        where = [f"date {date}"] if date is not None else []
        where += [f"file '{file}'"] if file else []
        super().__init__((", ".join(where) + ": " if where else "") + message, tenant=tenant, table=table)


class LoadError(MozartError):
    """Loading into the warehouse failed (terminal)."""


class WarehouseUnavailableError(LoadError):
    """The warehouse answered 502/503/504, or an Iceberg commit conflicted; retried with backoff."""

    retryable = True


class SchemaDriftError(LoadError):
    """The source schema changed in a way we refuse to apply (narrowing, type change, dropped column)."""


class TransformError(MozartError):
    """dbt failed: a model or a test. The message names them."""
