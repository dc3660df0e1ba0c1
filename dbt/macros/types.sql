{#- Column types of the staging layer. Standard SQL where both engines agree; adapter.dispatch where not. -#}

{#- Timestamps keep microseconds: Trino's bare `timestamp` is timestamp(3), DuckDB's is microseconds. -#}
{% macro mozart_type_timestamp() -%}
  {{ return(adapter.dispatch('mozart_type_timestamp', 'mozart')()) }}
{%- endmacro %}

{% macro default__mozart_type_timestamp() -%}
  {{ return(dbt.type_timestamp()) }}
{%- endmacro %}

{% macro trino__mozart_type_timestamp() -%}
  {{ return('timestamp(6)') }}
{%- endmacro %}

{#- Prices as the sources hold them, and sums of them (room for a large tenant's totals). -#}
{% macro mozart_type_price() -%}
  {{ return('decimal(12, 2)') }}
{%- endmacro %}

{% macro mozart_type_amount() -%}
  {{ return('decimal(18, 2)') }}
{%- endmacro %}

{#- A date literal, portable (Trino and DuckDB both accept DATE 'YYYY-MM-DD'). -#}
{% macro mozart_date_literal(value) -%}
  date '{{ value }}'
{%- endmacro %}
