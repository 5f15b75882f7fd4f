"""The paper's published numbers and claims, set beside ours.

The paper's numbers are transcribed once into ``results/published/`` (``table1.csv``,
``table2.csv``, ``claims.csv``; read by :func:`paperlib.files.read_published`). Nothing about
the paper is typed in code: its numbers, and the claims our readings quote, come from those files.

Matching our rows to the paper's
--------------------------------
A population of a profile matches a column of the paper when its architecture's display name
equals the paper's (a trailing ``-IN``, which names the Tiny-ImageNet populations of the
``paper`` profile, is ignored). When the profile's dataset is one of the paper's (``cifar10``,
``tiny-imagenet``) only that dataset's column matches; for any other dataset (the ``digits`` of
the ``smoke`` and ``default`` profiles) the paper's CIFAR-10 column is shown as a *reference
only*: same architecture, different data and scale, so agreement is not expected. Columns say
which dataset the paper's number describes (``paper_dataset``, ``same_dataset``).

:func:`paperlib.report.readings.describe_agreement` (Q1) and :func:`~paperlib.report.readings.describe_q3`
(Q3) compare a run's result files with the paper's claims, in plain text.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import files
from .render import DATASET_LABELS, paper_arch_name

#: Paper dataset used as a reference for datasets the paper does not have.
REFERENCE_DATASET = "cifar10"


def paper_dataset_for(dataset: str, published: pd.DataFrame) -> tuple[str, bool]:
    """(paper dataset whose numbers stand beside ``dataset``, whether it is the same dataset)."""
    if dataset in set(published["dataset"]):
        return dataset, True
    return REFERENCE_DATASET, False


def table1_reference(published: pd.DataFrame, dataset: str, arch: str) -> dict[str, Any]:
    """The ``paper_*`` columns of Table 1 for one of our populations (empty where the paper has no row)."""
    pd_key, same = paper_dataset_for(dataset, published)
    ref = published[(published["dataset"] == pd_key) & (published["arch"] == paper_arch_name(arch))]
    r = ref.iloc[0] if len(ref) else None
    return {
        "paper_dataset": DATASET_LABELS[pd_key] if r is not None else "",
        "same_dataset": bool(same) if r is not None else False,
        "paper_early_stop_min": r["early_stop_min"] if r is not None else np.nan,
        "paper_early_stop_max": r["early_stop_max"] if r is not None else np.nan,
        "paper_acc_min": r["acc_min"] if r is not None else np.nan,
        "paper_acc_max": r["acc_max"] if r is not None else np.nan,
        "paper_threshold": r["acc_threshold"] if r is not None else np.nan,
    }


def table2_reference(published: pd.DataFrame, dataset: str, arch: str, classifier: str,
                     feature_set: str) -> dict[str, Any]:
    """The ``paper_*`` columns of one Table 2 cell (empty where the paper has no number)."""
    pd_key, same = paper_dataset_for(dataset, published)
    ref = published[(published["dataset"] == pd_key) & (published["arch"] == paper_arch_name(arch))
                     & (published["classifier"] == classifier) & (published["feature_set"] == feature_set)]
    r = ref.iloc[0] if len(ref) else None
    return {
        "paper_dataset": DATASET_LABELS[pd_key] if r is not None else "",
        "same_dataset": bool(same) if r is not None else False,
        "paper_accuracy": r["accuracy"] if r is not None else np.nan,
        "paper_note": (r["note"] if isinstance(r["note"], str) else "") if r is not None else "",
    }


def without_counterpart(feature_sets: list[str]) -> list[str]:
    """The feature sets among ``feature_sets`` that the paper's Table 2 has no row for."""
    theirs = set(files.read_published("table2.csv")["feature_set"])
    return [f for f in feature_sets if f not in theirs]


def claim(name: str) -> str:
    """The text of one of the paper's claims (``results/published/claims.csv``)."""
    claims = files.published_claims()
    if name not in claims.index:
        raise KeyError(f"results/published/claims.csv has no claim {name!r}; known: {sorted(claims.index)}")
    return str(claims[name])
