"""Tally on Arrow batches, and Tally as a PySpark job.

The native module's shard tasks (``plan``, ``Validator``, ``Reducer``,
``Plan.commit``) take and give Arrow data through the Arrow PyCapsule
protocol; ``tally.spark`` runs them as a Spark job (the ``tally-spark``
command).
"""

from tally._native import (
    FIELDS,
    SHARD_FORMAT_VERSION,
    ArrowBatch,
    Plan,
    Reducer,
    TallyError,
    Validator,
    __version__,
    plan,
    shard_of,
)

__all__ = [
    "FIELDS",
    "SHARD_FORMAT_VERSION",
    "ArrowBatch",
    "Plan",
    "Reducer",
    "TallyError",
    "Validator",
    "__version__",
    "plan",
    "shard_of",
]
