"""Features of a trained network (S3): graph signatures, temporal signatures and the named sets.

Modules
-------
``signatures``
    graph signatures and temporal signatures: :func:`aggregate`, :class:`TemporalSignature`.
``sets``
    named feature sets, ours and the baselines; the information horizon.
"""

from .signatures import AGGREGATORS, MODES, SnapshotAt, TemporalSignature, aggregate, aggregate_rows, smooth

__all__ = ["AGGREGATORS", "MODES", "SnapshotAt", "TemporalSignature", "aggregate", "aggregate_rows", "smooth"]
