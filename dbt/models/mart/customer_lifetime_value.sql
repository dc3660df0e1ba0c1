-- Per customer: non-cancelled orders, their total value, and the span between first and last order day.
-- Incremental runs recompute only the customers whose row, orders or lines changed (macros/mart_changes.sql).
-- depends_on: {{ ref('stg_orders') }}, {{ ref('stg_order_items') }}
{{ config(materialized='mozart_incremental', unique_key=['customer_id']) }}
{%- set run = mozart_model_run() %}
{%- set incremental = run.incremental %}
{{ mozart_incremental_marker(run) }}
with
{%- if incremental %}
affected as (
    {{ mozart_affected_customers(run) }}
),
{%- endif %}
per_customer as (
    select
        customer_id,
        count(*) as order_count,
        sum(order_amount) as lifetime_value,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date
    from {{ ref('int_orders') }}
    where not is_cancelled
    {%- if incremental %}
      and customer_id in (select customer_id from affected)
    {%- endif %}
    group by customer_id
),
per_customer_row as (
    select
        customers.customer_id,
        customers.email,
        customers.customer_name,
        customers.country_code,
        {{ dbt.cast('coalesce(per_customer.order_count, 0)', dbt.type_bigint()) }} as order_count,
        {{ dbt.cast('coalesce(per_customer.lifetime_value, 0)', mozart_type_amount()) }} as lifetime_value,
        per_customer.first_order_date,
        per_customer.last_order_date,
        {{ dbt.datediff('per_customer.first_order_date', 'per_customer.last_order_date', 'day') }} as active_days
    from {{ ref('stg_customers') }} as customers
    left join per_customer
        on per_customer.customer_id = customers.customer_id
    {%- if incremental %}
    where customers.customer_id in (select customer_id from affected)
    {%- endif %}
)
{%- if incremental %}
select
    affected.customer_id,
    per_customer_row.email,
    per_customer_row.customer_name,
    per_customer_row.country_code,
    per_customer_row.order_count,
    per_customer_row.lifetime_value,
    per_customer_row.first_order_date,
    per_customer_row.last_order_date,
    per_customer_row.active_days,
    per_customer_row.customer_id is null as _mozart_gone
from affected
left join per_customer_row
    on per_customer_row.customer_id = affected.customer_id
{%- else %}
select * from per_customer_row
{%- endif %}
