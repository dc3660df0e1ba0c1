-- Order lines enriched with their order, product and customer. The line's own unit_price is the price paid.
select
    items.order_item_id,
    items.order_id,
    orders.customer_id,
    items.product_id,
    orders.status,
    orders.status = 'cancelled' as is_cancelled,
    orders.ordered_at,
    {{ dbt.cast('orders.ordered_at', 'date') }} as order_date,
    items.quantity,
    items.unit_price,
    {{ dbt.cast('items.quantity * items.unit_price', mozart_type_amount()) }} as line_amount,
    products.sku,
    products.product_name,
    products.category,
    customers.email as customer_email,
    customers.country_code as customer_country_code
from {{ ref('stg_order_items') }} as items
inner join {{ ref('stg_orders') }} as orders
    on orders.order_id = items.order_id
left join {{ ref('stg_products') }} as products
    on products.product_id = items.product_id
left join {{ ref('stg_customers') }} as customers
    on customers.customer_id = orders.customer_id
