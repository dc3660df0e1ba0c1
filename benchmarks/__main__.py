"""``python -m benchmarks [extract|load|late_rows|night|dbt_cost|dbt_history] [options]``
(what ``make bench BENCH_ARGS=...`` runs).

The first argument picks the benchmark (default ``extract``); the rest go to it. See benchmarks/README.md.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = ("extract", "load", "late_rows", "night", "dbt_cost", "dbt_history")

if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in NAMES else "extract"
    rest = sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] in NAMES else sys.argv[1:]
    sys.argv = [str(HERE / f"{name}.py"), *rest]
    runpy.run_path(sys.argv[0], run_name="__main__")
