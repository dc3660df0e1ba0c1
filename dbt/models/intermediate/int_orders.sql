-- One row per order with its totals (orders without lines count with zero amount).
with line_totals as (
    select
        order_id,
        count(*) as line_count,
        sum(quantity) as units,
        sum(line_amount) as order_amount
    from {{ ref('int_order_lines') }}
    group by order_id
)
select
    orders.order_id,
    orders.customer_id,
    orders.status,
    orders.status = 'cancelled' as is_cancelled,
    orders.ordered_at,
    {{ dbt.cast('orders.ordered_at', 'date') }} as order_date,
    coalesce(line_totals.line_count, 0) as line_count,
    {{ dbt.cast('coalesce(line_totals.units, 0)', dbt.type_bigint()) }} as units,
    {{ dbt.cast('coalesce(line_totals.order_amount, 0)', mozart_type_amount()) }} as order_amount
from {{ ref('stg_orders') }} as orders
left join line_totals
    on line_totals.order_id = orders.order_id
