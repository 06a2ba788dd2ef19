"""The study harness: data sets, the phantom, training, evaluation through the gateway, metrics,
the report and the benchmarks.
"""

__all__ = [
    "bench",
    "data",
    "evaluate",
    "metrics",
    "phantom",
    "progress",
    "report",
    "store",
    "train",
]
