"""Paired comparison of two methods over repeated cross-validation.

The training sets of the folds of repeated k-fold cross-validation overlap, so the
per-fold differences are correlated and the plain paired t-test is far too liberal.
The *corrected resampled t-test* (Nadeau & Bengio, 2003, "Inference for the
generalization error", Machine Learning 52; in the repeated k-fold form of Bouckaert &
Frank, 2004) inflates the variance by the ratio of test to training size:

    t = mean(d) / sqrt((1 / J + n_test / n_train) * var(d)),   J = r * k differences,

with ``var`` the sample variance (``ddof=1``) of the ``J`` per-fold differences ``d`` and
``J - 1`` degrees of freedom; the p-value is two-sided. When every difference is equal,
``t`` is 0 (all zero) or infinite.

:func:`aggregate_q1` gives the mean and spread of the accuracy over fold seeds, the numbers Table 2,
the figures and Q3 report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st

from .. import files

ALPHA = 0.05


@dataclass(frozen=True)
class PairedTest:
    mean_difference: float
    t: float
    p_value: float
    df: int
    n: int

    @property
    def significant(self) -> bool:
        return bool(np.isfinite(self.p_value) and self.p_value < ALPHA)


def corrected_resampled_ttest(differences, n_train: float, n_test: float) -> PairedTest:
    """The corrected resampled t-test of per-fold differences (any shape; flattened).

    Parameters
    ----------
    differences : array
        Per-fold score differences (method A minus method B), one per fold of every repetition.
    n_train, n_test : float
        Training and test sizes of a fold (the mean over folds when they differ).

    Examples
    --------
    >>> r = corrected_resampled_ttest([0.1, 0.2, 0.0, 0.1], n_train=40, n_test=10)
    >>> round(r.t, 4), r.df
    (1.7321, 3)
    """
    d = np.asarray(differences, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 2:
        return PairedTest(float(d.mean()) if n else float("nan"), float("nan"), float("nan"), max(n - 1, 0), n)
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"n_train and n_test must be positive, got {n_train}, {n_test}")
    mean, var = float(d.mean()), float(d.var(ddof=1))
    if var == 0.0:
        t = 0.0 if mean == 0.0 else float(np.copysign(np.inf, mean))
    else:
        t = mean / np.sqrt((1.0 / n + n_test / n_train) * var)
    p = float(2.0 * _st.t.sf(abs(t), n - 1)) if np.isfinite(t) else 0.0
    return PairedTest(mean, float(t), p, n - 1, n)


def parse_folds(fold_accuracy: str, fold_sizes: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``("0.8;0.7", "40/10;40/10")`` -> (accuracies, n_train, n_test) as arrays."""
    acc = np.array([float(x) for x in str(fold_accuracy).split(";") if x != ""])
    sizes = [s.split("/") for s in str(fold_sizes).split(";") if s != ""]
    n_tr = np.array([float(a) for a, _ in sizes])
    n_te = np.array([float(b) for _, b in sizes])
    if not (len(acc) == len(n_tr) == len(n_te)):
        raise ValueError(f"fold accuracies ({fold_accuracy!r}) and sizes ({fold_sizes!r}) do not match")
    return acc, n_tr, n_te


# --------------------------------------------------------------------------- mean and spread over fold seeds
def as_fraction(acc: pd.Series) -> pd.Series:
    """Accuracies as fractions in [0, 1] (a column in percent is divided by 100)."""
    acc = acc.astype(float)
    return acc / 100.0 if acc.max(skipna=True) > 1.0 + 1e-9 else acc


def aggregate_q1(q1: pd.DataFrame, by: Sequence[str] = ("dataset", "arch", "feature_set", "mode", "classifier", "t"),
                 seed_col: str = "fold_seed") -> pd.DataFrame:
    """Mean and standard deviation (ddof=1) of the accuracy over fold seeds.

    Returns one row per group with ``accuracy_mean``, ``accuracy_std`` (0 for a single seed) and
    ``n_seeds``, plus ``n_networks`` and ``n_high`` when present.
    """
    q1 = q1.copy()
    q1["accuracy"] = as_fraction(q1["accuracy"])
    g = q1.groupby(list(by), sort=False, dropna=False)
    out = g["accuracy"].agg(accuracy_mean="mean", accuracy_std="std", n_seeds="count").reset_index()
    out["accuracy_std"] = out["accuracy_std"].fillna(0.0)
    for extra in ("n_networks", "n_high", "n_decided", "spearman"):
        if extra in q1.columns:
            out[extra] = g[extra].mean().to_numpy() if extra == "spearman" else g[extra].first().to_numpy()
    if "balanced_accuracy" in q1.columns:
        out["balanced_accuracy_mean"] = g["balanced_accuracy"].mean().to_numpy()
    if "majority_accuracy" in q1.columns:
        out["majority_accuracy"] = g["majority_accuracy"].mean().to_numpy()
    if "single_class" in q1.columns:
        q1["single_class"] = files.parse_bool(q1["single_class"])
        out["n_single_class"] = q1.groupby(list(by), sort=False, dropna=False)["single_class"].sum().to_numpy()
    return out
