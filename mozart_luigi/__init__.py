"""mozart_luigi: multi-tenant ETL (sources -> Parquet on S3 -> Iceberg via Trino -> dbt), run by Luigi.

``luigi --module mozart_luigi AllTenants --date 2026-11-28`` finds the tasks here.
Importing this package reads no configuration and opens no connection.
"""

from mozart_luigi.tasks.dbt import DbtRun
from mozart_luigi.tasks.extract import ExtractTable
from mozart_luigi.tasks.load import LoadIceberg
from mozart_luigi.tasks.pipeline import AllTenants, TenantPipeline

__all__ = ["AllTenants", "DbtRun", "ExtractTable", "LoadIceberg", "TenantPipeline"]
__version__ = "0.1.0"
