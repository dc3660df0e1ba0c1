"""The test tree's layout: pytest imports test modules by basename (no packages), so two test files with
the same name in different folders stop the whole collection ("import file mismatch")."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
TESTS = Path(__file__).resolve().parents[1]


def test_every_python_file_under_tests_has_a_basename_of_its_own() -> None:
    names = Counter(path.name for path in TESTS.rglob("*.py") if "__pycache__" not in path.parts)
    assert sorted(name for name, n in names.items() if n > 1) == []
