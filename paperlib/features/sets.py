"""Named feature sets, ours and the baselines, per run and per epoch (step S3).

Every stored feature set is computed for every run of a population and every epoch
``0..T`` (``T`` = the population's ``t_max``, or fewer where no run trained that
long) and cached as one array of shape ``(n_runs, T + 1, k)``: ``k`` values per
epoch, **NaN where the run has no snapshot** (it stopped or diverged before that
epoch) or where the snapshot is not finite (the epoch it diverged), and, for the graph
feature sets, at epoch 0 unless the profile's signatures include the initialisation (the
graph step does not compute what no predictor reads). Nothing is ever filled in from
another epoch. The experiments pick epochs ``1..t`` (graph
signatures, learning curve) or epoch ``t`` alone (weight baselines) with the
transformers of :mod:`paperlib.features.signatures`, and only for the networks that are
*alive* at ``t`` (:meth:`PopulationFeatures.alive`).

==================  =========================================================  ======  ============
name                per epoch                                                  k       epochs used
==================  =========================================================  ======  ============
``deg``             signature of the weighted degree, rolled graph             5       1..t
``evec``            signature of the eigenvector centrality, rolled graph      5       1..t
``unroll-deg``      signature of the weighted degree, unrolled graph           5       1..t
``unroll-evec``     signature of the eigenvector centrality, unrolled graph    5       1..t
``B_Wl``            last layer, flattened: weights (row-major), then biases   in*out  t
``B_What``          mean, variance, percentiles 0/25/50/75/100 of ``B_Wl``      7       t
``B_Wprime``        the five signature aggregators of ``B_Wl``                 5       t
``learning-curve``  test accuracy (%) after the epoch                          1       1..t
==================  =========================================================  ======  ============

Derived feature sets (not stored; built from the stored ones by
:meth:`PopulationFeatures.array`):

==========================  ===================================================  ====
``learning-curve+deg``      learning curve and ``deg`` side by side, per epoch     6
``learning-curve+evec``     learning curve and ``evec`` side by side, per epoch    6
``deg-sa``, ``evec-sa``     *size-aware* signatures (our addition, for Q2):        4
                            the signature of ``v / mean(v)`` instead of ``v``:
                            median/mean, std/mean, skewness, kurtosis
==========================  ===================================================  ====

The size-aware variant is ours, not the paper's: degree grows with fan-in and
eigenvector entries shrink as ``1/sqrt(n)``, so the paper's signatures of two
populations of different size live on different scales. Dividing the centrality
vector by its mean removes the scale and keeps the shape (the mean itself is then
always 1 and is dropped). It is computed exactly from the paper's signature:
``median(v/m) = median/m``, ``std(v/m) = std/m``, skewness and kurtosis unchanged.

Choices stated here once:

* **Epochs of the baselines.** The weight baselines (after Unterthiner et al.,
  2020) read the snapshot of epoch ``t`` only: the same information horizon as a
  temporal signature up to ``t``, and the setting in which the paper compares
  them at "the last timestamp t". The variance of ``B_What`` is the population
  variance (``ddof=0``); percentiles are ``numpy.percentile``'s linear ones.
* **The learning curve**, the baseline the paper left out, is the sequence of
  test accuracies after epochs ``1..t`` from the run's history.

The arrays of a population, its labels, configurations and information horizon are
:mod:`paperlib.features.population`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .signatures import AGGREGATORS

WEIGHT_STATS: tuple[str, ...] = ("mean", "var", "p0", "p25", "p50", "p75", "p100")
SIZE_AWARE: tuple[str, ...] = ("median/mean", "std/mean", "skew", "kurtosis")
#: runs.csv columns that define a configuration (every hyperparameter but the seed), where present.
CONFIG_COLUMNS: tuple[str, ...] = ("model", "lr", "dropout", "optimizer", "momentum", "batch_size", "weight_decay",
                                   "epochs", "max_epochs", "patience", "burn_in", "image_size", "train_limit",
                                   "precision")


class MissingEpochError(ValueError):
    """An epoch that an alive run must have (snapshot, centralities, history) is missing or not finite."""


@dataclass(frozen=True)
class FeatureSet:
    """One named feature set.

    ``source`` is what it is computed from ("rolled", "unrolled", "last-layer",
    "history", or "derived" from the sets in ``parts``); ``temporal`` says whether
    epochs ``1..t`` are concatenated (else epoch ``t`` alone); ``modes`` are the
    signature modes that apply to it.
    """

    name: str
    source: str
    columns: tuple[str, ...] | None  # per-epoch column names; None: the flattened last layer
    temporal: bool
    modes: tuple[str, ...]
    description: str
    parts: tuple[str, ...] = ()


_GRAPH_MODES = ("plain", "wavg", "expavg")
FEATURE_SETS: dict[str, FeatureSet] = {
    fs.name: fs
    for fs in (
        FeatureSet("deg", "rolled", AGGREGATORS, True, _GRAPH_MODES, "weighted degree, rolled graph"),
        FeatureSet("evec", "rolled", AGGREGATORS, True, _GRAPH_MODES, "eigenvector centrality, rolled graph"),
        FeatureSet("unroll-deg", "unrolled", AGGREGATORS, True, _GRAPH_MODES, "weighted degree, unrolled graph"),
        FeatureSet("unroll-evec", "unrolled", AGGREGATORS, True, _GRAPH_MODES,
                   "eigenvector centrality, unrolled graph"),
        FeatureSet("B_Wl", "last-layer", None, False, ("plain",), "last layer's weights and biases, flattened"),
        FeatureSet("B_What", "last-layer", WEIGHT_STATS, False, ("plain",),
                   "mean, variance, percentiles 0/25/50/75/100 of the last layer"),
        FeatureSet("B_Wprime", "last-layer", AGGREGATORS, False, ("plain",),
                   "the five signature aggregators of the last layer"),
        FeatureSet("learning-curve", "history", ("test_acc",), True, ("plain",), "test accuracy after each epoch"),
        FeatureSet("learning-curve+deg", "derived", ("test_acc", *AGGREGATORS), True, ("plain",),
                   "learning curve and the degree signature, side by side", ("learning-curve", "deg")),
        FeatureSet("learning-curve+evec", "derived", ("test_acc", *AGGREGATORS), True, ("plain",),
                   "learning curve and the eigenvector signature, side by side", ("learning-curve", "evec")),
        FeatureSet("deg-sa", "derived", SIZE_AWARE, True, _GRAPH_MODES,
                   "size-aware degree signature (our addition): signature of deg / mean(deg)", ("deg",)),
        FeatureSet("evec-sa", "derived", SIZE_AWARE, True, _GRAPH_MODES,
                   "size-aware eigenvector signature (our addition): signature of evec / mean(evec)", ("evec",)),
    )
}
STORED = tuple(name for name, fs in FEATURE_SETS.items() if fs.source != "derived")
COMBINED = ("learning-curve+deg", "learning-curve+evec")
SIZE_AWARE_SETS = ("deg-sa", "evec-sa")


def feature_set(name: str) -> FeatureSet:
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise KeyError(f"unknown feature set {name!r}; choose one of {sorted(FEATURE_SETS)}") from None


def size_aware(signatures: np.ndarray) -> np.ndarray:
    """The size-aware signature from the paper's five aggregators (last axis).

    ``[median, mean, std, skew, kurtosis]`` -> ``[median/mean, std/mean, skew, kurtosis]``: the
    signature of ``v / mean(v)`` (mean dropped, always 1). NaN where the mean is 0 or the input NaN.

    Examples
    --------
    >>> size_aware(np.array([[2.0, 4.0, 1.0, 0.5, -1.0]]))
    array([[ 0.5 ,  0.25,  0.5 , -1.  ]])
    """
    s = np.asarray(signatures, dtype=np.float64)
    mean = s[..., 1:2]
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.where(mean != 0, s[..., [0, 2]] / mean, np.nan)
    return np.concatenate([scaled, s[..., 3:5]], axis=-1)


# --------------------------------------------------------------------------- per-epoch values
def weight_stats(values: np.ndarray) -> np.ndarray:
    """``B_What`` of every row: mean, variance (ddof=0), percentiles 0/25/50/75/100 (NaN rows stay NaN)."""
    x = np.asarray(values, dtype=np.float64)
    out = np.full((x.shape[0], len(WEIGHT_STATS)), np.nan)
    ok = np.isfinite(x).all(axis=1)
    if ok.any():
        v = x[ok]
        out[ok] = np.column_stack([v.mean(axis=1), v.var(axis=1),
                                   np.percentile(v, [0, 25, 50, 75, 100], axis=1).T])
    return out


def last_layer(state_dict: dict[str, Any]) -> np.ndarray:
    """The classifier's parameters, flattened: weight matrix (row-major), then bias.

    The classifier is the last ``nn.Linear`` registered in every model, so its
    weight is the last 2-D ``*weight`` entry of the state dict.
    """
    keys = list(state_dict)
    for key in reversed(keys):
        if key.endswith("weight") and getattr(state_dict[key], "ndim", 0) == 2:
            prefix = key[: -len("weight")]
            parts = [np.asarray(state_dict[key], dtype=np.float64).ravel()]
            if prefix + "bias" in state_dict:
                parts.append(np.asarray(state_dict[prefix + "bias"], dtype=np.float64).ravel())
            return np.concatenate(parts)
    raise ValueError("no 2-D weight (linear layer) in the state dict")
