-- Orders, current state (mode from var `tables`: incremental -> latest row per order_id).
{{ config(materialized=mozart_staging_materialization('orders'), unique_key=mozart_table_spec('orders').primary_key,
           mozart_delta=true) }}
{%- set run = mozart_model_run() %}
{{ mozart_incremental_marker(run) }}
with current_rows as (
    {{ mozart_current_state('orders', run) }}
)
select
    {{ dbt.cast('order_id', dbt.type_int()) }} as order_id,
    {{ dbt.cast('customer_id', dbt.type_int()) }} as customer_id,
    {{ dbt.cast('status', dbt.type_string()) }} as status,
    {{ dbt.cast('ordered_at', mozart_type_timestamp()) }} as ordered_at,
    {{ dbt.cast('updated_at', mozart_type_timestamp()) }} as updated_at,
    _mozart_date,
    _mozart_extracted_at
    {{- mozart_gone_column(run) }}
from current_rows
