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


{#- A SELECT returning the current rows of raw `table` with all raw columns (in an incremental run of an
    incremental table's staging model: only the rows this run changes, see mozart_current_state_changes). -#}
{% macro mozart_current_state(table, run=none) -%}
  {%- set spec = mozart_table_spec(table) -%}
  {%- set relation = source('raw', table) -%}
  {%- if spec.mode == 'incremental' and run and run.incremental -%}
    {{ mozart_current_state_changes(table, spec, run) }}
  {%- elif spec.mode == 'full' -%}
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


{#- How an incremental table's staging model is materialized: `mozart_incremental` (a table merged by
    primary key) for an `incremental` table, a view over the snapshot partition for a `full` one. -#}
{% macro mozart_staging_materialization(table) -%}
  {{ return('mozart_incremental' if mozart_table_spec(table).mode == 'incremental' else 'view') }}
{%- endmacro %}


{#- `, _mozart_gone` in an incremental run of a `mozart_incremental` model (the flag its SELECT must end
    with), else nothing. -#}
{% macro mozart_gone_column(run) -%}
  {%- if run.incremental -%}, _mozart_gone{%- endif -%}
{%- endmacro %}


{#- SQL condition: row `a` and row `b` have the same primary key. -#}
{% macro mozart_same_key(spec, a, b) -%}
  {%- for column in spec.primary_key -%}
    {{ ' and ' if not loop.first }}{{ a }}.{{ column }} = {{ b }}.{{ column }}
  {%- endfor -%}
{%- endmacro %}


{#- The staging rows an incremental run changes, for an `incremental` table (the model's table `this` holds
    the state as of the previous run; mozart_run_info() says which partitions changed since):

    - fresh: the latest version per key within the changed partitions (new, replaced or removed ones);
    - a key of `fresh` whose staged row is older (by cursor, _mozart_date, _mozart_extracted_at), or
      not staged: its fresh version is the latest of all (every unchanged partition held nothing later than
      the staged row);
    - a key whose staged row came from a changed partition and whose fresh version is older, or absent (the
      partition was replaced without it, or removed): its versions are ranked again over every partition up
      to the run date; none left: `_mozart_gone`;
    - any other key keeps its staged row (not returned).
    Relies on the staging model keeping the key and the cursor under their raw names (an order-preserving
    cast), with _mozart_date and _mozart_extracted_at. -#}
{% macro mozart_current_state_changes(table, spec, run) -%}
  {%- set relation = source('raw', table) -%}
  {%- set columns = adapter.get_columns_in_relation(relation) | map(attribute='name') | list -%}
  {%- for column in columns if not modules.re.fullmatch('[a-z_][a-z0-9_]*', column) -%}
    {{ exceptions.raise_compiler_error("table " ~ table ~ ": unexpected column name " ~ (column | tojson)) }}
  {%- endfor -%}
  {%- set key = spec.primary_key -%}
  {%- set cursor = spec.cursor -%}
  {%- set rank -%}
    row_number() over (
        partition by {{ key | join(', ') }}
        order by {{ cursor }} desc, _mozart_date desc, _mozart_extracted_at desc
    ) as _mozart_version_rank
  {%- endset -%}
  {#- the keys to rank again over every partition: counted first, so that a night without any (the usual one)
      does not plan a scan of the whole raw table -#}
  {%- set decide -%}
    with fresh as (
        select * from (
            select raw_rows.*, {{ rank }}
            from {{ relation }} as raw_rows
            where {{ mozart_in_changed(table, run) }}
        ) as ranked
        where _mozart_version_rank = 1
    ),
    affected as (
        select {{ key | join(', ') }} from fresh
        union
        select {{ key | join(', ') }} from {{ this }} where {{ mozart_in_changed(table, run) }}
    ),
    decided as (
        select
            {%- for column in key %}
            affected.{{ column }},
            {%- endfor %}
            case
              when fresh._mozart_version_rank is not null and (
                  staged._mozart_date is null
                  or fresh.{{ cursor }} > staged.{{ cursor }}
                  or (fresh.{{ cursor }} is not null and staged.{{ cursor }} is null)
                  or (fresh.{{ cursor }} is not distinct from staged.{{ cursor }} and (
                      fresh._mozart_date > staged._mozart_date
                      or (fresh._mozart_date = staged._mozart_date
                          and fresh._mozart_extracted_at >= staged._mozart_extracted_at)))
              ) then 'fresh'
              when staged._mozart_date is not null and {{ mozart_in_changed(table, run, 'staged._mozart_date') }}
                then 'history'
              else 'keep'
            end as _mozart_source
        from affected
        left join fresh on {{ mozart_same_key(spec, 'fresh', 'affected') }}
        left join {{ this }} as staged on {{ mozart_same_key(spec, 'staged', 'affected') }}
    )
  {%- endset -%}
  {%- set rerank = run_query(decide ~ "\n    select count(*) from decided where _mozart_source = 'history'").rows[0][0] > 0 -%}
    {{ decide }}
    {%- if rerank %},
    history as (
        select * from (
            select raw_rows.*, {{ rank }}
            from {{ relation }} as raw_rows
            where {{ mozart_partitions_until_run_date() }}
              and exists (
                  select 1 from decided
                  where decided._mozart_source = 'history' and {{ mozart_same_key(spec, 'decided', 'raw_rows') }}
              )
        ) as ranked
        where _mozart_version_rank = 1
    )
    {%- endif %}
    select {% for c in columns %}fresh.{{ c }}, {% endfor %}fresh._mozart_version_rank, false as _mozart_gone
    from fresh
    where exists (
        select 1 from decided
        where decided._mozart_source = 'fresh' and {{ mozart_same_key(spec, 'decided', 'fresh') }}
    )
    {%- if rerank %}
    union all
    select {% for c in columns %}history.{{ c }}, {% endfor %}history._mozart_version_rank, false as _mozart_gone
    from history
    union all
    select
        {%- for c in columns %}
        {{ 'decided.' ~ c if c in key else 'null' }} as {{ c }},
        {%- endfor %}
        cast(null as bigint) as _mozart_version_rank,
        true as _mozart_gone
    from decided
    where decided._mozart_source = 'history'
      and not exists (select 1 from history where {{ mozart_same_key(spec, 'history', 'decided') }})
    {%- endif %}
{%- endmacro %}
