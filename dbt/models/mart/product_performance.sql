-- Per product: units, revenue and orders from non-cancelled order lines, with the current list price.
-- Incremental runs recompute only the products whose row, lines or their orders changed (macros/mart_changes.sql).
-- depends_on: {{ ref('stg_orders') }}, {{ ref('stg_order_items') }}
{{ config(materialized='mozart_incremental', unique_key=['product_id']) }}
{%- set run = mozart_model_run() %}
{%- set incremental = run.incremental %}
{{ mozart_incremental_marker(run) }}
with
{%- if incremental %}
affected as (
    {{ mozart_affected_products(run) }}
),
{%- endif %}
per_product as (
    select
        product_id,
        sum(quantity) as units_sold,
        sum(line_amount) as revenue,
        count(distinct order_id) as order_count,
        min(order_date) as first_sold_date,
        max(order_date) as last_sold_date
    from {{ ref('int_order_lines') }}
    where not is_cancelled
    {%- if incremental %}
      and product_id in (select product_id from affected)
    {%- endif %}
    group by product_id
),
per_product_row as (
    select
        products.product_id,
        products.sku,
        products.product_name,
        products.category,
        products.unit_price as current_unit_price,
        {{ dbt.cast('coalesce(per_product.units_sold, 0)', dbt.type_bigint()) }} as units_sold,
        {{ dbt.cast('coalesce(per_product.revenue, 0)', mozart_type_amount()) }} as revenue,
        {{ dbt.cast('coalesce(per_product.order_count, 0)', dbt.type_bigint()) }} as order_count,
        per_product.first_sold_date,
        per_product.last_sold_date
    from {{ ref('stg_products') }} as products
    left join per_product
        on per_product.product_id = products.product_id
    {%- if incremental %}
    where products.product_id in (select product_id from affected)
    {%- endif %}
)
{%- if incremental %}
select
    affected.product_id,
    per_product_row.sku,
    per_product_row.product_name,
    per_product_row.category,
    per_product_row.current_unit_price,
    per_product_row.units_sold,
    per_product_row.revenue,
    per_product_row.order_count,
    per_product_row.first_sold_date,
    per_product_row.last_sold_date,
    per_product_row.product_id is null as _mozart_gone
from affected
left join per_product_row
    on per_product_row.product_id = affected.product_id
{%- else %}
select * from per_product_row
{%- endif %}
