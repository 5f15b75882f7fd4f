"""One evaluator for Q1 and Q2: grouped nested cross-validation, tuned classifiers, honest read-outs.

A :class:`Task` is one feature set x signature mode x classifier, evaluated at every ``t``
of ``ts`` and every seed of ``seeds``:

* **Q1** (``test is None``): repeated cross-validation inside one population.
* **Q2** (``test`` given): train on whole populations, test on another one.

The protocol, stated once:

* **Information horizon.** At ``t`` only the networks alive at ``t``
  (:meth:`paperlib.features.sets.PopulationFeatures.alive`) are used, for training and for
  testing; the others (diverged at or before ``t``, stopped before ``t``) were decided
  before ``t`` and are counted in ``n_decided``.
* **Grouped folds.** Networks of one configuration (every hyperparameter but the seed,
  :attr:`PopulationFeatures.groups`) stay in one fold, in the outer and in the inner
  (tuning) splits: :class:`sklearn.model_selection.StratifiedGroupKFold` with
  ``shuffle=True`` and the repetition's seed. In Q2 the groups of different populations
  are distinct.
* **Model.** ``Pipeline(signature, StandardScaler, classifier)``; the scaler is fitted on
  every (inner and outer) training fold only.
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
* **Read-outs**, per repetition (seed), over the pooled out-of-fold predictions (every
  alive network predicted once): ``accuracy`` (the paper's metric),
  ``balanced_accuracy``, ``majority_accuracy`` (always predicting the training folds'
  larger class), ``single_class`` (the pooled predictions hold one class only: a constant
  predictor, never a result), the Spearman correlation between the classifier's score and
  the final accuracy, ``n_decided``, and the per-fold accuracies that the paired test of
  :mod:`paperlib.evaluate.stats` needs.

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
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import sklearn
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from .. import kernels
from ..features.sets import PopulationFeatures, feature_set

try:  # the routine SVC itself calls; see _BinarySVC
    from sklearn.svm import _libsvm

    _libsvm.set_verbosity_wrap(0)
except (ImportError, AttributeError):  # pragma: no cover - another scikit-learn layout
    _libsvm = None
from ..features.signatures import SnapshotAt, TemporalSignature

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
def signature_step(name: str, t: int, mode: str, width: int, alpha: float = 0.5, include_epoch0: bool = False):
    """The signature transformer of feature set ``name`` at ``t`` (a ``SnapshotAt`` for the baselines)."""
    fs = feature_set(name)
    if fs.temporal:
        return TemporalSignature(t=t, mode=mode, alpha=alpha, include_epoch0=include_epoch0, width=width)
    if mode != "plain":
        raise ValueError(f"feature set {name!r} has only the 'plain' mode")
    return SnapshotAt(t=t, width=width)


def n_signature_features(name: str, t: int, width: int, include_epoch0: bool = False) -> int:
    if not feature_set(name).temporal:
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
        _SPLITS[key] = list(inner_cv(seed, n_splits).split(np.zeros((len(y), 1)), y, groups))
    return _SPLITS[key]


def make_search(name: str, t: int, mode: str, classifier: str, width: int, seed: int = 0,
                alpha: float = 0.5, include_epoch0: bool = False, inner_folds: int = INNER_FOLDS) -> GridSearchCV:
    """The tuned model as a scikit-learn object; fit it with ``groups=`` (the configurations).

    ``Pipeline(signature, StandardScaler, classifier)`` in a ``GridSearchCV`` over the grid of
    :data:`CLASSIFIERS`, scored by balanced accuracy on grouped inner folds. Its input is a
    feature matrix of :meth:`PopulationFeatures.matrix` layout.
    """
    spec = CLASSIFIERS[classifier]
    pipe = Pipeline([("signature", signature_step(name, t, mode, width, alpha, include_epoch0)),
                     ("scale", StandardScaler()), ("clf", spec.estimator(seed))])
    d = n_signature_features(name, t, width, include_epoch0)
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


def _spearman(score: np.ndarray, final_acc: np.ndarray) -> float:
    ok = np.isfinite(final_acc) & np.isfinite(score)
    if ok.sum() < 3 or np.ptp(score[ok]) == 0 or np.ptp(final_acc[ok]) == 0:
        return float("nan")
    return float(spearmanr(score[ok], final_acc[ok]).statistic)


def readouts(y, pred, score, majority, final_acc) -> dict[str, Any]:
    """Accuracy, balanced accuracy, majority rate, single-class flag and Spearman of pooled predictions."""
    y, pred = np.asarray(y, dtype=int), np.asarray(pred, dtype=int)
    return {
        "accuracy": float(np.mean(pred == y)),
        "balanced_accuracy": balanced_accuracy(y, pred) if len(np.unique(y)) > 1 else float("nan"),
        "majority_accuracy": float(np.mean(np.asarray(majority) == y)),
        "single_class": bool(len(np.unique(pred)) < 2),
        "spearman": _spearman(np.asarray(score, dtype=float), np.asarray(final_acc, dtype=np.float64)),
    }


def nested_cv(Z: np.ndarray, y: np.ndarray, groups: np.ndarray, final_acc: np.ndarray, classifier: str,
              seed: int, n_folds: int, counter: FitCounter | None = None) -> dict[str, Any]:
    """One repetition of the grouped nested cross-validation on transformed features ``Z``."""
    counter = counter if counter is not None else FitCounter()
    y = np.asarray(y, dtype=int)
    n = len(y)
    score, pred, majority = np.empty(n), np.empty(n, dtype=int), np.empty(n, dtype=int)
    chosen, fold_acc, fold_n = [], [], []
    for tr, te in grouped_splits(y, groups, n_folds, seed):
        model, best = tune_and_fit(Z[tr], y[tr], groups[tr], classifier, seed, INNER_FOLDS, counter)
        score[te] = model.score(Z[te])
        pred[te] = model.predict(Z[te])
        majority[te] = int(np.mean(y[tr]) > 0.5)
        chosen.append(_fmt_params(best))
        fold_acc.append(float(np.mean(pred[te] == y[te])))
        fold_n.append(f"{len(tr)}/{len(te)}")
    return readouts(y, pred, score, majority, final_acc) | {
        "params": "|".join(chosen), "fold_accuracy": ";".join(f"{a:.6g}" for a in fold_acc),
        "fold_sizes": ";".join(fold_n)}


# --------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class Task:
    """One feature set x mode x classifier: Q1 (``test is None``, CV in ``train[0]``) or Q2 (train -> test)."""

    experiment: str  # "q1" or "q2"
    name: str  # "q1" or the transfer's name
    train: tuple[PopulationFeatures, ...]
    test: PopulationFeatures | None
    feature_set: str
    mode: str
    classifier: str
    ts: tuple[int, ...]
    seeds: tuple[int, ...]
    n_folds: int = 5
    alpha: float = 0.5
    include_epoch0: bool = False

    @property
    def cost(self) -> float:
        """A rough relative cost, to start the longest tasks first."""
        n = sum(f.n_runs for f in self.train) + (self.test.n_runs if self.test is not None else 0)
        return len(self.ts) * len(self.seeds) * (8 if self.classifier == "mlp" else 1) * n


@dataclass(frozen=True)
class Skip:
    experiment: str
    name: str
    dataset: str
    arch: str
    feature_set: str
    mode: str
    classifier: str
    t: int | None
    reason: str

    def row(self) -> dict[str, Any]:
        return {"experiment": self.experiment if self.experiment == "q1" else f"q2:{self.name}",
                "dataset": self.dataset, "arch": self.arch, "feature_set": self.feature_set, "mode": self.mode,
                "classifier": self.classifier, "t": "" if self.t is None else self.t, "reason": self.reason}


def class_problem(y: np.ndarray, groups: np.ndarray, n_folds: int) -> str | None:
    """Why ``(y, groups)`` cannot be cross-validated in ``n_folds`` grouped folds, or None."""
    counts = np.bincount(np.asarray(y, dtype=int), minlength=2)
    n_groups = [len(np.unique(groups[y == c])) for c in (0, 1)]
    if counts.min() < n_folds:
        return f"{counts[1]} high / {counts[0]} low networks: a class has fewer than n_folds={n_folds}"
    if min(n_groups) < 2:
        return f"a class spans fewer than 2 configurations ({n_groups[1]} high / {n_groups[0]} low)"
    if len(np.unique(groups)) < n_folds:
        return f"{len(np.unique(groups))} configurations: fewer than n_folds={n_folds}"
    return None


def usable_ts(task_like: Task) -> tuple[list[int], list[tuple[int, str]]]:
    """The ``t`` of a task that can be evaluated, and ``(t, reason)`` for those that cannot."""
    ok, bad = [], []
    for t in task_like.ts:
        y, g, _, _, _ = _training_data(task_like, t)
        why = None
        if task_like.test is None:
            why = class_problem(y, g, task_like.n_folds)
        else:
            counts = np.bincount(y, minlength=2)
            if counts.min() < 2:
                why = f"the training populations have {counts[1]} high / {counts[0]} low networks alive at t={t}"
            elif not task_like.test.alive(t).any():
                why = f"no network of {task_like.test.arch} is alive at t={t}"
        (bad.append((t, why)) if why else ok.append(t))
    return ok, bad


def _training_data(task: Task, t: int):
    ys, gs, fins, masks, offset = [], [], [], [], 0
    for f in task.train:
        m = f.alive(t)
        ys.append(f.labels[m])
        gs.append(f.groups[m] + offset)
        fins.append(f.final_acc[m])
        masks.append(m)
        offset += int(f.groups.max()) + 1 if len(f.groups) else 0
    return (np.concatenate(ys).astype(int), np.concatenate(gs), np.concatenate(fins), masks,
            sum(int((~m).sum()) for m in masks))


def _transform(task: Task, f: PopulationFeatures, mask: np.ndarray, t: int) -> np.ndarray:
    X = f.matrix(task.feature_set)[mask]
    step = signature_step(task.feature_set, t, task.mode, f.width(task.feature_set), task.alpha,
                          task.include_epoch0)
    Z = step.fit_transform(X) if len(X) else np.zeros((0, n_signature_features(
        task.feature_set, t, f.width(task.feature_set), task.include_epoch0)))
    if not np.isfinite(Z).all():
        bad = np.asarray(f.keys)[mask][~np.isfinite(Z).all(axis=1)]
        raise ValueError(f"{f.arch}: non-finite {task.feature_set} features at t={t} for alive run(s) "
                         f"{list(bad)[:5]}; the features step should have refused them")
    return Z


@contextlib.contextmanager
def single_thread():
    """One BLAS thread (tiny matrices: threads only add overhead, and workers run side by side; the
    split of a product across threads would change its bits) and no re-validation of features
    already checked finite. Refuses to start unless numpy and OpenBLAS run the pinned kernels
    (:func:`paperlib.kernels.check`). Warnings are not touched here."""
    kernels.check("evaluation")
    with threadpool_limits(1), sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        yield


def run_task(task: Task) -> list[dict[str, Any]]:
    """Evaluate one task at every usable ``t`` and seed; one row per ``(t, seed)``.

    Row keys: see :data:`ROW_KEYS`.
    """
    ts, _ = usable_ts(task)
    rows = []
    with single_thread():
        for t in ts:
            y, groups, final_acc, masks, n_decided_train = _training_data(task, t)
            Z = np.concatenate([_transform(task, f, m, t) for f, m in zip(task.train, masks)])
            if task.test is not None:
                m_te = task.test.alive(t)
                Z_te = _transform(task, task.test, m_te, t)
                y_te = task.test.labels[m_te]
            for seed in task.seeds:
                counter = FitCounter()
                if task.test is None:
                    res = nested_cv(Z, y, groups, final_acc, task.classifier, seed, task.n_folds, counter)
                    test_arch, f0 = task.train[0].arch, task.train[0]
                    n_net, n_high, n_dec = len(y), int(y.sum()), n_decided_train
                else:
                    model, best = tune_and_fit(Z, y, groups, task.classifier, seed, INNER_FOLDS, counter)
                    res = readouts(y_te, model.predict(Z_te), model.score(Z_te),
                                   np.full(len(y_te), int(np.mean(y) > 0.5)), task.test.final_acc[m_te])
                    res |= {"params": _fmt_params(best), "fold_accuracy": "", "fold_sizes": ""}
                    test_arch, f0 = task.test.arch, task.test
                    n_net, n_high, n_dec = len(y_te), int(y_te.sum()), int((~m_te).sum())
                rows.append({
                    "experiment": task.experiment, "transfer": task.name if task.experiment == "q2" else "",
                    "train_archs": "+".join(f.arch for f in task.train), "dataset": f0.dataset, "arch": test_arch,
                    "feature_set": task.feature_set, "mode": task.mode, "classifier": task.classifier, "t": t,
                    "seed": seed, **res, "threshold": f0.threshold, "n_networks": n_net, "n_high": n_high,
                    "n_decided": n_dec, "n_train": len(y), "n_high_train": int(y.sum()),
                    "n_decided_train": n_decided_train, "n_configurations": int(len(np.unique(groups))),
                    "n_folds": task.n_folds if task.test is None else 0, "inner_folds": INNER_FOLDS,
                    "n_fits": counter.fits, "n_not_converged": counter.not_converged})
    return rows


ROW_KEYS = ["experiment", "transfer", "train_archs", "dataset", "arch", "feature_set", "mode", "classifier", "t",
            "seed", "accuracy", "balanced_accuracy", "majority_accuracy", "single_class", "spearman", "params",
            "fold_accuracy", "fold_sizes", "threshold", "n_networks", "n_high", "n_decided", "n_train",
            "n_high_train", "n_decided_train", "n_configurations", "n_folds", "inner_folds", "n_fits",
            "n_not_converged"]


def run_tasks(tasks: Sequence[Task], n_jobs: int = 2, desc: str = "tasks") -> list[dict[str, Any]]:
    """Run tasks (longest first) in ``n_jobs`` worker processes; rows in no particular order."""
    from joblib import Parallel, delayed

    from ..progress import Progress

    tasks = sorted(tasks, key=lambda task: -task.cost)
    out: list[dict[str, Any]] = []
    with Progress(f"{desc} evaluations", len(tasks), unit="tasks") as bar:
        if n_jobs == 1 or len(tasks) <= 1:
            for task in tasks:
                out.extend(run_task(task))
                bar.update()
            return out
        par = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
        for rows in par(delayed(run_task)(task) for task in tasks):
            out.extend(rows)
            bar.update()
    return out


@dataclass
class Plan:
    tasks: list[Task] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
