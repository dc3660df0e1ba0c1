{#- The tenant whose schemas this run builds, from the `tenant` var, validated like tenant ids in
    mozart_luigi.config (^[a-z][a-z0-9_]{0,39}$) because it becomes part of schema names in SQL. -#}
{% macro mozart_tenant() -%}
  {%- set tenant = var('tenant', none) -%}
  {%- if tenant is none -%}
    {{ exceptions.raise_compiler_error(
         "dbt var 'tenant' is required, e.g. --vars '{tenant: acme}'") }}
  {%- endif -%}
  {%- if tenant is not string or not modules.re.fullmatch('[a-z][a-z0-9_]{0,39}', tenant) -%}
    {{ exceptions.raise_compiler_error(
         "invalid dbt var 'tenant' " ~ (tenant | string | tojson)
         ~ ": must match ^[a-z][a-z0-9_]{0,39}$ (see config/tenants.yaml)") }}
  {%- endif -%}
  {{- return(tenant) -}}
{%- endmacro %}


{#- The run date (var `run_date`, else env MOZART_RUN_DATE) as a validated 'YYYY-MM-DD' string, or none. -#}
{% macro mozart_run_date() -%}
  {#- the var when given (dbt by hand), else MOZART_RUN_DATE: mozart's runner sets the env var, which unlike a
      changed var keeps dbt's partial parsing from one date to the next. While parsing (`execute` is false)
      the date is not read at all: the SQL is rendered again at run time, and an env var read while parsing
      is recorded in the manifest, so a new date would make dbt re-parse every file that reads it. -#}
  {%- if not execute -%}
    {{- return(none) -}}
  {%- endif -%}
  {%- set run_date = var('run_date', none) -%}
  {%- if run_date is none or run_date == '' -%}
    {%- set run_date = env_var('MOZART_RUN_DATE', '') -%}
  {%- endif -%}
  {%- if run_date is none or run_date == '' -%}
    {{- return(none) -}}
  {%- endif -%}
  {%- set run_date = run_date | string -%}
  {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', run_date) -%}
    {{ exceptions.raise_compiler_error(
         "invalid run date (dbt var 'run_date' or MOZART_RUN_DATE) " ~ (run_date | tojson)
         ~ ": must be YYYY-MM-DD") }}
  {%- endif -%}
  {{- return(run_date) -}}
{%- endmacro %}
