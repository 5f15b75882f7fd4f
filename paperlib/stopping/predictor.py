"""A fitted predictor of a run's fate: the probability that it ends "high", from its first t epochs.

:class:`RunPredictor` turns the paper's question (will this network end above the threshold?)
into a tool that can stop training. It reads the per-epoch features of
:mod:`paperlib.features.sets` (graph signatures ``deg`` and ``evec`` of the rolled graph, the
``learning-curve``, or several of them side by side) for epochs ``0..t`` and returns
``P(high)`` with the model fitted for that ``t``. One model is fitted per epoch ``t`` in
``t_min..t_max``, so the same object answers after every epoch of a run.

Choices stated here once:

* **Input layout.** ``X`` is ``(n_runs, n_epochs, width)`` (or the flattened
  ``(n_runs, n_epochs * width)``): the per-epoch vectors of the feature sets in
  ``feature_sets``, concatenated in that order (``widths`` gives each one's width, as
  :meth:`PopulationFeatures.width`). :func:`population_array` builds it from cached features,
  :func:`paperlib.stopping.hooks.epoch_features` from a live model.
* **Which epochs.** The model of ``t`` reads epochs ``1..t`` (``0..t`` with
  ``include_epoch0=True``), smoothed by the temporal mode of :mod:`paperlib.features.signatures`
  (:func:`~paperlib.features.signatures.smooth`, the computation of ``TemporalSignature``).
  ``predict_proba`` takes ``t`` from the input: the features of epochs ``0..t`` give the
  prediction at ``t``; past ``t_max`` the model of ``t_max`` is used on epochs up to ``t_max``.
* **Classifier.** A standardisation (mean, standard deviation of the training runs; a
  constant column keeps scale 1, as ``StandardScaler``) followed by an L2-regularised logistic
  regression (``C``, L-BFGS). Chosen because the decision to stop needs a probability, the fit is
  convex (the same data give the same model on any machine) and cheap enough to be refitted in
  every cross-fitting fold, and the fitted model is a handful of numbers that can be saved as
  JSON and ``.npz`` (no pickle) and evaluated exactly.
* **Who is learned from at t.** A run enters the model of ``t`` only when it was still training
  with finite weights at ``t`` (``alive[:, t]``; by default: all its used features are finite).
  Runs that diverged or stopped earlier were decided before ``t``: they are neither learned from
  nor predicted at ``t``.
* **A class missing.** When the training runs at ``t`` are all of one class, the model of ``t``
  predicts that class's share (0 or 1) for every run: the only estimate the data allow.
* **Non-finite features.** A run whose used features are not finite (a diverged network) gets
  ``NaN`` probabilities: its fate is already decided (:mod:`paperlib.stopping.hooks` stops it).

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(40, 4, 2))                # 40 runs, epochs 0..3, width 2
>>> y = (X[:, 1:, 0].mean(axis=1) > 0).astype(int)
>>> p = RunPredictor(feature_sets=("a",), widths=(2,), t_max=3).fit(X, y)
>>> p.ts_.tolist(), p.predict_proba(X[:3, :3]).shape   # epochs 0..2 -> the model of t = 2
([1, 2, 3], (3, 2))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from ..features.signatures import MODES, smooth
from ..files import atomic_write_json, load_npz, read_json, save_npz

#: The three predictors of the early-stopping study: graph signatures, learning curve, both.
PREDICTOR_KINDS: dict[str, tuple[str, ...]] = {
    "graph": ("deg", "evec"),
    "curve": ("learning-curve",),
    "both": ("deg", "evec", "learning-curve"),
}
FORMAT_VERSION = 1
_MAX_ITER = 1000


def as_array(X: Any, width: int) -> np.ndarray:
    """``X`` as float64 ``(n, n_epochs, width)``; a 2-D ``(n, n_epochs * width)`` is reshaped."""
    a = np.asarray(X, dtype=np.float64)
    if a.ndim == 2:
        if a.shape[1] % width:
            raise ValueError(f"paperlib.stopping.predictor: X has {a.shape[1]} columns, not a multiple of the "
                             f"per-epoch width {width}")
        a = a.reshape(a.shape[0], -1, width)
    if a.ndim != 3 or a.shape[2] != width:
        raise ValueError(f"paperlib.stopping.predictor: expected X of shape (n_runs, n_epochs, {width}) "
                         f"or (n_runs, n_epochs * {width}), got {np.shape(X)}")
    return a


def population_array(feats: Any, feature_sets: Sequence[str]) -> np.ndarray:
    """The per-epoch features of ``feature_sets`` side by side: ``(n_runs, n_epochs, sum of widths)``.

    ``feats`` is a :class:`paperlib.features.population.PopulationFeatures` (or anything with ``arrays``).
    """
    missing = [n for n in feature_sets if n not in feats.arrays]
    if missing:
        why = {n: getattr(feats, "missing", {}).get(n, "not computed") for n in missing}
        raise KeyError(f"paperlib.stopping.predictor: feature set(s) {missing} not available for "
                       f"{getattr(feats, 'arch', 'this population')}: {why}")
    return np.concatenate([np.asarray(feats.arrays[n], dtype=np.float64) for n in feature_sets], axis=2)


class RunPredictor(ClassifierMixin, BaseEstimator):
    """``P(run ends high)`` from the features of its epochs ``0..t``, one model per ``t``.

    Parameters
    ----------
    feature_sets : tuple of str, default=("deg", "evec")
        Names of the feature sets, in the order of the input's per-epoch blocks.
    widths : tuple of int, default=(5, 5)
        Per-epoch width of each feature set.
    t_min, t_max : int, default=1, 9
        The epochs at which a model is fitted (``t_max`` is capped by the epochs in ``X``).
    mode : {"plain", "wavg", "expavg"}, default="plain"
        Temporal signature mode (:mod:`paperlib.features.signatures`).
    alpha : float, default=0.5
        Smoothing factor of ``expavg``.
    include_epoch0 : bool, default=False
        Read epoch 0 (the initialisation) too.
    C : float, default=1.0
        Inverse L2 penalty of the logistic regression.
    input_shape : tuple of int or None
        One input of the networks without the batch axis (the rolled graph of a live model needs
        it); metadata only, not used by :meth:`fit`.
    threshold : float or None
        Final test accuracy (%) that made a training run "high"; metadata only.

    Attributes
    ----------
    ts_ : ndarray of int
        The epochs with a fitted model.
    coef_, mean_, scale_ : list of ndarray
        Per ``t``: logistic-regression weights, feature means and scales.
    intercept_ : ndarray
        Per ``t``.
    constant_ : ndarray
        Per ``t``: NaN when a model was fitted, else the probability predicted for every run
        (training runs of one class).
    n_fit_, n_high_fit_ : ndarray of int
        Per ``t``: runs learned from and how many of them were "high".
    classes_ : ndarray
        ``[0, 1]`` (0 = low, 1 = high).
    """

    def __init__(self, feature_sets: tuple[str, ...] = ("deg", "evec"), widths: tuple[int, ...] = (5, 5),
                 t_min: int = 1, t_max: int = 9, mode: str = "plain", alpha: float = 0.5,
                 include_epoch0: bool = False, C: float = 1.0, input_shape: tuple[int, ...] | None = None,
                 threshold: float | None = None):
        self.feature_sets = feature_sets
        self.widths = widths
        self.t_min = t_min
        self.t_max = t_max
        self.mode = mode
        self.alpha = alpha
        self.include_epoch0 = include_epoch0
        self.C = C
        self.input_shape = input_shape
        self.threshold = threshold

    # ------------------------------------------------------------------ utilities
    @property
    def width(self) -> int:
        return int(sum(self.widths))

    def _check_params(self) -> None:
        if len(tuple(self.feature_sets)) != len(tuple(self.widths)) or not len(tuple(self.widths)):
            raise ValueError(f"paperlib.stopping.predictor: feature_sets {self.feature_sets!r} and widths {self.widths!r} "
                             "must have the same (non-zero) length")
        if any(int(w) < 1 for w in self.widths):
            raise ValueError(f"paperlib.stopping.predictor: widths must be positive, got {self.widths!r}")
        if self.mode not in MODES:
            raise ValueError(f"paperlib.stopping.predictor: unknown mode {self.mode!r}; choose one of {MODES}")
        first = 0 if self.include_epoch0 else 1
        if not (isinstance(self.t_min, (int, np.integer)) and isinstance(self.t_max, (int, np.integer))) \
                or self.t_min < first or self.t_max < self.t_min:
            raise ValueError(f"paperlib.stopping.predictor: need {first} <= t_min <= t_max, got t_min={self.t_min!r}, "
                             f"t_max={self.t_max!r}")
        if not self.C > 0:
            raise ValueError(f"paperlib.stopping.predictor: C must be positive, got {self.C!r}")

    def _first(self) -> int:
        return 0 if self.include_epoch0 else 1

    def signature(self, A: np.ndarray, t: int) -> np.ndarray:
        """The model input at ``t``: epochs ``first..t`` of ``A`` (3-D), smoothed, flattened."""
        used = smooth(A[:, self._first():t + 1], self.mode, self.alpha)
        return used.reshape(used.shape[0], -1)

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any, alive: Any = None) -> "RunPredictor":
        """Fit one model per ``t`` in ``t_min..min(t_max, n_epochs - 1)``.

        Parameters
        ----------
        X : array of shape (n_runs, n_epochs, width) or (n_runs, n_epochs * width)
        y : array of shape (n_runs,)
            1 = "high", 0 = "low".
        alive : bool array of shape (n_runs, n_epochs), optional
            ``alive[i, t]``: run ``i`` was training with finite weights at epoch ``t`` (the
            information horizon). Default: its used features up to ``t`` are finite.
        """
        self._check_params()
        A = as_array(X, self.width)
        y = np.asarray(y)
        if y.shape != (A.shape[0],) or not np.isin(y, (0, 1)).all():
            raise ValueError(f"paperlib.stopping.predictor: y must be {A.shape[0]} labels in {{0, 1}}, got shape {y.shape}")
        y = y.astype(int)
        t_hi = min(int(self.t_max), A.shape[1] - 1)
        if t_hi < self.t_min:
            raise ValueError(f"paperlib.stopping.predictor: X has epochs 0..{A.shape[1] - 1}; t_min={self.t_min} "
                             "needs more")
        if alive is not None:
            alive = np.asarray(alive, dtype=bool)
            if alive.shape[0] != A.shape[0] or alive.ndim != 2 or alive.shape[1] < t_hi + 1:
                raise ValueError(f"paperlib.stopping.predictor: alive must be (n_runs, >= {t_hi + 1}) booleans, "
                                 f"got shape {alive.shape}")
        ts, coefs, means, scales, icpt, const, n_fit, n_high = [], [], [], [], [], [], [], []
        for t in range(int(self.t_min), t_hi + 1):
            Z = self.signature(A, t)
            rows = np.isfinite(Z).all(axis=1)
            if alive is not None:
                rows &= alive[:, t]
            Zt, yt = Z[rows], y[rows]
            if len(yt) == 0:
                raise ValueError(f"paperlib.stopping.predictor: no run with finite features is alive at t={t}")
            mean = Zt.mean(axis=0)
            scale = Zt.std(axis=0)
            scale = np.where(scale > 0, scale, 1.0)
            ts.append(t)
            means.append(mean)
            scales.append(scale)
            n_fit.append(len(yt))
            n_high.append(int(yt.sum()))
            if len(np.unique(yt)) < 2:
                coefs.append(np.zeros(Z.shape[1]))
                icpt.append(0.0)
                const.append(float(yt[0]))
                continue
            lr = LogisticRegression(C=float(self.C), max_iter=_MAX_ITER).fit((Zt - mean) / scale, yt)
            coefs.append(lr.coef_[0].astype(np.float64))
            icpt.append(float(lr.intercept_[0]))
            const.append(np.nan)
        self.ts_ = np.array(ts, dtype=int)
        self.coef_ = coefs
        self.mean_ = means
        self.scale_ = scales
        self.intercept_ = np.array(icpt, dtype=np.float64)
        self.constant_ = np.array(const, dtype=np.float64)
        self.n_fit_ = np.array(n_fit, dtype=int)
        self.n_high_fit_ = np.array(n_high, dtype=int)
        self.classes_ = np.array([0, 1])
        self.n_epochs_ = int(A.shape[1])
        return self

    # ------------------------------------------------------------------ predict
    def proba_high_at(self, X: Any, t: int) -> np.ndarray:
        """``P(high)`` of every run from its epochs up to ``t`` (a fitted epoch); NaN where not finite."""
        check_is_fitted(self, "ts_")
        A = as_array(X, self.width)
        if t not in set(self.ts_.tolist()):
            raise ValueError(f"paperlib.stopping.predictor: no model for t={t}; fitted epochs are {self.ts_.tolist()}")
        if A.shape[1] < t + 1:
            raise ValueError(f"paperlib.stopping.predictor: t={t} needs epochs 0..{t}, X has 0..{A.shape[1] - 1}")
        i = int(np.searchsorted(self.ts_, t))
        Z = self.signature(A, t)
        ok = np.isfinite(Z).all(axis=1)
        out = np.full(A.shape[0], np.nan)
        if not np.isnan(self.constant_[i]):
            out[ok] = self.constant_[i]
            return out
        out[ok] = expit(((Z[ok] - self.mean_[i]) / self.scale_[i]) @ self.coef_[i] + self.intercept_[i])
        return out

    def t_for(self, n_epochs: int) -> int:
        """The model used for an input of epochs ``0..n_epochs - 1``."""
        check_is_fitted(self, "ts_")
        t = min(n_epochs - 1, int(self.ts_.max()))
        if t < self.ts_.min():
            raise ValueError(f"paperlib.stopping.predictor: the input has epochs 0..{n_epochs - 1}; the first model "
                             f"needs epochs 0..{int(self.ts_.min())}")
        return t

    def predict_proba(self, X: Any) -> np.ndarray:
        """``[[P(low), P(high)], ...]`` from the features of epochs ``0..t`` (``t`` = epochs in ``X`` - 1)."""
        A = as_array(X, self.width)
        p = self.proba_high_at(A, self.t_for(A.shape[1]))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """1 where ``P(high) >= 0.5``, else 0 (runs with NaN probability: 0)."""
        p = self.predict_proba(X)[:, 1]
        return (np.nan_to_num(p, nan=0.0) >= 0.5).astype(int)

    # ------------------------------------------------------------------ files (JSON + npz, no pickle)
    def save(self, path: Path | str) -> list[Path]:
        """Write ``<path>.json`` (parameters and per-t counts) and ``<path>.npz`` (the numbers)."""
        check_is_fitted(self, "ts_")
        base = Path(path)
        base = base.with_suffix("") if base.suffix in (".json", ".npz") else base
        params = self.get_params()
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
        meta = {"format": "paperlib.RunPredictor", "version": FORMAT_VERSION, "params": params,
                "ts": self.ts_.tolist(), "n_fit": self.n_fit_.tolist(), "n_high_fit": self.n_high_fit_.tolist(),
                "n_epochs": self.n_epochs_}
        arrays = {"intercept": self.intercept_, "constant": self.constant_}
        for t, c, m, s in zip(self.ts_, self.coef_, self.mean_, self.scale_):
            arrays[f"coef_{t}"], arrays[f"mean_{t}"], arrays[f"scale_{t}"] = c, m, s
        npz, js = base.parent / (base.name + ".npz"), base.parent / (base.name + ".json")
        save_npz(npz, **arrays)
        atomic_write_json(js, meta)
        return [js, npz]

    @classmethod
    def load(cls, path: Path | str) -> "RunPredictor":
        """Read a predictor written by :meth:`save` (``path`` with or without suffix)."""
        base = Path(path)
        base = base.with_suffix("") if base.suffix in (".json", ".npz") else base
        js, npz = base.parent / (base.name + ".json"), base.parent / (base.name + ".npz")
        if not js.exists() or not npz.exists():
            raise FileNotFoundError(f"paperlib.stopping.predictor: {js} and {npz} are both needed; "
                                    "the early-stopping notebook (07_early_stopping) writes them")
        meta = read_json(js)
        if meta.get("format") != "paperlib.RunPredictor" or meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{js}: not a paperlib.RunPredictor file of version {FORMAT_VERSION}")
        params = dict(meta["params"])
        for k in ("feature_sets", "widths", "input_shape"):
            if params.get(k) is not None:
                params[k] = tuple(params[k])
        obj = cls(**params)
        z = load_npz(npz)
        obj.ts_ = np.array(meta["ts"], dtype=int)
        obj.coef_ = [z[f"coef_{t}"] for t in obj.ts_]
        obj.mean_ = [z[f"mean_{t}"] for t in obj.ts_]
        obj.scale_ = [z[f"scale_{t}"] for t in obj.ts_]
        obj.intercept_ = z["intercept"]
        obj.constant_ = z["constant"]
        obj.n_fit_ = np.array(meta["n_fit"], dtype=int)
        obj.n_high_fit_ = np.array(meta["n_high_fit"], dtype=int)
        obj.classes_ = np.array([0, 1])
        obj.n_epochs_ = int(meta["n_epochs"])
        return obj


# --------------------------------------------------------------------------- from a population
def alive_matrix(feats: Any) -> np.ndarray:
    """``(n_runs, n_epochs)`` booleans: run still training with finite weights at each epoch.

    Uses ``feats.alive(t)`` (:class:`paperlib.features.population.PopulationFeatures`) when it exists, else
    the epochs trained and the finiteness of the cached arrays.
    """
    n, n_epochs = len(feats.keys), next(iter(feats.arrays.values())).shape[1]
    if hasattr(feats, "alive"):
        return np.column_stack([np.asarray(feats.alive(t), dtype=bool) for t in range(n_epochs)])
    trained = np.asarray(feats.epochs_trained)
    finite = np.all([np.isfinite(a).all(axis=2) for a in feats.arrays.values()], axis=0)
    return (trained[:, None] >= np.arange(n_epochs)[None, :]) & finite


def fit_population(feats: Any, kind: str = "both", t_max: int | None = None, index: np.ndarray | None = None,
                   **params: Any) -> RunPredictor:
    """A :class:`RunPredictor` fitted on the runs ``index`` (default all) of a population.

    ``kind`` is a key of :data:`PREDICTOR_KINDS`; ``t_max`` defaults to the last cached epoch;
    ``params`` go to :class:`RunPredictor`.
    """
    if kind not in PREDICTOR_KINDS:
        raise KeyError(f"paperlib.stopping.predictor: unknown predictor kind {kind!r}; choose one of {sorted(PREDICTOR_KINDS)}")
    names = PREDICTOR_KINDS[kind]
    A = population_array(feats, names)
    alive = alive_matrix(feats)
    idx = np.arange(A.shape[0]) if index is None else np.asarray(index)
    t_max = A.shape[1] - 1 if t_max is None else t_max
    pred = RunPredictor(feature_sets=names, widths=tuple(int(feats.arrays[n].shape[2]) for n in names),
                        t_max=int(t_max), threshold=float(feats.threshold), **params)
    return pred.fit(A[idx], np.asarray(feats.labels)[idx], alive=alive[idx])


def describe(pred: RunPredictor) -> dict[str, Any]:
    """A JSON-friendly summary: feature sets, epochs, runs learned from."""
    check_is_fitted(pred, "ts_")
    return {"feature_sets": list(pred.feature_sets), "ts": pred.ts_.tolist(), "n_fit": pred.n_fit_.tolist(),
            "n_high_fit": pred.n_high_fit_.tolist(), "threshold": pred.threshold,
            "input_shape": None if pred.input_shape is None else list(pred.input_shape)}


__all__ = ["PREDICTOR_KINDS", "RunPredictor", "alive_matrix", "as_array", "describe", "fit_population",
           "population_array"]

