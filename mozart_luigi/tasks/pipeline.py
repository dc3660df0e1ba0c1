"""(being written)"""
import luigi
class AllTenants(luigi.WrapperTask):
    pass
class TenantPipeline(luigi.WrapperTask):
    pass
