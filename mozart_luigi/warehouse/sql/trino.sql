-- Trino statements (profile `stack`). `{...}` are quoted identifiers or generated lists, `?` bound values.
-- {catalog} is the Iceberg catalog, {raw_catalog} the Hive catalog over the lake.

-- name: columns
-- No rows: the client reads the columns' names and types from the result's description (one table
-- lookup, cheaper than information_schema). No table: TABLE_NOT_FOUND (read as no columns).
SELECT * FROM {table} LIMIT 0

-- name: columns_and_count
-- The "columns" statement and, in the same round trip, the rows of one date (the first column; ? = date).
SELECT counted.n, t.* FROM (SELECT count(*) AS n FROM {table} WHERE "_mozart_date" = ?) AS counted
LEFT JOIN (SELECT * FROM {table} LIMIT 0) AS t ON true

-- name: tables
SELECT table_name FROM {catalog}.information_schema.tables WHERE table_schema = ? AND table_name LIKE ? ESCAPE '\'

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS {schema}

-- name: drop_schema
DROP SCHEMA IF EXISTS {schema}

-- name: drop_table
DROP TABLE IF EXISTS {table}

-- name: create_table
CREATE TABLE IF NOT EXISTS {table} ({columns})
WITH (format = 'PARQUET', partitioning = ARRAY['_mozart_date'])

-- name: add_column
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {type}

-- name: widen_column
ALTER TABLE {table} ALTER COLUMN {column} SET DATA TYPE {type}

-- name: create_raw_table
-- An external Hive table over {lake}/{tenant}/{table}/: the date folder is a projected partition
-- (no metastore partitions to register); ? = the table folder URL, then the folder template.
CREATE TABLE IF NOT EXISTS {table} (
    {columns},
    "_mozart_folder" varchar WITH (
        partition_projection_type = 'date',
        partition_projection_format = 'yyyy-MM-dd',
        partition_projection_range = ARRAY['1970-01-01', '2199-12-31']
    )
) WITH (
    format = 'PARQUET',
    partitioned_by = ARRAY['_mozart_folder'],
    external_location = ?,
    partition_projection_enabled = true,
    partition_projection_location_template = ?
)

-- name: delete_partition
-- Whole-partition predicate: Iceberg drops the data files (metadata only, no delete files).
DELETE FROM {table} WHERE "_mozart_date" = ?

-- name: insert_partition
-- Only the manifest's files ("$path"), from the date folder (projected partition); ? = date, extracted_at,
-- the folder name, then each file URL.
INSERT INTO {table} ({columns}, "_mozart_date", "_mozart_extracted_at")
SELECT {expressions}, CAST(? AS date), CAST(? AS timestamp(6) with time zone)
FROM {raw_table}
WHERE "_mozart_folder" = ? AND "$path" IN ({paths})

-- name: count_partition
SELECT count(*) FROM {table} WHERE "_mozart_date" = ?

-- name: create_markers
CREATE TABLE IF NOT EXISTS {table} (
    task_family varchar NOT NULL,
    task_id varchar NOT NULL,
    tenant varchar NOT NULL,
    table_name varchar,
    run_date date NOT NULL,
    rows bigint,
    finished_at timestamp(6) with time zone NOT NULL,
    details varchar
) WITH (format = 'PARQUET', partitioning = ARRAY['run_date'])

-- name: insert_marker
-- Append only (appends never conflict); readers keep the latest row per task id.
INSERT INTO {table} (task_family, task_id, tenant, table_name, run_date, rows, finished_at, details)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)

-- name: insert_verified_marker
-- The marker, only when the partition holds the expected rows: one statement instead of count + INSERT.
-- ? = family, task id, tenant, table, run date, finished at, details, then the partition date and the
-- expected count. Returns the rows inserted (1, or 0 on a mismatch).
INSERT INTO {table} (task_family, task_id, tenant, table_name, run_date, rows, finished_at, details)
SELECT ?, ?, ?, ?, ?, counted.n, ?, ?
FROM (SELECT count(*) AS n FROM {data_table} WHERE "_mozart_date" = ?) AS counted
WHERE counted.n = ?

-- name: delete_markers
DELETE FROM {table} WHERE task_id IN ({ids})

-- name: delete_tenant_markers
DELETE FROM {table} WHERE tenant = ?

-- name: compact_markers
-- {date} is a DATE literal rendered from a date object (EXECUTE ... WHERE takes no parameters)
ALTER TABLE {table} EXECUTE optimize WHERE run_date = {date}

-- name: expire_snapshots
-- {retention} is a quoted duration literal rendered from an int (EXECUTE takes no parameters)
ALTER TABLE {table} EXECUTE expire_snapshots(retention_threshold => {retention})

-- name: count_snapshots
SELECT count(*) FROM {table}

-- name: merge_marker_manifests
-- Every append adds a manifest; planning a read opens each one of the date's (merged: ~0.36 s -> 0.2 s)
ALTER TABLE {table} EXECUTE optimize_manifests

-- name: completed
SELECT DISTINCT task_id, tenant, run_date FROM {table}
WHERE task_family = ? AND run_date IN ({dates}) AND tenant IN ({tenants})

-- name: latest_marker_date
SELECT max(run_date) FROM {table} WHERE task_family = ? AND tenant = ?

-- name: markers
SELECT task_family, task_id, tenant, table_name, run_date, rows, finished_at, details
FROM {table} WHERE run_date = ? {and_tenant}
