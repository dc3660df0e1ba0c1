"""What both warehouses share: identifier quoting (re-exported from :mod:`mozart_luigi.names`), the
placeholder list and the crash hook used by the convergence test. Markers (row layout, cache, S3 store) live
in :mod:`mozart_luigi.markers`.

``MOZART_TEST_CRASH_AT=after_delete`` makes :func:`crash_point` (the extract's hook, re-exported) kill the
current process (SIGKILL, like an OOM kill or ``kill -9``) right after a partition was deleted and before
it is re-inserted. Tests use it to prove a rerun converges; it is a no-op when the variable is unset.
"""

from __future__ import annotations

__all__ = [
    "crash_point",
    "placeholders",
    "qualified",
    "quote_ident",
]

from mozart_luigi.names import qualified, quote_ident  # re-exported: the quoting rule lives in names.py
from mozart_luigi.parquet import crash_point


def placeholders(count: int) -> str:
    return ", ".join("?" * count)
