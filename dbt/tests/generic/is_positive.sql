{#- Every non-null value of the column is > 0. -#}
{% test is_positive(model, column_name) %}
select {{ column_name }} from {{ model }} where {{ column_name }} <= 0
{% endtest %}
