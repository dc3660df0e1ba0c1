-- Per product: units, revenue and orders from non-cancelled order lines, with the current list price.
with per_product as (
    select
        product_id,
        sum(quantity) as units_sold,
        sum(line_amount) as revenue,
        count(distinct order_id) as order_count,
        min(order_date) as first_sold_date,
        max(order_date) as last_sold_date
    from {{ ref('int_order_lines') }}
    where not is_cancelled
    group by product_id
)
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
