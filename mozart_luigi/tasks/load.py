"""(being written)"""
import luigi
class LoadIceberg(luigi.Task):
    pass
