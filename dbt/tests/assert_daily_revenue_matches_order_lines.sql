-- The mart's total revenue equals the sum of the non-cancelled order lines it was built from (weekly).
{{ config(tags=['weekly']) }}
with mart as (
    select coalesce(sum(revenue), 0) as revenue from {{ ref('daily_revenue') }}
),
lines as (
    select coalesce(sum(line_amount), 0) as revenue
    from {{ ref('int_order_lines') }}
    where not is_cancelled
)
select mart.revenue as mart_revenue, lines.revenue as lines_revenue
from mart cross join lines
where mart.revenue <> lines.revenue
