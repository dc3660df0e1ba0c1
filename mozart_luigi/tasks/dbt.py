"""(being written)"""
import luigi
class DbtRun(luigi.Task):
    pass
