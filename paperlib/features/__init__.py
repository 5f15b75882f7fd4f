"""Features of a trained network (S3): graph signatures, temporal signatures, the named feature sets
and the arrays of a population.

Modules
-------
``signatures``
    graph signatures and temporal signatures: :func:`aggregate`, :class:`TemporalSignature`.
``sets``
    the named feature sets, ours and the baselines (:data:`FEATURE_SETS`), and how each is computed
    from one snapshot.
``population``
    :class:`PopulationFeatures`: every feature set of every run of a population and epoch, cached;
    labels, configurations and the information horizon.
"""

from .signatures import (  # noqa: F401
    AGGREGATORS, MODES, aggregate_rows, aggregate, smooth, TemporalSignature, SnapshotAt
)
from .sets import (  # noqa: F401
    WEIGHT_STATS, SIZE_AWARE, CONFIG_COLUMNS, MissingEpochError, FeatureSet, FEATURE_SETS, STORED, COMBINED,
    SIZE_AWARE_SETS, feature_set, size_aware, weight_stats, last_layer
)
from .population import (  # noqa: F401
    PopulationFeatures, population_labels, configuration_groups, compute_population, save_population,
    load_population_file, build_profile_features, load_population
)
