"""(being written)"""
import luigi
class ExtractTable(luigi.Task):
    pass
