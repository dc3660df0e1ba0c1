{#- Reconciliation: a staging model has exactly as many rows as the current state of its raw table
    (full: rows of the snapshot partition; incremental: distinct primary keys across partitions, minus the
    keys deleted in the source when the table has `deletes: keys`).
    Returns one row (staged vs expected) when they differ. -#}
{% test reconciles_with_raw(model, table) %}
with staged as (
    select count(*) as staged_rows from {{ model }}
),
expected as (
    {{ mozart_expected_current_rows(table) }}
)
select staged.staged_rows, expected.expected_rows
from staged cross join expected
where staged.staged_rows <> expected.expected_rows
{% endtest %}
