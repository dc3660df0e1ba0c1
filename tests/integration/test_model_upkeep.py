"""Upkeep of the tables dbt builds (issue #15 item 5): ``TrinoWarehouse.upkeep_models`` compacts a table that
several inserts, a ``MERGE`` and a ``DELETE`` left in many small files and delete files (as the incremental
marts' nightly ``MERGE`` does) into one file without deletes, expires its snapshots, leaves views alone, and
every query returns the same rows after it."""

from __future__ import annotations

import os
import uuid

import pytest

from mozart_luigi.settings import Settings
from mozart_luigi.warehouse.trino import TrinoWarehouse

pytestmark = pytest.mark.integration


def test_upkeep_compacts_the_dbt_tables_and_every_query_returns_the_same_rows(stack_env: dict[str, str]) -> None:
    tenant = f"t_upk{uuid.uuid4().hex[:8]}"
    schemas = [f"{tenant}_staging", f"{tenant}_mart"]
    settings = Settings.from_env({**os.environ, **stack_env, "MOZART_PROFILE": "stack"}, [])
    warehouse = TrinoWarehouse.from_settings(settings, tenant=tenant)

    def run(statement: str) -> list[tuple]:
        return [tuple(row) for row in warehouse._execute(statement, tenant=tenant)]

    mart, stage, view = (
        f'iceberg."{schemas[1]}"."revenue"',
        f'iceberg."{schemas[0]}"."stg"',
        f'iceberg."{schemas[0]}"."v"',
    )
    queries = [
        f"SELECT * FROM {mart} ORDER BY day",
        f"SELECT sum(amount), count(*), max(day) FROM {mart}",
        f"SELECT * FROM {stage} ORDER BY k",
        f"SELECT * FROM {view} ORDER BY k",
    ]
    try:
        for schema in schemas:
            run(f'CREATE SCHEMA iceberg."{schema}"')
        run(f"CREATE TABLE {mart} (day date, amount decimal(18, 2), orders bigint)")
        run(f"CREATE TABLE {stage} (k integer, v varchar)")
        for n in range(6):  # one small file per night, as a nightly MERGE of a few keys leaves
            run(f"INSERT INTO {mart} VALUES (DATE '2026-11-01' + INTERVAL '{n}' DAY, {n}.25, {n})")
            run(f"INSERT INTO {stage} VALUES ({n}, 'v{n}')")
        run(
            f"MERGE INTO {mart} t USING (VALUES (DATE '2026-11-02', 9.99, 7), (DATE '2026-11-09', 1.00, 1)) "
            "s(day, amount, orders) ON t.day = s.day WHEN MATCHED THEN UPDATE SET amount = s.amount, "
            "orders = s.orders WHEN NOT MATCHED THEN INSERT VALUES (s.day, s.amount, s.orders)"
        )
        run(f"DELETE FROM {mart} WHERE day = DATE '2026-11-04'")
        run(f"DELETE FROM {stage} WHERE k = 3")
        run(f"CREATE VIEW {view} AS SELECT k, upper(v) AS v FROM {stage}")
        before = [run(q) for q in queries]
        assert len(before[0]) == 6 and before[1][0][1] == 6

        done = warehouse.upkeep_models(tenant, schemas, retention_days=0)

        assert done is not None and done.failed == ()
        assert done.tables == 2  # the two tables; the view is not one
        assert done.delete_files_before >= 2 and done.delete_files_after == 0
        assert done.files_before >= 12 and done.files_after == 2  # one file each
        assert [run(q) for q in queries] == before
        for table in (mart, stage):
            snapshots = table[:-1] + '$snapshots"'
            assert run(f"SELECT count(*) FROM {snapshots}") == [(1,)]  # retention 0: the current one only
            files = table[:-1] + '$files"'
            assert run(f"SELECT count(*), count_if(content <> 0) FROM {files}") == [(1, 0)]
        # nothing left to do: a second upkeep rewrites nothing and changes nothing
        again = warehouse.upkeep_models(tenant, schemas, retention_days=0)
        assert again is not None and (again.files_before, again.files_after) == (2, 2)
        assert [run(q) for q in queries] == before
    finally:
        for schema in schemas:
            warehouse.drop_schema(schema, tenant=tenant)
        warehouse.close()
