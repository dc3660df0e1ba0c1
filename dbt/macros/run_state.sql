{#- Incremental runs: what changed in the raw tables since the last successful build (dbt/README.md,
    "Incremental runs").

    {tenant}_staging.mozart_state  what each raw partition (<= as_of) looked like when the last successful
                                   run consumed it (a fingerprint per table and _mozart_date), its as_of
                                   date and version. Dropped at the start of every run that builds models,
                                   written again only when every node of that run succeeded.
    {tenant}_staging.mozart_run    this run: the fingerprint of every visible partition now, whether it
                                   differs from the state (new, replaced, removed), the run's mode
                                   ('incremental' or 'full') and the previous as_of.

    A fingerprint is cheap metadata: on Trino the partition's live Iceberg files (an order-insensitive
    checksum of their paths, their count and rows: files are immutable, so the same files are the same
    rows); elsewhere (DuckDB) the partition's row count and min/max _mozart_extracted_at (every load
    writes its extract's own timestamp). -#}

{#- bump when the incremental logic changes: the next run of every tenant is then a full rebuild -#}
{% macro mozart_state_version() -%}
  {{ return('mozart-incremental-1') }}
{%- endmacro %}


{#- The tables whose changes the marts follow through `{model}__delta` (the incremental staging models). -#}
{% macro mozart_delta_tables() -%}
  {{ return(['orders', 'order_items']) }}
{%- endmacro %}


{% macro mozart_state_relation(name) -%}
  {{ return(api.Relation.create(database=target.database, schema=generate_schema_name('staging', none),
                                identifier=name, type='table')) }}
{%- endmacro %}


{#- SQL: (partition_date, fingerprint) of every partition of raw `table`. -#}
{% macro mozart_fingerprints(table) -%}
  {{ return(adapter.dispatch('mozart_fingerprints', 'mozart')(table)) }}
{%- endmacro %}

{% macro trino__mozart_fingerprints(table) -%}
  {%- set relation = source('raw', table) -%}
  select
      "partition"._mozart_date as partition_date,
      to_hex(checksum(file_path)) || '/' || cast(count(*) as varchar) || '/'
        || cast(sum(record_count) as varchar) as fingerprint
  from {{ relation.database }}.{{ relation.schema }}."{{ relation.identifier }}$files"
  group by "partition"._mozart_date
{%- endmacro %}

{% macro default__mozart_fingerprints(table) -%}
  select
      _mozart_date as partition_date,
      cast(count(*) as varchar) || '/' || coalesce(cast(min(_mozart_extracted_at) as varchar), '-') || '/'
        || coalesce(cast(max(_mozart_extracted_at) as varchar), '-') as fingerprint
  from {{ source('raw', table) }}
  group by _mozart_date
{%- endmacro %}


{#- A digest of what the state depends on besides the data: this logic's version, the `tables` var and every
    model's code. A deploy that changes any of them makes the next run full. -#}
{% macro mozart_code_version() -%}
  {%- set parts = [mozart_state_version(), var('tables', {}) | tojson] -%}
  {%- for node in graph.nodes.values() | sort(attribute='unique_id') if node.resource_type == 'model' -%}
    {%- do parts.append(node.unique_id ~ ':' ~ node.checksum.checksum) -%}
  {%- endfor -%}
  {{ return(local_md5(parts | join('|'))) }}
{%- endmacro %}


{#- Why this run cannot be incremental (a list of reasons; empty: it can be, as far as the code knows; the
    data checks follow in SQL). -#}
{% macro mozart_full_reasons(run_date, state) -%}
  {%- set reasons = [] -%}
  {%- if flags.FULL_REFRESH -%}{%- do reasons.append('--full-refresh') -%}{%- endif -%}
  {%- if run_date is none -%}{%- do reasons.append('no run date') -%}{%- endif -%}
  {%- if state is none -%}{%- do reasons.append('no state (first run, or the last run did not succeed)') -%}{%- endif -%}
  {%- for table in var('tables', {}) -%}
    {%- set spec = mozart_table_spec(table) -%}
    {%- if spec.deletes == 'keys' -%}{%- do reasons.append(table ~ ' has deletes: keys') -%}{%- endif -%}
  {%- endfor -%}
  {%- for table in mozart_delta_tables() -%}
    {%- if mozart_table_spec(table).mode != 'incremental' -%}
      {%- do reasons.append(table ~ ' is not incremental') -%}
    {%- endif -%}
  {%- endfor -%}
  {%- for node in graph.nodes.values() if node.resource_type == 'model' -%}
    {%- if node.unique_id not in selected_resources -%}
      {%- do reasons.append('not every model is selected') -%}
    {%- elif node.config.materialized == 'mozart_incremental' -%}
      {%- set existing = adapter.get_relation(database=node.database, schema=node.schema,
                                               identifier=node.alias) -%}
      {%- if existing is none or not existing.is_table -%}
        {%- do reasons.append(node.name ~ ' does not exist') -%}
      {%- endif -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if state is not none and run_date is not none -%}
    {%- if state.version != mozart_code_version() -%}
      {%- do reasons.append('code or tables changed since ' ~ state.as_of) -%}
    {%- elif state.as_of | string > run_date -%}
      {%- do reasons.append('run date ' ~ run_date ~ ' is before the last one, ' ~ state.as_of) -%}
    {%- endif -%}
  {%- endif -%}
  {{ return(reasons | unique | list) }}
{%- endmacro %}


{#- on-run-start: decide the mode, record this run's fingerprints, invalidate the state. Only for commands
    that build models; a run that selects no model (dbt test) leaves the state alone. -#}
{% macro mozart_prepare_run() -%}
  {%- if not execute or flags.WHICH not in ['run', 'build'] -%}{{ return('') }}{%- endif -%}
  {%- set models = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
                   | map(attribute='unique_id') | select('in', selected_resources) | list -%}
  {%- if not models -%}{{ return('') }}{%- endif -%}
  {%- set run_date = mozart_run_date() -%}
  {%- set state_relation = mozart_state_relation('mozart_state') -%}
  {%- set run_relation = mozart_state_relation('mozart_run') -%}
  {%- do adapter.create_schema(state_relation) -%}
  {%- set state = none -%}
  {%- if adapter.get_relation(state_relation.database, state_relation.schema, state_relation.identifier) -%}
    {%- set rows = run_query('select max(as_of), max(version), count(*) from ' ~ state_relation) -%}
    {%- if rows and rows.rows[0][2] > 0 -%}
      {%- set state = {'as_of': rows.rows[0][0], 'version': rows.rows[0][1]} -%}
    {%- endif -%}
  {%- endif -%}
  {%- set reasons = mozart_full_reasons(run_date, state) -%}
  {%- set full_tables = [] -%}
  {%- for table in var('tables', {}) -%}
    {%- if not modules.re.fullmatch('[a-z][a-z0-9_]*', table) -%}
      {{ exceptions.raise_compiler_error("invalid table name in dbt var 'tables': " ~ (table | tojson)) }}
    {%- endif -%}
  {%- endfor -%}
  {%- for table in var('tables', {}) if mozart_table_spec(table).mode == 'full' -%}
    {%- do full_tables.append(table) -%}
  {%- endfor -%}
  {%- set version = mozart_code_version() -%}
  {%- set previous = mozart_date_literal(mozart_checked_date(state.as_of)) if state is not none else 'cast(null as date)' -%}
  {%- call statement('mozart_run', fetch_result=False) -%}
    create or replace table {{ run_relation }} as
    with now_parts as (
      {%- for table in var('tables', {}) %}
        {{ 'union all' if not loop.first }}
        select '{{ table }}' as table_name, partition_date, fingerprint
        from ({{ mozart_fingerprints(table) }}) as fp_{{ loop.index }}
        {%- if run_date is not none %}
        where partition_date <= {{ mozart_date_literal(run_date) }}
        {%- endif %}
      {%- endfor %}
    ),
    state_parts as (
      {%- if state is not none %}
        select table_name, partition_date, fingerprint from {{ state_relation }}
      {%- else %}
        select table_name, partition_date, fingerprint from now_parts where 1 = 0
      {%- endif %}
    ),
    parts as (
      select
          coalesce(n.table_name, s.table_name) as table_name,
          coalesce(n.partition_date, s.partition_date) as partition_date,
          n.fingerprint,
          n.fingerprint is distinct from s.fingerprint as changed
      from now_parts as n
      full outer join state_parts as s
        on s.table_name = n.table_name and s.partition_date = n.partition_date
    )
    select
        parts.*,
        case
          when {{ 'true' if reasons else 'false' }} then 'full'
          {%- if full_tables and state is not none %}
          {#- a `full` table's snapshot of the previous as_of is what the marts were built from: if it was
              replaced since, the marts' difference cannot be computed -#}
          when exists (
              select 1 from parts as p
              where p.changed and p.partition_date = {{ previous }}
                and p.table_name in ('{{ full_tables | join("', '") }}')
          ) then 'full'
          {%- endif %}
          else 'incremental'
        end as mode,
        {{ previous }} as previous_as_of,
        {{ mozart_date_literal(run_date) if run_date is not none else 'cast(null as date)' }} as as_of,
        '{{ version }}' as version
    from parts
  {%- endcall -%}
  {%- do adapter.cache_added(run_relation) -%}
  {%- do adapter.drop_relation(state_relation) -%}
  {%- set info = mozart_run_info(refresh=True) -%}
  {%- do adapter.commit() -%}  {#- the run's mode and the state's removal are durable before any model runs -#}
  {%- do log('mozart dbt run: ' ~ info.mode ~ ' (' ~ ((reasons | join('; ')) or (info.changed_count ~ ' partitions changed since ' ~ info.previous_as_of)) ~ ')', info=True) -%}
  {{ return('') }}
{%- endmacro %}


{#- on-run-end: the state becomes this run's fingerprints, only when every model of the project was built and
    every node succeeded. -#}
{% macro mozart_commit_run(results) -%}
  {%- if not execute or flags.WHICH not in ['run', 'build'] -%}{{ return('') }}{%- endif -%}
  {%- set run_relation = mozart_state_relation('mozart_run') -%}
  {%- set state_relation = mozart_state_relation('mozart_state') -%}
  {%- set built = [] -%}
  {%- set failed = [] -%}
  {%- for result in results -%}
    {%- if result.status not in ['success', 'pass', 'warn'] -%}{%- do failed.append(result.node.unique_id) -%}{%- endif -%}
    {%- if result.node.resource_type == 'model' -%}{%- do built.append(result.node.unique_id) -%}{%- endif -%}
  {%- endfor -%}
  {%- set models = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
                   | map(attribute='unique_id') | list -%}
  {%- set missing = models | reject('in', built) | list -%}
  {%- if failed or missing or mozart_run_date() is none
         or not adapter.get_relation(run_relation.database, run_relation.schema, run_relation.identifier) -%}
    {%- do log('mozart dbt run: state not recorded (next run is full): ' ~ (failed + missing) | length ~ ' nodes failed or not built', info=True) -%}
    {{ return('') }}
  {%- endif -%}
  {%- call statement('mozart_state', fetch_result=False) -%}
    create or replace table {{ state_relation }} as
    select table_name, partition_date, fingerprint, as_of, version
    from {{ run_relation }}
    where fingerprint is not null
  {%- endcall -%}
  {%- do adapter.cache_added(state_relation) -%}
  {%- do adapter.commit() -%}
  {{ return('') }}
{%- endmacro %}


{#- This run's mode and changes, from {tenant}_staging.mozart_run: {'mode', 'previous_as_of', 'as_of',
    'changed': {table: ['YYYY-MM-DD', ...]}, 'changed_count'}. 'full' when there is no such table (dbt
    compile, a first run). -#}
{% macro mozart_run_info(refresh=False) -%}
  {%- set info = {'mode': 'full', 'previous_as_of': none, 'as_of': none, 'changed': {}, 'changed_count': 0} -%}
  {%- if not execute -%}{{ return(info) }}{%- endif -%}
  {%- set relation = mozart_state_relation('mozart_run') -%}
  {%- if not refresh and not adapter.get_relation(relation.database, relation.schema, relation.identifier) -%}
    {{ return(info) }}
  {%- endif -%}
  {%- set rows = run_query(
        'select mode, previous_as_of, as_of, table_name, partition_date, changed from ' ~ relation
        ~ ' where changed or partition_date = (select min(partition_date) from ' ~ relation ~ ')') -%}
  {%- for row in rows.rows -%}
    {%- do info.update({'mode': row[0], 'previous_as_of': row[1], 'as_of': row[2]}) -%}
    {%- if row[5] -%}
      {%- do info.changed.setdefault(row[3], []).append(row[4] | string) -%}
      {%- do info.update({'changed_count': info.changed_count + 1}) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if info.as_of is none or (mozart_run_date() or '') != info.as_of | string -%}
    {%- do info.update({'mode': 'full'}) -%}
  {%- endif -%}
  {{ return(info) }}
{%- endmacro %}


{#- This run for the model being built: mozart_run_info() plus `incremental`: true when the model applies this
    run's changes to its previous contents (mode incremental and the model's table exists), false when it is
    rebuilt from scratch. A model calls it once and passes it on (each call is a query). -#}
{% macro mozart_model_run() -%}
  {%- set info = {'incremental': false, 'mode': 'full', 'changed': {}} -%}
  {%- if not execute or model.config.materialized != 'mozart_incremental' -%}{{ return(info) }}{%- endif -%}
  {%- set existing = adapter.get_relation(this.database, this.schema, this.identifier) -%}
  {%- if existing is none or not existing.is_table -%}{{ return(info) }}{%- endif -%}
  {%- set info = mozart_run_info() -%}
  {%- do info.update({'incremental': info.mode == 'incremental'}) -%}
  {{ return(info) }}
{%- endmacro %}


{#- The first line of an incremental run's SQL: the `mozart_incremental` materialization merges when it finds
    it, and rebuilds otherwise, so the SQL and the way it is written always agree. -#}
{% macro mozart_incremental_marker(run) -%}
  {%- if run.incremental -%}-- mozart: incremental changes{%- endif -%}
{%- endmacro %}


{#- SQL: `_mozart_date in (<the changed partitions of table>)`, or a false condition. -#}
{% macro mozart_in_changed(table, run, column='_mozart_date') -%}
  {%- set dates = run.changed.get(table, []) | sort -%}
  {%- if dates -%}
    {{ column }} in ({% for d in dates %}{{ ', ' if not loop.first }}{{ mozart_date_literal(mozart_checked_date(d)) }}{% endfor %})
  {%- else -%}
    1 = 0
  {%- endif -%}
{%- endmacro %}
