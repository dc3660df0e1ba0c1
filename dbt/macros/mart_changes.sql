{#- What an incremental run of the marts recomputes (dbt/README.md, "Incremental runs"). -#}

{#- SQL: the rows of `table`'s staged state that this run changed, each key's previous row and its new row
    (the key and foreign-key columns keep their raw names in both):
    - an `incremental` table: `{staging model}__delta`, written by its merge this run;
    - a `full` table: the symmetric difference of the raw snapshots of the previous as_of and of the run
      date (the run was refused as incremental if the previous snapshot changed since it was consumed). -#}
{% macro mozart_changed_rows(table, run) -%}
  {%- set spec = mozart_table_spec(table) -%}
  {%- if spec.mode == 'incremental' -%}
    {%- set staged = ref('stg_' ~ table) -%}
    select * from {{ staged.incorporate(path={'identifier': staged.identifier ~ '__delta'}) }}
  {%- else -%}
    {%- set relation = source('raw', table) -%}
    {%- set columns = [] -%}
    {%- for column in adapter.get_columns_in_relation(relation) | map(attribute='name') -%}
      {%- if not modules.re.fullmatch('[a-z_][a-z0-9_]*', column) -%}
        {{ exceptions.raise_compiler_error("table " ~ table ~ ": unexpected column name " ~ (column | tojson)) }}
      {%- endif -%}
      {%- if column not in ['_mozart_date', '_mozart_extracted_at'] -%}{%- do columns.append(column) -%}{%- endif -%}
    {%- endfor -%}
    {%- set now = mozart_date_literal(mozart_checked_date(run.as_of)) -%}
    {%- set before = mozart_date_literal(mozart_checked_date(run.previous_as_of)) -%}
    select * from (
        select {{ columns | join(', ') }} from {{ relation }} where _mozart_date = {{ now }}
        except
        select {{ columns | join(', ') }} from {{ relation }} where _mozart_date = {{ before }}
    ) as added
    union all
    select * from (
        select {{ columns | join(', ') }} from {{ relation }} where _mozart_date = {{ before }}
        except
        select {{ columns | join(', ') }} from {{ relation }} where _mozart_date = {{ now }}
    ) as removed
  {%- endif -%}
{%- endmacro %}


{#- A date read back from the warehouse, as a checked 'YYYY-MM-DD' string (it is rendered into SQL). -#}
{% macro mozart_checked_date(value) -%}
  {%- set text = value | string -%}
  {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', text) -%}
    {{ exceptions.raise_compiler_error("not a date: " ~ (text | tojson)) }}
  {%- endif -%}
  {{ return(text) }}
{%- endmacro %}


{#- SQL: the order days whose orders or lines changed (daily_revenue's keys to recompute). -#}
{% macro mozart_affected_order_dates(run) -%}
    select {{ dbt.cast('changed_orders.ordered_at', 'date') }} as order_date
    from ({{ mozart_changed_rows('orders', run) }}) as changed_orders
    union
    select {{ dbt.cast('orders.ordered_at', 'date') }} as order_date
    from {{ ref('stg_orders') }} as orders
    where orders.order_id in (select changed_items.order_id from ({{ mozart_changed_rows('order_items', run) }}) as changed_items)
{%- endmacro %}


{#- SQL: the customers whose row or orders (or their lines) changed (customer_lifetime_value's keys). -#}
{% macro mozart_affected_customers(run) -%}
    select changed_orders.customer_id from ({{ mozart_changed_rows('orders', run) }}) as changed_orders
    union
    select orders.customer_id
    from {{ ref('stg_orders') }} as orders
    where orders.order_id in (select changed_items.order_id from ({{ mozart_changed_rows('order_items', run) }}) as changed_items)
    union
    select changed_customers.customer_id from ({{ mozart_changed_rows('customers', run) }}) as changed_customers
{%- endmacro %}


{#- SQL: the products whose row or order lines (or their orders) changed (product_performance's keys). -#}
{% macro mozart_affected_products(run) -%}
    select changed_items.product_id from ({{ mozart_changed_rows('order_items', run) }}) as changed_items
    union
    select items.product_id
    from {{ ref('stg_order_items') }} as items
    where items.order_id in (select changed_orders.order_id from ({{ mozart_changed_rows('orders', run) }}) as changed_orders)
    union
    select changed_products.product_id from ({{ mozart_changed_rows('products', run) }}) as changed_products
{%- endmacro %}
