"""Classifiers, their grids, and their tuning on grouped inner folds (the evaluator's model).

* **Classifiers and grids** (:data:`CLASSIFIERS`). RBF SVM over ``C`` in
  :data:`SVM_C` x ``gamma = m / d`` for ``m`` in :data:`SVM_GAMMA_FACTORS` (``d`` the
  number of features after the signature; ``m = 1`` is scikit-learn's ``"scale"`` on
  standardised features) x ``class_weight`` in ``{None, "balanced"}``. MLP: one hidden
  layer of :data:`MLP_HIDDEN` ReLU units, L-BFGS until convergence (gradient tolerance
  :data:`MLP_TOL`, at most :data:`MLP_MAX_ITER` iterations), L2 penalty ``alpha`` in
  :data:`MLP_ALPHAS`: a single value, 1.0, so the MLP is *not* tuned (no inner CV). An
  L-BFGS fit to convergence costs 10-100x a libsvm fit, and tuning it seven-fold did not fit
  the time budget of the default profile; 1.0 is a moderate penalty for ~50 training
  networks on standardised features. Fits that stop without converging are counted
  (``n_not_converged`` of every row); no warning is silenced without being counted.
* **Selection metric**: balanced accuracy, mean over the inner folds; the first grid point
  on ties (as ``GridSearchCV(scoring="balanced_accuracy")``, :func:`make_search`). Balanced
  accuracy, because a majority-class predictor scores 0.5 on it whatever the class balance,
  so tuning cannot drift to a constant prediction.

The fast path (:func:`tune_and_fit`) computes, per inner split, the scaled features and
their squared distances once and the RBF kernel once per ``gamma``, and fits
``SVC(kernel="precomputed")`` for every ``C`` and class weight; ``tests/test_evaluation.py``
checks that it predicts exactly what ``GridSearchCV`` predicts with the same grouped splits.
A training fold with a single class gives a constant model (it predicts that class;
``params`` says ``constant``).
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ..features.signatures import SnapshotAt, TemporalSignature

try:  # the routine SVC itself calls; see _BinarySVC
    from sklearn.svm import _libsvm

    _libsvm.set_verbosity_wrap(0)
except (ImportError, AttributeError):  # pragma: no cover - another scikit-learn layout
    _libsvm = None


INNER_FOLDS = 3
SVM_C: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
SVM_GAMMA_FACTORS: tuple[float, ...] = (0.1, 1.0, 10.0)
SVM_CLASS_WEIGHTS: tuple[str | None, ...] = (None, "balanced")
MLP_HIDDEN = (16,)
MLP_ALPHAS: tuple[float, ...] = (1.0,)
MLP_MAX_ITER = 2000
MLP_TOL = 1e-4
SELECTION_METRIC = "balanced_accuracy"


@dataclass(frozen=True)
class ClassifierSpec:
    """A classifier and its grid (``gamma`` of the SVM as factors of ``1 / n_features``)."""

    name: str
    grid: dict[str, tuple[Any, ...]]

    def estimator(self, seed: int):
        if self.name == "svm":
            return SVC(kernel="rbf")
        if self.name == "mlp":
            return MLPClassifier(hidden_layer_sizes=MLP_HIDDEN, solver="lbfgs", max_iter=MLP_MAX_ITER,
                                 tol=MLP_TOL, random_state=seed)
        raise KeyError(f"unknown classifier {self.name!r}; choose one of {sorted(CLASSIFIERS)}")

    def grid_points(self, n_features: int = 1) -> list[dict[str, Any]]:
        """Every grid point as estimator parameters (``gamma`` resolved for ``n_features``)."""
        keys = list(self.grid)
        points = []
        for vals in itertools.product(*(self.grid[k] for k in keys)):
            p = dict(zip(keys, vals))
            if "gamma_factor" in p:
                p["gamma"] = p.pop("gamma_factor") / n_features
            points.append(p)
        return points


CLASSIFIERS: dict[str, ClassifierSpec] = {
    "svm": ClassifierSpec("svm", {"C": SVM_C, "gamma_factor": SVM_GAMMA_FACTORS, "class_weight": SVM_CLASS_WEIGHTS}),
    "mlp": ClassifierSpec("mlp", {"alpha": MLP_ALPHAS}),
}


def protocol() -> dict[str, Any]:
    """The grids, folds and stopping rules, for ``metrics.json``."""
    return {"inner_folds": INNER_FOLDS, "selection_metric": SELECTION_METRIC,
            "folds": "StratifiedGroupKFold by configuration (outer and inner), shuffled per seed",
            "svm": {"C": list(SVM_C), "gamma": [f"{m:g}/n_features" for m in SVM_GAMMA_FACTORS],
                    "class_weight": [str(c) for c in SVM_CLASS_WEIGHTS]},
            "mlp": {"hidden": list(MLP_HIDDEN), "solver": "lbfgs", "alpha": list(MLP_ALPHAS),
                    "max_iter": MLP_MAX_ITER, "tol": MLP_TOL}}


# --------------------------------------------------------------------------- the model as scikit-learn objects
def signature_step(temporal: bool, t: int, mode: str, width: int, alpha: float = 0.5, include_epoch0: bool = False):
    """The signature transformer at ``t``: a ``TemporalSignature`` of epochs ``1..t`` for a temporal feature set,
    else a ``SnapshotAt`` of epoch ``t`` (the baselines)."""
    if temporal:
        return TemporalSignature(t=t, mode=mode, alpha=alpha, include_epoch0=include_epoch0, width=width)
    if mode != "plain":
        raise ValueError(f"a feature set of one epoch has only the 'plain' mode, not {mode!r}")
    return SnapshotAt(t=t, width=width)


def n_signature_features(temporal: bool, t: int, width: int, include_epoch0: bool = False) -> int:
    if not temporal:
        return width
    return width * (t + (1 if include_epoch0 else 0))


def inner_cv(seed: int, n_splits: int = INNER_FOLDS) -> StratifiedGroupKFold:
    return StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)


_SPLITS: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = {}


def grouped_splits(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed).split(y, y, groups)``, memoised.

    The splits depend on the labels, groups and seed only (never on the features), so every
    feature set, mode and classifier evaluated on the same networks shares them: that makes the
    paired comparisons of :mod:`paperlib.evaluate.stats` paired, and saves recomputing them.
    """
    y, groups = np.asarray(y, dtype=int), np.asarray(groups)
    key = (n_splits, seed, y.tobytes(), groups.astype(np.int64).tobytes())
    if key not in _SPLITS:
        if len(_SPLITS) > 20000:
            _SPLITS.clear()
        with warnings.catch_warnings():  # said once, per population, by the runner (pipeline.checks)
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            _SPLITS[key] = list(inner_cv(seed, n_splits).split(np.zeros((len(y), 1)), y, groups))
    return _SPLITS[key]


def make_search(temporal: bool, t: int, mode: str, classifier: str, width: int, seed: int = 0,
                alpha: float = 0.5, include_epoch0: bool = False, inner_folds: int = INNER_FOLDS) -> GridSearchCV:
    """The tuned model as a scikit-learn object; fit it with ``groups=`` (the configurations).

    ``Pipeline(signature, StandardScaler, classifier)`` in a ``GridSearchCV`` over the grid of
    :data:`CLASSIFIERS`, scored by balanced accuracy on grouped inner folds. Its input is a
    feature matrix of ``Networks.X`` layout (:class:`paperlib.evaluate.evaluation.Networks`).
    """
    spec = CLASSIFIERS[classifier]
    pipe = Pipeline([("signature", signature_step(temporal, t, mode, width, alpha, include_epoch0)),
                     ("scale", StandardScaler()), ("clf", spec.estimator(seed))])
    d = n_signature_features(temporal, t, width, include_epoch0)
    grid = [{f"clf__{k}": [v] for k, v in p.items()} for p in spec.grid_points(d)]
    return GridSearchCV(pipe, grid, cv=inner_cv(seed, inner_folds), scoring=SELECTION_METRIC)


# --------------------------------------------------------------------------- the fast path
def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y`` (``sklearn.metrics.balanced_accuracy_score``)."""
    y, pred = np.asarray(y), np.asarray(pred)
    recalls = []
    for c in (np.unique(y) if y.dtype.kind not in "iub" or len(y) == 0 or y.min() < 0 or y.max() > 1 else (0, 1)):
        m = y == c
        if m.any():
            recalls.append(np.count_nonzero(pred[m] == c) / np.count_nonzero(m))
    return float(np.mean(recalls)) if recalls else float("nan")


def _sqdist(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
    return np.maximum(d, 0.0)


class _Constant:
    """The model of a single-class training set: predicts that class; score 0."""

    def __init__(self, label: int):
        self.label = int(label)

    def predict(self, X):
        return np.full(len(X), self.label, dtype=int)

    def score(self, X):
        return np.zeros(len(X))


@dataclass
class FitCounter:
    """Fits and fits that stopped without converging (ConvergenceWarning), per task."""

    fits: int = 0
    not_converged: int = 0

    @contextlib.contextmanager
    def fit(self) -> Iterator[None]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            yield
        self.fits += 1
        bad = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
        self.not_converged += bool(bad)
        for w in caught:  # anything else is passed on, never swallowed
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


class _SVMModel:
    """A fitted RBF SVM on scaled features (predicts like the ``Pipeline(scaler, SVC)``)."""

    def __init__(self, scaler, svc, X_train, gamma):
        self.scaler, self.svc, self.X_train, self.gamma = scaler, svc, X_train, gamma

    def _kernel(self, X):
        return np.exp(-self.gamma * _sqdist(self.scaler.transform(X), self.X_train))

    def predict(self, X):
        return self.svc.predict(self._kernel(X)).astype(int)

    def score(self, X):
        return self.svc.decision_function(self._kernel(X))


class _PipeModel:
    def __init__(self, pipe):
        self.pipe = pipe

    def predict(self, X):
        return self.pipe.predict(X).astype(int)

    def score(self, X):
        return self.pipe.predict_proba(X)[:, 1]


class _BinarySVC:
    """``SVC(kernel="precomputed", C, class_weight)`` for labels {0, 1}, without the per-call validation.

    Calls the same libsvm routine as :class:`sklearn.svm.SVC` (``sklearn.svm._libsvm.fit``, with
    SVC's defaults: ``tol=1e-3``, shrinking, ``class_weight`` "balanced" = ``n / (2 * count)``);
    the decision function is ``-(K[:, support] @ dual + intercept)`` in libsvm's orientation, i.e.
    SVC's ``decision_function``, and a network is predicted "high" where it is >= 0, as SVC does.
    scikit-learn's input checks cost ~20x the fit on these tiny problems (they dominated the
    run time); if the private routine is unavailable, :class:`sklearn.svm.SVC` is used instead.
    ``tests/test_evaluation.py`` checks both against ``GridSearchCV``.
    """

    def __init__(self, C: float, class_weight):
        self.C, self.class_weight = C, class_weight

    def fit(self, K: np.ndarray, y: np.ndarray) -> "_BinarySVC":
        y = np.asarray(y, dtype=int)
        if _libsvm is None:
            self.svc_ = SVC(kernel="precomputed", C=self.C, class_weight=self.class_weight).fit(K, y)
            return self
        w = np.ones(2) if self.class_weight is None else len(y) / (2.0 * np.bincount(y, minlength=2))
        sup, _, _, coef, b, *_ = _libsvm.fit(
            np.ascontiguousarray(K, dtype=np.float64), y.astype(np.float64), svm_type=0, kernel="precomputed",
            C=float(self.C), class_weight=w.astype(np.float64), sample_weight=np.empty(0), tol=1e-3,
            cache_size=200.0, shrinking=1, max_iter=-1)
        self.support_, self.dual_, self.intercept_ = sup, coef[0], float(b[0])
        return self

    def decision_function(self, K: np.ndarray) -> np.ndarray:
        if _libsvm is None:
            return self.svc_.decision_function(K)
        return -(K[:, self.support_] @ self.dual_ + self.intercept_)

    def predict(self, K: np.ndarray) -> np.ndarray:
        if _libsvm is None:
            return self.svc_.predict(K).astype(int)
        return (self.decision_function(K) >= 0).astype(int)


def _svc(C: float, class_weight) -> _BinarySVC:
    return _BinarySVC(C, class_weight)


def _inner_scores(Z, y, groups, classifier, seed, n_splits, counter) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Balanced accuracy of every grid point on every inner split: ``(points, (n_points, n_splits))``."""
    spec = CLASSIFIERS[classifier]
    points = spec.grid_points(Z.shape[1])
    scores = np.zeros((len(points), n_splits))
    for j, (tr, va) in enumerate(grouped_splits(y, groups, n_splits, seed)):
        scaler = StandardScaler().fit(Z[tr])
        ztr, zva = scaler.transform(Z[tr]), scaler.transform(Z[va])
        if classifier == "svm":
            d_tr, d_va = _sqdist(ztr, ztr), _sqdist(zva, ztr)
            kernels: dict[float, tuple[np.ndarray, np.ndarray]] = {}
            for i, p in enumerate(points):
                if p["gamma"] not in kernels:
                    kernels[p["gamma"]] = (np.exp(-p["gamma"] * d_tr), np.exp(-p["gamma"] * d_va))
                k_tr, k_va = kernels[p["gamma"]]
                if len(np.unique(y[tr])) < 2:
                    pred = np.full(len(va), y[tr][0])
                else:
                    pred = _svc(p["C"], p["class_weight"]).fit(k_tr, y[tr]).predict(k_va)
                    counter.fits += 1  # libsvm runs to its tolerance (no iteration cap): always converged
                scores[i, j] = balanced_accuracy(y[va], pred)
        else:
            base = spec.estimator(seed)
            for i, p in enumerate(points):
                if len(np.unique(y[tr])) < 2:
                    pred = np.full(len(va), y[tr][0])
                else:
                    with counter.fit():
                        pred = clone(base).set_params(**p).fit(ztr, y[tr]).predict(zva)
                scores[i, j] = balanced_accuracy(y[va], pred)
    return points, scores


def tune_and_fit(Z: np.ndarray, y: np.ndarray, groups: np.ndarray, classifier: str, seed: int,
                 inner_folds: int = INNER_FOLDS, counter: FitCounter | None = None):
    """Choose the hyperparameters by grouped inner CV on ``(Z, y)``; refit on all of it.

    Same choice and predictions as :func:`make_search` (without the signature step) fitted
    with ``groups``: the highest mean inner balanced accuracy, the first grid point on ties.
    Returns ``(model, best_params)``; the model has ``predict`` and ``score`` (SVM decision
    function, MLP probability of "high").
    """
    counter = counter if counter is not None else FitCounter()
    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) < 2:
        return _Constant(y[0]), {"constant": int(y[0])}
    # at most one inner fold per configuration, and never more folds than the larger class has
    # members (scikit-learn refuses a split where every class is smaller than the folds)
    n_splits = int(min(inner_folds, len(np.unique(groups)), np.bincount(y, minlength=2).max()))
    points = CLASSIFIERS[classifier].grid_points(Z.shape[1])
    if len(points) > 1 and n_splits >= 2:
        points, scores = _inner_scores(Z, y, groups, classifier, seed, n_splits, counter)
        means = np.average(scores, axis=1)
        best = points[int(np.argmax(means))]
    else:
        best = points[0]
    scaler = StandardScaler().fit(Z)
    zs = scaler.transform(Z)
    if classifier == "svm":
        svc = _svc(best["C"], best["class_weight"]).fit(np.exp(-best["gamma"] * _sqdist(zs, zs)), y)
        counter.fits += 1
        return _SVMModel(scaler, svc, zs, best["gamma"]), best
    with counter.fit():
        pipe = Pipeline([("scale", scaler), ("clf", clone(CLASSIFIERS[classifier].estimator(seed)).set_params(**best))])
        pipe[-1].fit(zs, y)
    return _PipeModel(pipe), best


def _fmt_params(best: dict[str, Any]) -> str:
    out = []
    for k, v in best.items():
        out.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return ";".join(out)
