"""One evaluator for Q1 and Q2: grouped nested cross-validation, tuned classifiers, honest read-outs.

A :class:`Task` is one feature set x signature mode x classifier, evaluated at every ``t``
of ``ts`` and every seed of ``seeds``:

* **Q1** (``test is None``): repeated cross-validation inside one population.
* **Q2** (``test`` given): train on whole populations, test on another one.

The protocol, stated once:

* **Input.** The evaluator sees arrays only (:class:`Networks`: one population's feature
  matrix for one feature set, labels, configurations, final accuracies and who is alive at
  every ``t``); the feature sets themselves are :mod:`paperlib.features`, which
  :mod:`paperlib.evaluate.experiments` turns into :class:`Networks`.
* **Information horizon.** At ``t`` only the networks alive at ``t`` (``Networks.alive[:, t]``,
  from :meth:`paperlib.features.population.PopulationFeatures.alive`) are used, for training and for
  testing; the others (diverged at or before ``t``, stopped before ``t``) were decided
  before ``t`` and are counted in ``n_decided``.
* **Grouped folds.** Networks of one configuration (every hyperparameter but the seed,
  ``Networks.groups``) stay in one fold, in the outer and in the inner
  (tuning) splits: :class:`sklearn.model_selection.StratifiedGroupKFold` with
  ``shuffle=True`` and the repetition's seed. In Q2 the groups of different populations
  are distinct.
* **Model.** ``Pipeline(signature, StandardScaler, classifier)``; the scaler is fitted on
  every (inner and outer) training fold only.
* **Read-outs**, per repetition (seed), over the pooled out-of-fold predictions (every
  alive network predicted once): ``accuracy`` (the paper's metric),
  ``balanced_accuracy``, ``majority_accuracy`` (always predicting the training folds'
  larger class), ``single_class`` (the pooled predictions hold one class only: a constant
  predictor, never a result), the Spearman correlation between the classifier's score and
  the final accuracy, ``n_decided``, and the per-fold accuracies that the paired test of
  :mod:`paperlib.evaluate.stats` needs.

The classifiers, their grids and the tuning are :mod:`paperlib.evaluate.tuning`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import sklearn
from scipy.stats import spearmanr
from threadpoolctl import threadpool_limits

from .. import kernels
from .tuning import (INNER_FOLDS, FitCounter, _fmt_params, balanced_accuracy, grouped_splits, n_signature_features,
                     signature_step, tune_and_fit)


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


# --------------------------------------------------------------------------- what is evaluated
@dataclass(frozen=True)
class Networks:
    """One population as the evaluator sees it, for one feature set: arrays only.

    ``X`` is ``(n_runs, n_epochs * width)``, ``width`` values per epoch from epoch 0 on (the input
    layout of the signature transformers), NaN where a run has no snapshot; ``temporal`` says whether
    the features of epochs ``1..t`` are read (a temporal signature) or those of epoch ``t`` alone.
    ``y`` is 1 for a "high" network, ``groups`` the configuration of every run (seed twins share
    one), ``final_acc`` the final test accuracy, and ``alive[:, t]`` marks the networks inside the
    information horizon at epoch ``t``.
    """

    arch: str
    dataset: str
    threshold: float
    keys: np.ndarray
    X: np.ndarray
    width: int
    temporal: bool
    y: np.ndarray
    groups: np.ndarray
    final_acc: np.ndarray
    alive: np.ndarray  # (n_runs, n_epochs) booleans

    @property
    def n_runs(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class Task:
    """One feature set x mode x classifier: Q1 (``test is None``, CV in ``train[0]``) or Q2 (train -> test)."""

    experiment: str  # "q1" or "q2"
    name: str  # "q1" or the transfer's name
    train: tuple[Networks, ...]
    test: Networks | None
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
            elif not task_like.test.alive[:, t].any():
                why = f"no network of {task_like.test.arch} is alive at t={t}"
        (bad.append((t, why)) if why else ok.append(t))
    return ok, bad


def _training_data(task: Task, t: int):
    ys, gs, fins, masks, offset = [], [], [], [], 0
    for f in task.train:
        m = f.alive[:, t]
        ys.append(f.y[m])
        gs.append(f.groups[m] + offset)
        fins.append(f.final_acc[m])
        masks.append(m)
        offset += int(f.groups.max()) + 1 if len(f.groups) else 0
    return (np.concatenate(ys).astype(int), np.concatenate(gs), np.concatenate(fins), masks,
            sum(int((~m).sum()) for m in masks))


def _transform(task: Task, f: Networks, mask: np.ndarray, t: int) -> np.ndarray:
    X = f.X[mask]
    step = signature_step(f.temporal, t, task.mode, f.width, task.alpha, task.include_epoch0)
    Z = step.fit_transform(X) if len(X) else np.zeros((0, n_signature_features(
        f.temporal, t, f.width, task.include_epoch0)))
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
                m_te = task.test.alive[:, t]
                Z_te = _transform(task, task.test, m_te, t)
                y_te = task.test.y[m_te]
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
