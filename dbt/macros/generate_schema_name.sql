{#- One set of schemas per tenant and layer: {tenant}_staging, {tenant}_intermediate, {tenant}_mart.
    Nodes without a custom schema (none today) land in the tenant's own schema. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
  {%- set tenant = mozart_tenant() -%}
  {%- if custom_schema_name is none -%}
    {{ tenant }}
  {%- else -%}
    {{ tenant }}_{{ custom_schema_name | trim }}
  {%- endif -%}
{%- endmacro %}
