{#- Turning raw partitions into the current state of a table.

    Raw tables ({tenant}.{table}) hold one `_mozart_date` partition per run date:
    - mode `full`: each partition is a complete snapshot -> the snapshot of `run_date` (the latest one when
      run_date is not set);
    - mode `incremental`: each partition holds that day's changed rows -> the latest row per primary key
      across partitions up to run_date, by cursor, then _mozart_date, then _mozart_extracted_at;
      with `deletes: keys`, minus the keys the source no longer has: a key absent from the keys snapshot
      ({table}__keys, the partition of run_date) is dropped, unless a version of it was read after that
      snapshot (a later extract, e.g. a lookback_days re-extract, knows better). docs/late-rows.md
    Modes and keys come from the `tables` var (DbtRun passes config/tables.yaml). -#}

{% macro mozart_table_spec(table) -%}
  {%- set tables = var('tables', {}) -%}
  {%- if table not in tables -%}
    {{ exceptions.raise_compiler_error("table " ~ (table | tojson) ~ " is missing from dbt var 'tables'") }}
  {%- endif -%}
  {%- set spec = tables[table] -%}
  {%- set mode = spec.get('mode', 'full') -%}
  {%- set key = spec.get('primary_key') or [] -%}
  {%- set key = [key] if key is string else key -%}
  {%- set cursor = spec.get('cursor') -%}
  {%- set deletes = spec.get('deletes') or 'none' -%}
  {%- if mode not in ['full', 'incremental'] -%}
    {{ exceptions.raise_compiler_error("table " ~ table ~ ": mode must be full or incremental") }}
  {%- endif -%}
  {%- if deletes not in ['none', 'keys'] or (deletes == 'keys' and mode != 'incremental') -%}
    {{ exceptions.raise_compiler_error("table " ~ table ~ ": deletes must be none, or keys for an incremental table") }}
  {%- endif -%}
  {%- if mode == 'incremental' and (not key or not cursor) -%}
    {{ exceptions.raise_compiler_error("table " ~ table ~ ": incremental mode needs primary_key and cursor") }}
  {%- endif -%}
  {%- for column in key + ([cursor] if cursor else []) -%}
    {%- if not modules.re.fullmatch('[a-z_][a-z0-9_]*', column) -%}
      {{ exceptions.raise_compiler_error("table " ~ table ~ ": invalid column name " ~ (column | tojson)) }}
    {%- endif -%}
  {%- endfor -%}
  {{ return({'mode': mode, 'primary_key': key, 'cursor': cursor, 'deletes': deletes}) }}
{%- endmacro %}


{#- SQL condition selecting the partitions visible at run_date. -#}
{% macro mozart_partitions_until_run_date() -%}
  {%- set run_date = mozart_run_date() -%}
  {%- if run_date is none -%}
    1 = 1
  {%- else -%}
    _mozart_date <= {{ mozart_date_literal(run_date) }}
  {%- endif -%}
{%- endmacro %}


{#- SQL expression: the snapshot date a `full` table is read from. -#}
{% macro mozart_snapshot_date(relation) -%}
  {%- set run_date = mozart_run_date() -%}
  {%- if run_date is none -%}
    (select max(_mozart_date) from {{ relation }})
  {%- else -%}
    {{ mozart_date_literal(run_date) }}
  {%- endif -%}
{%- endmacro %}


{#- The keys stream of raw `table`: {tenant}.{table}__keys, loaded each run date (deletes: keys). -#}
{% macro mozart_keys_relation(table) -%}
  {{ return(source('raw', table).incorporate(path={'identifier': table ~ '__keys'})) }}
{%- endmacro %}


{#- SQL condition: the key of row `alias` is still in the source: it is in the keys snapshot of the run date, or
    a version of it was read after that snapshot (a later extract knows better). One EXISTS over the union of
    both key sets (no OR): Trino plans it as one semi-join; `exists (...) or last_read > ...` kept the
    correlation and cost ~3.5x as much on 2 M rows (benchmarks/README.md, "Late rows"). -#}
{% macro mozart_key_present(table, spec, alias) -%}
  {%- set keys = mozart_keys_relation(table) -%}
  {%- set key = spec.primary_key | join(', ') -%}
  exists (
        select 1 from (
            select {{ key }} from {{ keys }}
            where _mozart_date = {{ mozart_snapshot_date(keys) }}
            union all
            select {{ key }} from {{ source('raw', table) }}
            where {{ mozart_partitions_until_run_date() }}
              and _mozart_extracted_at > (
                  select max(_mozart_extracted_at) from {{ keys }}
                  where _mozart_date = {{ mozart_snapshot_date(keys) }}
              )
        ) as present_keys
        where
        {%- for column in spec.primary_key %}
          {{ 'and ' if not loop.first }}present_keys.{{ column }} = {{ alias }}.{{ column }}
        {%- endfor %}
  )
{%- endmacro %}


{#- A SELECT returning the current rows of raw `table` with all raw columns. -#}
{% macro mozart_current_state(table) -%}
  {%- set spec = mozart_table_spec(table) -%}
  {%- set relation = source('raw', table) -%}
  {%- if spec.mode == 'full' -%}
    select * from {{ relation }}
    where _mozart_date = {{ mozart_snapshot_date(relation) }}
  {%- else -%}
    select * from (
        select
            raw_rows.*,
            row_number() over (
                partition by {{ spec.primary_key | join(', ') }}
                order by {{ spec.cursor }} desc, _mozart_date desc, _mozart_extracted_at desc
            ) as _mozart_version_rank
        from {{ relation }} as raw_rows
        where {{ mozart_partitions_until_run_date() }}
    ) as versions
    where _mozart_version_rank = 1
    {%- if spec.deletes == 'keys' %}
      and {{ mozart_key_present(table, spec, 'versions') }}
    {%- endif %}
  {%- endif -%}
{%- endmacro %}


{#- How many rows the current state of raw `table` must have (for the reconciliation test). -#}
{% macro mozart_expected_current_rows(table) -%}
  {%- set spec = mozart_table_spec(table) -%}
  {%- set relation = source('raw', table) -%}
  {%- if spec.mode == 'full' -%}
    select count(*) as expected_rows from {{ relation }}
    where _mozart_date = {{ mozart_snapshot_date(relation) }}
  {%- else -%}
    select count(*) as expected_rows from (
        select {{ spec.primary_key | join(', ') }}
        from {{ relation }}
        where {{ mozart_partitions_until_run_date() }}
        group by {{ spec.primary_key | join(', ') }}
    ) as keys_seen
    {%- if spec.deletes == 'keys' %}
    where {{ mozart_key_present(table, spec, 'keys_seen') }}
    {%- endif %}
  {%- endif -%}
{%- endmacro %}
