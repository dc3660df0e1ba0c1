-- Revenue per order day. Cancelled orders are counted apart and bring no revenue.
-- Incremental runs recompute only the days whose orders or lines changed (macros/mart_changes.sql).
-- depends_on: {{ ref('stg_orders') }}, {{ ref('stg_order_items') }}
{{ config(materialized='mozart_incremental', unique_key=['order_date']) }}
{%- set run = mozart_model_run() %}
{%- set incremental = run.incremental %}
{{ mozart_incremental_marker(run) }}
with
{%- if incremental %}
affected as (
    {{ mozart_affected_order_dates(run) }}
),
{%- endif %}
orders as (
    select * from {{ ref('int_orders') }}
    {%- if incremental %}
    where order_date in (select order_date from affected)
    {%- endif %}
),
per_day as (
    select
        order_date,
        count(case when not is_cancelled then order_id end) as order_count,
        count(case when is_cancelled then order_id end) as cancelled_order_count,
        count(distinct case when not is_cancelled then customer_id end) as customer_count,
        {{ dbt.cast('sum(case when is_cancelled then 0 else units end)', dbt.type_bigint()) }} as units_sold,
        {{ dbt.cast('sum(case when is_cancelled then 0 else order_amount end)', mozart_type_amount()) }} as revenue
    from orders
    group by order_date
)
{%- if incremental %}
select
    affected.order_date,
    per_day.order_count,
    per_day.cancelled_order_count,
    per_day.customer_count,
    per_day.units_sold,
    per_day.revenue,
    per_day.order_date is null as _mozart_gone
from affected
left join per_day
    on per_day.order_date = affected.order_date
{%- else %}
select * from per_day
{%- endif %}
