-- Revenue per order day. Cancelled orders are counted apart and bring no revenue.
select
    order_date,
    count(case when not is_cancelled then order_id end) as order_count,
    count(case when is_cancelled then order_id end) as cancelled_order_count,
    count(distinct case when not is_cancelled then customer_id end) as customer_count,
    {{ dbt.cast('sum(case when is_cancelled then 0 else units end)', dbt.type_bigint()) }} as units_sold,
    {{ dbt.cast('sum(case when is_cancelled then 0 else order_amount end)', mozart_type_amount()) }} as revenue
from {{ ref('int_orders') }}
group by order_date
