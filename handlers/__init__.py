"""What TorchServe loads and packs: the one handler for every architecture, the entry file
copied into each archive, and the archive builder.
"""

__all__ = [
    "archive",
    "archive_entry",
    "placement",
    "torchserve_handler",
]
