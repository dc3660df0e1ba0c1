{#- Materialization `mozart_incremental` (dbt/README.md, "Incremental runs").

    Full run: `create or replace table` from the model's SQL (atomic on Iceberg, as the marts' `table` was).
    Incremental run (the model's SQL holds mozart_incremental_marker(), which it renders only when
    mozart_model_run() said so: the table exists): the SQL returns only the rows of the keys this run
    affects, with a boolean `_mozart_gone` (true: the key has no row any more), and one MERGE on `unique_key`
    (a list of columns) deletes the gone keys, updates the others and inserts the new ones: one commit on
    Iceberg, so readers see the previous contents or the new ones.
    `mozart_delta: true` (the staging models): the rows are first kept in `{model}__changes` (replaced by the
    next incremental run, left in place after it: what the last run merged), and `{model}__delta` gets the
    previous rows of every key the merge touches plus their new rows: the models downstream read it to know
    which of their own keys are affected. -#}

{% materialization mozart_incremental, default -%}
  {%- set unique_key = config.require('unique_key') -%}
  {%- set unique_key = [unique_key] if unique_key is string else unique_key -%}
  {%- for column in unique_key -%}
    {%- if not modules.re.fullmatch('[a-z_][a-z0-9_]*', column) -%}
      {{ exceptions.raise_compiler_error("invalid unique_key column " ~ (column | tojson)) }}
    {%- endif -%}
  {%- endfor -%}
  {%- set existing = load_cached_relation(this) -%}
  {%- set target_relation = this.incorporate(type='table') -%}
  {%- set incremental = '-- mozart: incremental changes' in sql -%}
  {%- if incremental and (existing is none or not existing.is_table) -%}
    {#- never write an incremental run's few rows as the whole table -#}
    {{ exceptions.raise_compiler_error(this ~ ": incremental SQL but no table to merge into") }}
  {%- endif -%}
  {%- set same_key -%}
    {% for k in unique_key %}{{ ' and ' if not loop.first }}mozart_target.{{ k }} is not distinct from mozart_source.{{ k }}{% endfor %}
  {%- endset -%}

  {{ run_hooks(pre_hooks) }}

  {%- if not incremental -%}
    {%- if existing is not none and not existing.is_table -%}
      {%- do adapter.drop_relation(existing) -%}
    {%- endif -%}
    {%- call statement('main') -%}
      create or replace table {{ target_relation }} as
      {{ sql }}
    {%- endcall -%}
  {%- else -%}
    {%- set columns = adapter.get_columns_in_relation(target_relation) | map(attribute='name') | list -%}
    {%- for column in columns if not modules.re.fullmatch('[a-z_][a-z0-9_]*', column) -%}
      {{ exceptions.raise_compiler_error(this ~ ": unexpected column name " ~ (column | tojson)) }}
    {%- endfor -%}
    {%- if config.get('mozart_delta', false) -%}
      {%- set changes = target_relation.incorporate(path={'identifier': this.identifier ~ '__changes'}) -%}
      {%- call statement('mozart_changes') -%}
        create or replace table {{ changes }} as
        {{ sql }}
      {%- endcall -%}
      {%- set delta = target_relation.incorporate(path={'identifier': this.identifier ~ '__delta'}) -%}
      {%- call statement('mozart_delta') -%}
        create or replace table {{ delta }} as
        select {{ columns | join(', ') }} from {{ target_relation }} as mozart_target
        where exists (select 1 from {{ changes }} as mozart_source where {{ same_key }})
        union all
        select {{ columns | join(', ') }} from {{ changes }} where not _mozart_gone
      {%- endcall -%}
      {%- set source_sql = 'select * from ' ~ changes -%}
    {%- else -%}
      {%- set source_sql = sql -%}
    {%- endif -%}
    {%- call statement('main') -%}
      merge into {{ target_relation }} as mozart_target
      using (
        {{ source_sql }}
      ) as mozart_source
      on {{ same_key }}
      when matched and mozart_source._mozart_gone then delete
      when matched then update set
        {% for c in columns %}{{ ', ' if not loop.first }}{{ c }} = mozart_source.{{ c }}{% endfor %}
      when not matched and not mozart_source._mozart_gone then insert ({{ columns | join(', ') }})
        values ({% for c in columns %}{{ ', ' if not loop.first }}mozart_source.{{ c }}{% endfor %})
    {%- endcall -%}
  {%- endif -%}

  {{ run_hooks(post_hooks) }}
  {%- do adapter.commit() -%}
  {{ return({'relations': [target_relation]}) }}
{%- endmaterialization %}
