-- Products, current state (mode from var `tables`: full -> the run date's snapshot).
{{ config(materialized=mozart_staging_materialization('products'), unique_key=mozart_table_spec('products').primary_key,
           mozart_delta=true) }}
{%- set run = mozart_model_run() %}
{{ mozart_incremental_marker(run) }}
with current_rows as (
    {{ mozart_current_state('products', run) }}
)
select
    {{ dbt.cast('product_id', dbt.type_int()) }} as product_id,
    {{ dbt.cast('sku', dbt.type_string()) }} as sku,
    {{ dbt.cast('name', dbt.type_string()) }} as product_name,
    {{ dbt.cast('category', dbt.type_string()) }} as category,
    {{ dbt.cast('unit_price', mozart_type_price()) }} as unit_price,
    {{ dbt.cast('updated_at', mozart_type_timestamp()) }} as updated_at,
    _mozart_date,
    _mozart_extracted_at
    {{- mozart_gone_column(run) }}
from current_rows
