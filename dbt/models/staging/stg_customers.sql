-- Customers, current state (mode from var `tables`: full -> the run date's snapshot).
{{ config(materialized=mozart_staging_materialization('customers'), unique_key=mozart_table_spec('customers').primary_key,
           mozart_delta=true) }}
{%- set run = mozart_model_run() %}
{{ mozart_incremental_marker(run) }}
with current_rows as (
    {{ mozart_current_state('customers', run) }}
)
select
    {{ dbt.cast('customer_id', dbt.type_int()) }} as customer_id,
    {{ dbt.cast('email', dbt.type_string()) }} as email,
    {{ dbt.cast('full_name', dbt.type_string()) }} as customer_name,
    {{ dbt.cast('country', dbt.type_string()) }} as country_code,
    {{ dbt.cast('created_at', mozart_type_timestamp()) }} as created_at,
    {{ dbt.cast('updated_at', mozart_type_timestamp()) }} as updated_at,
    _mozart_date,
    _mozart_extracted_at
    {{- mozart_gone_column(run) }}
from current_rows
