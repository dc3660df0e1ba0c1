-- DuckDB statements (profile `local`). `{...}` are quoted identifiers or generated lists, `?` bound values.

-- name: columns
SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS {schema}

-- name: drop_schema
DROP SCHEMA IF EXISTS {schema} CASCADE

-- name: create_table
CREATE TABLE IF NOT EXISTS {table} ({columns})

-- name: add_column
ALTER TABLE {table} ADD COLUMN {column} {type}

-- name: widen_column
ALTER TABLE {table} ALTER COLUMN {column} SET DATA TYPE {type}

-- name: delete_partition
DELETE FROM {table} WHERE "_mozart_date" = ?

-- name: insert_partition
-- mozart_part: one verified Parquet part, registered as an Arrow stream (never a path or a pattern)
INSERT INTO {table} ({columns}, "_mozart_date", "_mozart_extracted_at")
SELECT {expressions}, "_mozart_date", "_mozart_extracted_at" FROM mozart_part

-- name: count_partition
SELECT count(*) FROM {table} WHERE "_mozart_date" = ?

-- name: partition_sums
-- {sums}: sum("col") per checksum column (mozart_luigi/checksums.py: warehouse_sums), identifiers quoted
SELECT {sums} FROM {table} WHERE "_mozart_date" = ?

-- name: create_markers
CREATE TABLE IF NOT EXISTS "mozart_meta"."task_markers" (
    task_family VARCHAR NOT NULL,
    task_id VARCHAR NOT NULL,
    tenant VARCHAR NOT NULL,
    table_name VARCHAR,
    run_date DATE NOT NULL,
    rows BIGINT,
    finished_at TIMESTAMP WITH TIME ZONE NOT NULL,
    details VARCHAR
)

-- name: insert_marker
INSERT INTO "mozart_meta"."task_markers"
    (task_family, task_id, tenant, table_name, run_date, rows, finished_at, details)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)

-- name: delete_markers
DELETE FROM "mozart_meta"."task_markers" WHERE task_id IN ({ids})

-- name: delete_tenant_markers
DELETE FROM "mozart_meta"."task_markers" WHERE tenant = ?

-- name: completed
SELECT task_id, tenant, run_date FROM "mozart_meta"."task_markers"
WHERE task_family = ? AND tenant IN ({tenants}) AND run_date IN ({dates})

-- name: latest_marker_date
SELECT max(run_date) FROM "mozart_meta"."task_markers" WHERE task_family = ? AND tenant = ?

-- name: markers
SELECT task_family, task_id, tenant, table_name, run_date, rows, finished_at, details
FROM "mozart_meta"."task_markers" WHERE run_date = ? {and_tenant}
