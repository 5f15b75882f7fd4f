"""Graph signatures and temporal signatures (step S3).

A *signature* summarises one node-centrality vector ``v`` (one snapshot of one
network) by five aggregators, in this order (:data:`AGGREGATORS`):

============  ==================================================================
``median``    ``numpy.median(v)``
``mean``      ``m = mean(v)``
``std``       population standard deviation, ``sqrt(m2)`` (``ddof=0``)
``skew``      ``m3 / m2**1.5``: biased sample skewness, as
              ``scipy.stats.skew(v, bias=True)``
``kurtosis``  ``m4 / m2**2 - 3``: biased excess (Fisher) kurtosis, as
              ``scipy.stats.kurtosis(v, fisher=True, bias=True)``
============  ==================================================================

with the central moments ``mk = mean((v - m)**k)``. Two cases are defined here
where scipy returns NaN or a warning:

* a constant vector (``m2 <= (1e-14 * m)**2``, scipy's own test for
  "catastrophic cancellation") has skewness and kurtosis **0**, not NaN: a
  distribution without spread has no asymmetry and no tails to speak of, and the
  classifiers downstream need numbers;
* a vector with any NaN or infinite entry (the snapshot of a diverged network)
  gives five **NaN**. Turning those into finite features is the job of
  :mod:`paperlib.features.sets`, which replaces them and flags them.

The *temporal signature* up to epoch ``t`` concatenates the signatures of epochs
``1..t`` (epoch 0, the initialisation, is left out as in the paper; pass
``include_epoch0=True`` to add it). Three modes (:data:`MODES`), with ``s(j)`` the
signature of epoch ``j`` and ``s~`` the one that is concatenated:

``plain``   ``s~(tau) = s(tau)``
``wavg``    ``s~(tau) = sum_{j<=tau} w_j s(j) / sum_{j<=tau} w_j``, a linearly
            weighted running mean with ``w_j`` the position of epoch ``j`` in the
            sequence (1 for the first epoch used): ``w_j = j`` for the paper's
            epochs ``1..t``; ``w_j = j + 1`` when epoch 0 is included.
``expavg``  ``s~(first) = s(first)``, ``s~(tau) = alpha s(tau) + (1 - alpha) s~(tau - 1)``:
            exponential smoothing, recursive on the already smoothed previous value.

The transformers :class:`TemporalSignature` and :class:`SnapshotAt` follow
scikit-learn's conventions, so that an experiment is a ``Pipeline`` of signature,
scaler and classifier. Their input is a per-epoch matrix, one row per network and
``n_epochs * width`` columns: the block of columns ``e*width .. (e+1)*width - 1``
holds epoch ``e`` (epoch 0 first). Neither learns anything from the data (``fit``
only records the input width), so applying them before a cross-validation split
is identical to applying them inside it.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

AGGREGATORS: tuple[str, ...] = ("median", "mean", "std", "skew", "kurtosis")
MODES: tuple[str, ...] = ("plain", "wavg", "expavg")

# scipy.stats.skew / kurtosis treat m2 <= (eps * mean)**2 as zero variance
_CONSTANT_EPS = np.finfo(np.float64).resolution * 10


def aggregate_rows(values: np.ndarray) -> np.ndarray:
    """The five aggregators of every row of a 2-D array.

    Parameters
    ----------
    values : array of shape (n_rows, n_values)
        One centrality vector (or flattened weight vector) per row.

    Returns
    -------
    ndarray of shape (n_rows, 5)
        Median, mean, standard deviation (ddof=0), skewness (biased) and excess
        kurtosis (Fisher, biased) of each row; 0 for the skewness and kurtosis
        of a constant row; NaN everywhere in a row with a non-finite entry.

    Examples
    --------
    >>> aggregate_rows(np.array([[1.0, 2.0, 3.0, 10.0], [4.0, 4.0, 4.0, 4.0]])).round(3)
    array([[ 2.5  ,  4.   ,  3.536,  1.018, -0.77 ],
           [ 4.   ,  4.   ,  0.   ,  0.   ,  0.   ]])
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"expected a 2-D array with at least one column, got shape {x.shape}")
    out = np.full((x.shape[0], len(AGGREGATORS)), np.nan)
    ok = np.isfinite(x).all(axis=1)
    if not ok.any():
        return out
    v = x[ok]
    mean = v.mean(axis=1)
    d = v - mean[:, None]
    d2 = d * d
    m2 = d2.mean(axis=1)
    m3 = (d2 * d).mean(axis=1)
    m4 = (d2 * d2).mean(axis=1)
    constant = m2 <= (_CONSTANT_EPS * mean) ** 2
    safe = np.where(constant | (m2 == 0), 1.0, m2)
    skew = np.where(constant | (m2 == 0), 0.0, m3 / safe**1.5)
    kurt = np.where(constant | (m2 == 0), 0.0, m4 / safe**2 - 3.0)
    out[ok] = np.column_stack([np.median(v, axis=1), mean, np.sqrt(m2), skew, kurt])
    return out


def aggregate(v: np.ndarray) -> np.ndarray:
    """The signature of one vector: ``[median, mean, std, skew, kurtosis]``.

    See the module docstring for the exact definitions and :func:`aggregate_rows`
    for the batched version.

    Examples
    --------
    >>> aggregate(np.array([0.0, 1.0, 1.0, 2.0])).round(3)
    array([ 1.   ,  1.   ,  0.707,  0.   , -1.   ])
    """
    x = np.asarray(v, dtype=np.float64).ravel()
    return aggregate_rows(x[None, :])[0]


def smooth(signatures: np.ndarray, mode: str = "plain", alpha: float = 0.5) -> np.ndarray:
    """Apply a temporal mode along axis 1 of ``(n, n_epochs, width)`` signatures.

    Axis 1 is the sequence of epochs used, first epoch first; ``wavg`` weighs the
    k-th of them (1-based) by k. See the module docstring.

    Examples
    --------
    >>> s = np.array([[[1.0], [4.0], [7.0]]])
    >>> smooth(s, "wavg")[0, :, 0]
    array([1., 3., 5.])
    >>> smooth(s, "expavg", alpha=0.5)[0, :, 0]
    array([1.  , 2.5 , 4.75])
    """
    s = np.asarray(signatures, dtype=np.float64)
    if s.ndim != 3:
        raise ValueError(f"expected (n, n_epochs, width) signatures, got shape {s.shape}")
    if mode == "plain":
        return s.copy()
    if mode == "wavg":
        w = np.arange(1, s.shape[1] + 1, dtype=np.float64)[None, :, None]
        return np.cumsum(w * s, axis=1) / np.cumsum(w, axis=1)
    if mode == "expavg":
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        out = np.empty_like(s)
        out[:, 0] = s[:, 0]
        for k in range(1, s.shape[1]):
            out[:, k] = alpha * s[:, k] + (1.0 - alpha) * out[:, k - 1]
        return out
    raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")


class _EpochBlocks(TransformerMixin, BaseEstimator):
    """Shared validation of the per-epoch input layout."""

    def _first_epoch(self) -> int:
        return 0

    def _check_params(self) -> None:
        if not isinstance(self.width, (int, np.integer)) or self.width < 1:
            raise ValueError(f"width must be a positive integer, got {self.width!r}")
        if not isinstance(self.t, (int, np.integer)) or self.t < 0:
            raise ValueError(f"t must be a non-negative integer, got {self.t!r}")

    def fit(self, X, y=None):
        """Check the layout of ``X``; learns nothing else. Returns ``self``."""
        self._check_params()
        X = validate_data(self, X, dtype=np.float64)
        n_features = X.shape[1]
        if n_features % self.width:
            raise ValueError(
                f"X has {n_features} feature(s), not a multiple of width={self.width} "
                "(expected n_epochs * width columns)"
            )
        n_epochs = n_features // self.width
        if n_epochs < self.t + 1:
            raise ValueError(
                f"X has {n_features} feature(s), i.e. epochs 0..{n_epochs - 1} at width={self.width}; "
                f"t={self.t} needs epochs 0..{self.t}"
            )
        self.n_epochs_ = n_epochs
        return self

    def _blocks(self, X) -> np.ndarray:
        check_is_fitted(self, "n_epochs_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return X.reshape(X.shape[0], self.n_epochs_, self.width)


class TemporalSignature(_EpochBlocks):
    """Temporal signature up to epoch ``t``: smoothed per-epoch signatures, concatenated.

    Parameters
    ----------
    t : int, default=1
        Last epoch used.
    mode : {"plain", "wavg", "expavg"}, default="plain"
        Temporal mode (module docstring).
    alpha : float, default=0.5
        Smoothing factor of ``expavg``.
    include_epoch0 : bool, default=False
        Start at epoch 0 (the initialisation) instead of epoch 1 (the paper).
    width : int, default=5
        Columns per epoch in the input.

    Attributes
    ----------
    n_epochs_ : int
        Epochs in the input (``n_features_in_ // width``).

    Examples
    --------
    >>> X = np.array([[0.0, 1.0, 4.0, 7.0]])           # epochs 0..3, one value each
    >>> TemporalSignature(t=3, mode="wavg", width=1).fit_transform(X)
    array([[1., 3., 5.]])
    """

    def __init__(self, t: int = 1, mode: str = "plain", alpha: float = 0.5,
                 include_epoch0: bool = False, width: int = 5):
        self.t = t
        self.mode = mode
        self.alpha = alpha
        self.include_epoch0 = include_epoch0
        self.width = width

    def _check_params(self) -> None:
        super()._check_params()
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {MODES}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.t < 1 and not self.include_epoch0:
            raise ValueError("t must be >= 1 unless include_epoch0=True")

    def transform(self, X) -> np.ndarray:
        """``(n, n_epochs * width)`` -> ``(n, n_used * width)`` with ``n_used = t`` (``t + 1`` with epoch 0)."""
        blocks = self._blocks(X)
        first = 0 if self.include_epoch0 else 1
        used = smooth(blocks[:, first:self.t + 1], self.mode, self.alpha)
        return used.reshape(used.shape[0], -1)


class SnapshotAt(_EpochBlocks):
    """The features of one epoch ``t`` alone (the weight baselines).

    Parameters
    ----------
    t : int, default=1
        The epoch whose block is returned.
    width : int, default=1
        Columns per epoch in the input.

    Examples
    --------
    >>> SnapshotAt(t=2, width=2).fit_transform(np.arange(6.0)[None, :])
    array([[4., 5.]])
    """

    def __init__(self, t: int = 1, width: int = 1):
        self.t = t
        self.width = width

    def transform(self, X) -> np.ndarray:
        """``(n, n_epochs * width)`` -> ``(n, width)``: the block of epoch ``t``."""
        return self._blocks(X)[:, self.t].copy()
