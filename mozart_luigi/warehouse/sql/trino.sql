-- Trino statements (profile `stack`). `{...}` are quoted identifiers or generated lists, `?` bound values.
-- {catalog} is the Iceberg catalog.

-- name: tables
SELECT table_name FROM {catalog}.information_schema.tables WHERE table_schema = ? AND table_name LIKE ? ESCAPE '\'

-- name: drop_schema
DROP SCHEMA IF EXISTS {schema}

-- name: drop_table
DROP TABLE IF EXISTS {table}

-- name: relations
SELECT table_name, table_type FROM {catalog}.information_schema.tables WHERE table_schema = ?

-- name: drop_view
DROP VIEW IF EXISTS {view}

-- name: count_partition
SELECT count(*) FROM {table} WHERE "_mozart_date" = ?

-- name: partition_sums
-- {sums}: sum("col") per checksum column (mozart_luigi/checksums.py: warehouse_sums), identifiers quoted
SELECT {sums} FROM {table} WHERE "_mozart_date" = ?

-- name: expire_snapshots
-- {retention} is a quoted duration literal rendered from an int (EXECUTE takes no parameters)
ALTER TABLE {table} EXECUTE expire_snapshots(retention_threshold => {retention})

-- name: optimize
-- rewrites small data files into bigger ones and applies delete files (those a MERGE leaves)
ALTER TABLE {table} EXECUTE optimize

-- name: count_data_files
-- {table} is the table's "$files" metadata table; content 0 = data, 1/2 = position/equality deletes
SELECT count(*), count_if(content <> 0) FROM {table}

-- name: optimize_manifests
ALTER TABLE {table} EXECUTE optimize_manifests

-- name: remove_orphan_files
-- {retention} is a quoted duration literal rendered from an int (EXECUTE takes no parameters)
ALTER TABLE {table} EXECUTE remove_orphan_files(retention_threshold => {retention})

-- name: count_snapshots
SELECT count(*) FROM {table}
