-- Order items, current state (mode from var `tables`: incremental -> latest row per order_item_id).
{{ config(materialized=mozart_staging_materialization('order_items'), unique_key=mozart_table_spec('order_items').primary_key,
           mozart_delta=true) }}
{%- set run = mozart_model_run() %}
{{ mozart_incremental_marker(run) }}
with current_rows as (
    {{ mozart_current_state('order_items', run) }}
)
select
    {{ dbt.cast('order_item_id', dbt.type_int()) }} as order_item_id,
    {{ dbt.cast('order_id', dbt.type_int()) }} as order_id,
    {{ dbt.cast('product_id', dbt.type_int()) }} as product_id,
    {{ dbt.cast('quantity', dbt.type_int()) }} as quantity,
    {{ dbt.cast('unit_price', mozart_type_price()) }} as unit_price,
    {{ dbt.cast('updated_at', mozart_type_timestamp()) }} as updated_at,
    _mozart_date,
    _mozart_extracted_at
    {{- mozart_gone_column(run) }}
from current_rows
