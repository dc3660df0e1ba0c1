-- Per customer: non-cancelled orders, their total value, and the span between first and last order day.
with per_customer as (
    select
        customer_id,
        count(*) as order_count,
        sum(order_amount) as lifetime_value,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date
    from {{ ref('int_orders') }}
    where not is_cancelled
    group by customer_id
)
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
