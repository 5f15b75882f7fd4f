"""Q1 and Q2: predicting high/low final accuracy from the first t epochs (step S4).

The protocol, per population (Q1):

* **Labels**: "high" when the final test accuracy is at least the population's
  threshold; diverged runs are "low" (:func:`paperlib.features.population_labels`).
* **Model**: ``Pipeline(signature, StandardScaler, classifier)`` where the signature
  is :class:`~paperlib.signatures.TemporalSignature` (epochs ``1..t``, a mode) or
  :class:`~paperlib.signatures.SnapshotAt` (epoch ``t``, the weight baselines). The
  classifiers (:data:`CLASSIFIERS`): an RBF SVM (``gamma="scale"``, ``C`` tuned
  over {1, 10, 100}) and a one-hidden-layer MLP (16 ReLU units, L-BFGS, at most
  :data:`MLP_MAX_ITER` iterations, gradient tolerance :data:`MLP_TOL`, L2 penalty
  ``alpha`` tuned over {0.01, 1}). By default the MLP sweeps t for the plain
  ``deg`` and ``evec`` signatures only and evaluates the other feature sets and
  modes at the last t (a reduction forced by the time budget: :func:`run_q1`).
* **Evaluation**: stratified ``n_folds``-fold cross-validation (shuffled), repeated
  for every fold seed of the profile. Inside every outer training fold, the
  hyperparameter is chosen by a stratified 3-fold inner cross-validation on that
  training fold only (accuracy, first of the grid on ties, as ``GridSearchCV``),
  then the pipeline is refitted on the whole training fold. The scaler is fitted
  inside every (inner and outer) training fold.
* **Read-outs**, per fold seed, over the pooled out-of-fold predictions of the
  ``n_folds`` folds (every network predicted exactly once): accuracy, balanced
  accuracy, the accuracy of always predicting the training folds' majority class
  (``majority_accuracy``), and the Spearman correlation between the classifier's
  score (SVM ``decision_function``, MLP probability of "high") and the final
  accuracy, for readers who want a ranking rather than a threshold.

:func:`make_search` builds that model as a scikit-learn ``GridSearchCV`` object.
The experiments run the same computation through :func:`nested_cv`, which skips
the per-call bookkeeping of ``GridSearchCV`` (the signature transformers are
stateless, so they are applied once per ``(t, mode)`` before splitting, and the
inner scaler is shared by the grid points of one inner split);
``tests/test_experiments.py`` checks that both give identical predictions.

Populations where a class has fewer networks than ``n_folds`` cannot be
cross-validated: they are skipped, and the reason is written to
``results/<profile>/q1_skipped.csv`` (or ``q2_skipped.csv``).

Q2 trains on whole populations and tests on another one (``Profile.transfers``),
tuning by inner cross-validation on the training populations; the repetitions
are over seeds (inner-split shuffling and the MLP's initialisation). A feature set
whose width differs between the populations (``B_Wl`` across architectures with
different last layers) cannot transfer and is skipped with that reason.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd
import sklearn
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from . import paths
from .features import FEATURE_SETS, PopulationFeatures, feature_set, load_population
from .metrics import update_metrics
from .profiles import Profile
from .signatures import SnapshotAt, TemporalSignature

INNER_FOLDS = 3
MLP_HIDDEN = (16,)
MLP_MAX_ITER = 50
MLP_TOL = 1e-3
N_JOBS = 2
# (mode, feature set) pairs whose MLP t-sweep runs by default; the rest at the last t (see run_q1)
MLP_SWEEP = {("plain", "deg"), ("plain", "evec")}


@dataclass(frozen=True)
class ClassifierSpec:
    name: str
    grid: dict[str, tuple[Any, ...]]

    def estimator(self, seed: int):
        if self.name == "svm":
            return SVC(kernel="rbf", gamma="scale")
        if self.name == "mlp":
            return MLPClassifier(hidden_layer_sizes=MLP_HIDDEN, solver="lbfgs", max_iter=MLP_MAX_ITER,
                                 tol=MLP_TOL, random_state=seed)
        raise KeyError(self.name)

    def grid_points(self) -> list[dict[str, Any]]:
        keys = list(self.grid)
        return [dict(zip(keys, vals)) for vals in itertools.product(*(self.grid[k] for k in keys))]


CLASSIFIERS: dict[str, ClassifierSpec] = {
    "svm": ClassifierSpec("svm", {"C": (1.0, 10.0, 100.0)}),
    "mlp": ClassifierSpec("mlp", {"alpha": (0.01, 1.0)}),
}


def signature_step(name: str, t: int, mode: str, width: int, alpha: float = 0.5, include_epoch0: bool = False):
    """The signature transformer of feature set ``name`` at ``t`` (a ``SnapshotAt`` for the baselines)."""
    fs = feature_set(name)
    if fs.temporal:
        return TemporalSignature(t=t, mode=mode, alpha=alpha, include_epoch0=include_epoch0, width=width)
    if mode != "plain":
        raise ValueError(f"feature set {name!r} has only the 'plain' mode")
    return SnapshotAt(t=t, width=width)


def make_search(name: str, t: int, mode: str, classifier: str, width: int, seed: int = 0,
                alpha: float = 0.5, include_epoch0: bool = False) -> GridSearchCV:
    """The Q1 model as a scikit-learn object: inner-CV-tuned ``Pipeline(signature, scaler, classifier)``.

    Its input is a feature matrix of :meth:`PopulationFeatures.matrix` layout.
    """
    spec = CLASSIFIERS[classifier]
    pipe = Pipeline([
        ("signature", signature_step(name, t, mode, width, alpha, include_epoch0)),
        ("scale", StandardScaler()),
        ("clf", spec.estimator(seed)),
    ])
    grid = {f"clf__{k}": list(v) for k, v in spec.grid.items()}
    return GridSearchCV(pipe, grid, cv=StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=seed),
                        scoring="accuracy")


# --------------------------------------------------------------------------- the fast nested CV
def _score(model: Pipeline, X: np.ndarray) -> np.ndarray:
    clf = model[-1]
    if hasattr(clf, "decision_function"):
        return model.decision_function(X)
    return model.predict_proba(X)[:, 1]


def tune_and_fit(Z: np.ndarray, y: np.ndarray, classifier: str, seed: int,
                 inner_folds: int = INNER_FOLDS) -> tuple[Pipeline, dict[str, Any]]:
    """Choose the hyperparameters by stratified inner CV on ``(Z, y)``, refit on all of it.

    Same choice as ``GridSearchCV(Pipeline(scaler, clf), grid, cv=StratifiedKFold(inner_folds,
    shuffle=True, random_state=seed), scoring="accuracy")``: highest mean accuracy, first on ties.
    """
    spec = CLASSIFIERS[classifier]
    points = spec.grid_points()
    base = spec.estimator(seed)
    if len(points) > 1:
        acc = np.zeros((len(points), inner_folds))
        inner = StratifiedKFold(inner_folds, shuffle=True, random_state=seed)
        for j, (tr, va) in enumerate(inner.split(Z, y)):
            scaler = StandardScaler().fit(Z[tr])
            ztr, zva = scaler.transform(Z[tr]), scaler.transform(Z[va])
            for i, params in enumerate(points):
                clf = clone(base).set_params(**params).fit(ztr, y[tr])
                acc[i, j] = np.mean(clf.predict(zva) == y[va])
        best = points[int(np.argmax(acc.mean(axis=1)))]
    else:
        best = points[0]
    model = Pipeline([("scale", StandardScaler()), ("clf", clone(base).set_params(**best))]).fit(Z, y)
    return model, best


def _spearman(score: np.ndarray, final_acc: np.ndarray) -> float:
    ok = np.isfinite(final_acc) & np.isfinite(score)
    if ok.sum() < 3 or np.ptp(score[ok]) == 0 or np.ptp(final_acc[ok]) == 0:
        return float("nan")
    return float(spearmanr(score[ok], final_acc[ok]).statistic)


def nested_cv(Z: np.ndarray, y: np.ndarray, final_acc: np.ndarray, classifier: str, fold_seed: int,
              n_folds: int) -> dict[str, Any]:
    """One repetition of the Q1 protocol on transformed features ``Z``; pooled out-of-fold read-outs."""
    n = len(y)
    score = np.empty(n)
    pred = np.empty(n, dtype=int)
    majority = np.empty(n, dtype=int)
    chosen = []
    outer = StratifiedKFold(n_folds, shuffle=True, random_state=fold_seed)
    for tr, te in outer.split(Z, y):
        inner = int(min(INNER_FOLDS, np.bincount(y[tr], minlength=2).min()))
        model, best = tune_and_fit(Z[tr], y[tr], classifier, fold_seed, max(inner, 2))
        score[te] = _score(model, Z[te])
        pred[te] = model.predict(Z[te])
        majority[te] = int(np.mean(y[tr]) > 0.5)
        chosen.append(";".join(f"{k}={v:g}" for k, v in best.items()))
    return _readouts(y, pred, score, majority, final_acc) | {"params": "|".join(chosen)}


def _readouts(y, pred, score, majority, final_acc) -> dict[str, float]:
    from sklearn.metrics import balanced_accuracy_score

    return {
        "accuracy": float(np.mean(pred == y)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if len(np.unique(y)) > 1 else float("nan"),
        "majority_accuracy": float(np.mean(majority == y)),
        "spearman": _spearman(score, np.asarray(final_acc, dtype=np.float64)),
    }


@contextlib.contextmanager
def _quiet_single_thread():
    """One BLAS thread (tiny matrices: threads only add overhead, and workers run side by side),
    no input re-validation of features already checked finite, no convergence warnings."""
    with warnings.catch_warnings(), threadpool_limits(1), \
            sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


# --------------------------------------------------------------------------- Q1
Q1_COLUMNS = ["dataset", "arch", "feature_set", "mode", "classifier", "t", "fold_seed", "accuracy",
              "balanced_accuracy", "majority_accuracy", "spearman", "threshold", "n_networks", "n_high",
              "n_folds", "inner_folds", "params", "seconds"]
SKIP_COLUMNS = ["experiment", "dataset", "arch", "feature_set", "mode", "classifier", "reason"]


def _modes(profile: Profile, name: str) -> tuple[str, ...]:
    return tuple(m for m in profile.modes if m in feature_set(name).modes)


def _q1_task(feats: PopulationFeatures, name: str, mode: str, classifier: str, ts: list[int],
             profile: Profile) -> list[dict[str, Any]]:
    y = feats.labels
    X = feats.matrix(name)
    width = feats.width(name)
    rows = []
    with _quiet_single_thread():
        for t in ts:
            step = signature_step(name, t, mode, width, profile.alpha, profile.include_epoch0)
            Z = step.fit_transform(X)
            for seed in profile.fold_seeds:
                t0 = time.perf_counter()
                res = nested_cv(Z, y, feats.final_acc, classifier, seed, profile.n_folds)
                rows.append({"dataset": feats.dataset, "arch": feats.arch, "feature_set": name, "mode": mode,
                             "classifier": classifier, "t": t, "fold_seed": seed, **res,
                             "threshold": feats.threshold, "n_networks": len(y), "n_high": int(y.sum()),
                             "n_folds": profile.n_folds, "inner_folds": INNER_FOLDS,
                             "seconds": time.perf_counter() - t0})
    return rows


def _run_tasks(tasks: list[tuple], fn, n_jobs: int, desc: str) -> list[dict[str, Any]]:
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    if n_jobs == 1 or len(tasks) <= 1:
        return [r for task in tqdm(tasks, desc=desc) for r in fn(*task)]
    par = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    out = []
    for rows in tqdm(par(delayed(fn)(*task) for task in tasks), total=len(tasks), desc=desc):
        out.extend(rows)
    return out


def q1_plan(profile: Profile, full: bool = False) -> tuple[list[tuple], list[dict[str, Any]]]:
    """The Q1 tasks ``(features, feature_set, mode, classifier, ts, profile)`` and the skipped ones.

    Unless ``full``, the MLP runs every t only for :data:`MLP_SWEEP`, the rest at the
    population's last t (see :func:`run_q1`).
    """
    tasks, skipped = [], []
    for pop in profile.populations:
        feats = load_population(profile, pop.arch)
        y = feats.labels
        counts = np.bincount(y, minlength=2)
        t_max = min(pop.t_max, feats.t_available)
        ts = list(range(1, t_max + 1))
        for name in profile.feature_sets:
            for mode in _modes(profile, name):
                for clf in profile.classifiers:
                    base = {"experiment": "q1", "dataset": pop.dataset, "arch": pop.arch, "feature_set": name,
                            "mode": mode, "classifier": clf}
                    if counts.min() < profile.n_folds:
                        skipped.append(base | {"reason": f"{counts[1]} high / {counts[0]} low networks: "
                                                          f"a class has fewer than n_folds={profile.n_folds}"})
                    elif name in feats.missing:
                        skipped.append(base | {"reason": feats.missing[name]})
                    elif not ts:
                        skipped.append(base | {"reason": "no trained epoch available"})
                    else:
                        reduced = clf == "mlp" and not full and (mode, name) not in MLP_SWEEP
                        tasks.append((feats, name, mode, clf, ts[-1:] if reduced else ts, profile))
    return tasks, skipped


def run_q1(profile: Profile, n_jobs: int = N_JOBS, full: bool = False) -> pd.DataFrame:
    """Q1 on every population, t, feature set, mode and classifier of the profile.

    The SVM covers the whole grid. The MLP costs about four times as much per
    fit (L-BFGS on a 16-unit network versus libsvm), and the whole grid with both
    classifiers takes about three times the default profile's budget for this
    step (9 minutes on 2 cores). So by default the MLP sweeps t for the plain
    ``deg`` and ``evec`` signatures (:data:`MLP_SWEEP`), and evaluates every other
    feature set and mode at the population's last t only (the comparison of
    Table 2). ``full=True`` sweeps everything. The choice is recorded in the
    ``protocol`` entry of ``metrics.json``.

    Writes the tidy table ``results/<profile>/q1.csv`` (one row per dataset, arch,
    feature set, mode, classifier, t and fold seed; columns :data:`Q1_COLUMNS`),
    the skipped combinations to ``q1_skipped.csv``, and the headline numbers to the
    ``q1`` section of ``metrics.json``. ``n_jobs`` worker processes share the tasks.
    """
    t0 = time.perf_counter()
    tasks, skipped = q1_plan(profile, full)
    # longest first: better balance between the workers
    tasks.sort(key=lambda task: -len(task[4]) * (5 if task[3] == "mlp" else 1) * task[0].matrix(task[1]).shape[1])
    rows = _run_tasks(tasks, _q1_task, n_jobs, "Q1")
    df = pd.DataFrame(rows, columns=Q1_COLUMNS)
    df = df.sort_values(["dataset", "arch", "feature_set", "mode", "classifier", "t", "fold_seed"],
                        kind="stable").reset_index(drop=True)
    out = paths.ensure(paths.results_dir(profile.name))
    df.to_csv(out / "q1.csv", index=False)
    pd.DataFrame(skipped, columns=SKIP_COLUMNS).to_csv(out / "q1_skipped.csv", index=False)
    if skipped:
        warnings.warn(f"Q1 skipped {len(skipped)} combination(s); see {out / 'q1_skipped.csv'}", stacklevel=2)
    update_metrics(profile.name, "q1", q1_headline(profile, df, time.perf_counter() - t0, len(skipped), full))
    return df


def _plain_at_last_t(last: pd.DataFrame) -> dict[str, Any]:
    """``{feature_set: {classifier: {"accuracy", "std", "spearman"}}}`` of the plain mode (no mode is
    picked on these test scores, so the headline is not optimistically selected)."""
    out: dict[str, Any] = {}
    plain = last[last["mode"] == "plain"]
    for (name, clf), h in plain.groupby(["feature_set", "classifier"]):
        out.setdefault(name, {})[clf] = {"accuracy": round(float(h["accuracy"].mean()), 4),
                                         "std": round(float(h["accuracy"].std(ddof=0)), 4),
                                         "spearman": round(float(h["spearman"].mean()), 4)}
    return out


def q1_headline(profile: Profile, df: pd.DataFrame, seconds: float, n_skipped: int,
                full: bool = False) -> dict[str, Any]:
    """Per architecture, at its last t: mean and spread over fold seeds of every feature set (plain mode)."""
    out: dict[str, Any] = {"seconds": round(seconds, 1), "n_rows": int(len(df)), "n_skipped": n_skipped,
                           "protocol": protocol(profile) | {"mlp_every_t": "all" if full else sorted(
                               f"{name}/{mode}" for mode, name in MLP_SWEEP)},
                           "per_arch": {}}
    if df.empty:
        return out
    for arch, g in df.groupby("arch", sort=False):
        last = g[g["t"] == g["t"].max()]
        out["per_arch"][arch] = {"t": int(g["t"].max()),
                                 "majority_accuracy": round(float(last["majority_accuracy"].mean()), 4),
                                 "n_networks": int(last["n_networks"].iloc[0]), "n_high": int(last["n_high"].iloc[0]),
                                 **_plain_at_last_t(last)}
    return out


def protocol(profile: Profile) -> dict[str, Any]:
    return {"n_folds": profile.n_folds, "fold_seeds": list(profile.fold_seeds), "inner_folds": INNER_FOLDS,
            "grids": {k: {p: list(v) for p, v in s.grid.items()} for k, s in CLASSIFIERS.items()},
            "mlp": {"hidden": list(MLP_HIDDEN), "solver": "lbfgs", "max_iter": MLP_MAX_ITER, "tol": MLP_TOL},
            "alpha": profile.alpha, "include_epoch0": profile.include_epoch0}


# --------------------------------------------------------------------------- Q2
Q2_COLUMNS = ["transfer", "train_archs", "test_arch", "feature_set", "mode", "classifier", "t", "seed",
              "accuracy", "balanced_accuracy", "majority_accuracy", "spearman", "n_train", "n_high_train",
              "n_test", "n_high_test", "test_threshold", "params", "seconds"]


def _q2_task(transfer: str, train: list[PopulationFeatures], test: PopulationFeatures, name: str, mode: str,
             classifier: str, ts: list[int], profile: Profile) -> list[dict[str, Any]]:
    width = test.width(name)
    y_tr = np.concatenate([f.labels for f in train])
    y_te = test.labels
    rows = []
    with _quiet_single_thread():
        for t in ts:
            step = signature_step(name, t, mode, width, profile.alpha, profile.include_epoch0)
            Z_tr = np.concatenate([clone(step).fit_transform(f.matrix(name)) for f in train])
            Z_te = clone(step).fit_transform(test.matrix(name))
            inner = int(min(INNER_FOLDS, np.bincount(y_tr, minlength=2).min()))
            for seed in profile.fold_seeds:
                t0 = time.perf_counter()
                model, best = tune_and_fit(Z_tr, y_tr, classifier, seed, max(inner, 2))
                res = _readouts(y_te, model.predict(Z_te), _score(model, Z_te),
                                np.full(len(y_te), int(np.mean(y_tr) > 0.5)), test.final_acc)
                rows.append({"transfer": transfer, "train_archs": "+".join(f.arch for f in train),
                             "test_arch": test.arch, "feature_set": name, "mode": mode, "classifier": classifier,
                             "t": t, "seed": seed, **res, "n_train": len(y_tr), "n_high_train": int(y_tr.sum()),
                             "n_test": len(y_te), "n_high_test": int(y_te.sum()), "test_threshold": test.threshold,
                             "params": ";".join(f"{k}={v:g}" for k, v in best.items()),
                             "seconds": time.perf_counter() - t0})
    return rows


def q2_plan(profile: Profile, full: bool = False) -> tuple[list[tuple], list[dict[str, Any]]]:
    """The Q2 tasks and the skipped ones; the MLP's t-sweep is reduced as in :func:`run_q1`."""
    tasks, skipped = [], []
    cache: dict[str, PopulationFeatures] = {}

    def get(arch: str) -> PopulationFeatures:
        if arch not in cache:
            cache[arch] = load_population(profile, arch)
        return cache[arch]

    for tr in profile.transfers:
        train = [get(a) for a in tr.train]
        test = get(tr.test)
        t_max = min([test.t_available, profile.population(tr.test).t_max]
                    + [min(f.t_available, profile.population(f.arch).t_max) for f in train])
        ts = list(range(1, t_max + 1))
        y_tr = np.concatenate([f.labels for f in train])
        for name in profile.feature_sets:
            for mode in _modes(profile, name):
                for clf in profile.classifiers:
                    base = {"experiment": f"q2:{tr.name}", "dataset": test.dataset, "arch": tr.test,
                            "feature_set": name, "mode": mode, "classifier": clf}
                    missing = [f.arch for f in (*train, test) if name in f.missing]
                    widths = {f.arch: f.arrays[name].shape[2] for f in (*train, test) if name in f.arrays}
                    if missing:
                        skipped.append(base | {"reason": f"not available for {', '.join(missing)}"})
                    elif len(set(widths.values())) > 1:
                        skipped.append(base | {"reason": "per-epoch widths differ across architectures "
                                                          f"({widths}): cannot transfer"})
                    elif np.bincount(y_tr, minlength=2).min() < 2:
                        skipped.append(base | {"reason": "the training populations have fewer than 2 networks "
                                                          "of a class"})
                    elif not ts:
                        skipped.append(base | {"reason": "no trained epoch available"})
                    else:
                        reduced = clf == "mlp" and not full and (mode, name) not in MLP_SWEEP
                        tasks.append((tr.name, train, test, name, mode, clf, ts[-1:] if reduced else ts, profile))
    return tasks, skipped


def run_q2(profile: Profile, n_jobs: int = N_JOBS, full: bool = False) -> pd.DataFrame:
    """Q2 on every transfer of the profile.

    Writes ``results/<profile>/q2.csv`` (one row per transfer, feature set, mode,
    classifier, t and seed; columns :data:`Q2_COLUMNS`), the skipped combinations
    to ``q2_skipped.csv`` and the ``q2`` section of ``metrics.json``. Without
    ``full``, the MLP sweeps t for :data:`MLP_SWEEP` only, as in :func:`run_q1`.
    """
    t0 = time.perf_counter()
    tasks, skipped = q2_plan(profile, full)
    rows = _run_tasks(tasks, _q2_task, n_jobs, "Q2")
    df = pd.DataFrame(rows, columns=Q2_COLUMNS)
    df = df.sort_values(["transfer", "feature_set", "mode", "classifier", "t", "seed"],
                        kind="stable").reset_index(drop=True)
    out = paths.ensure(paths.results_dir(profile.name))
    df.to_csv(out / "q2.csv", index=False)
    pd.DataFrame(skipped, columns=SKIP_COLUMNS).to_csv(out / "q2_skipped.csv", index=False)
    update_metrics(profile.name, "q2", q2_headline(df, time.perf_counter() - t0, len(skipped)) | {
        "mlp_every_t": "all" if full else sorted(f"{name}/{mode}" for mode, name in MLP_SWEEP)})
    return df


def q2_headline(df: pd.DataFrame, seconds: float, n_skipped: int) -> dict[str, Any]:
    """Per transfer, at its last t: mean and spread over seeds of every feature set (plain mode)."""
    out: dict[str, Any] = {"seconds": round(seconds, 1), "n_rows": int(len(df)), "n_skipped": n_skipped,
                           "per_transfer": {}}
    for transfer, g in df.groupby("transfer", sort=False):
        last = g[g["t"] == g["t"].max()]
        out["per_transfer"][transfer] = {"train": g["train_archs"].iloc[0], "test": g["test_arch"].iloc[0],
                                         "t": int(g["t"].max()),
                                         "majority_accuracy": round(float(last["majority_accuracy"].mean()), 4),
                                         **_plain_at_last_t(last)}
    return out
