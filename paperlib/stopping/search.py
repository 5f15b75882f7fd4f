"""A simulated hyperparameter search with early stopping, on populations already trained.

The paper motivates performance prediction by early stopping but never stops anything. Here
every trained population is replayed as a hyperparameter search: the networks are tried in a
random order, and after every epoch ``t`` of the decision window (``t_min..t_max``, the epochs
the predictors may read) a *pruner* may stop the running network. A stopped network costs the
epochs it trained; a network that is not stopped trains to its own end (its recorded
``epochs_trained``: the training step's own early stopping or its maximum) and its final test
accuracy is known to the search. Pruners (:data:`PRUNERS`):

``none``      never stops: the reference for compute and for the best accuracy found.
``graph``     :class:`~paperlib.stopping.predictor.RunPredictor` on the graph signatures ``deg`` + ``evec``:
              stop when ``P(high) < stop_below``.
``curve``     the same on the learning curve (test accuracy per epoch).
``both``      the same on graph signatures and learning curve together.
``median``    Optuna's ``MedianPruner`` logic on the learning curve: stop when the run's best
              accuracy so far is below the median, at the same epoch, of the runs that finished
              before it (none before ``n_startup`` runs have finished).
``halving``   Optuna's ``SuccessiveHalvingPruner`` logic (asynchronous successive halving): at
              rung epochs ``r, r*eta, r*eta**2, ...`` a run continues only if its accuracy is in
              the top ``1/eta`` of the accuracies recorded at that rung by the runs before it
              (itself included).

:func:`median_decisions` and :func:`halving_decisions` follow Optuna's code step by step
(``tests/test_pruning.py`` checks them against Optuna itself); both pruners and the predictors
decide only inside the decision window, so they differ only in what they read.

Choices stated here once:

* **Cross-fitting.** A predictor never scores a network it was fitted on, nor a seed twin
  of it: the networks are split into ``n_folds`` folds by ``StratifiedGroupKFold`` with the
  configuration (every hyperparameter but the seed) as the group, and each fold is scored by a
  predictor fitted on the other folds (:func:`cross_fit_proba`). The split is redrawn for every
  fold seed; repetition ``r`` of the search uses fold seed ``r mod n_fold_seeds``.
* **Information horizon.** At epoch ``t`` the predictor of a fold is fitted on the networks of
  the other folds that were alive at ``t`` (training, finite weights) and scores only networks
  alive at ``t``. The labels it learns from are those of finished training runs, which a search
  would have from an earlier population of the same architecture.
* **What a search is.** ``n_trials`` networks (default all) drawn in a random order; the
  order matters for ``median`` and ``halving`` (they compare with earlier runs) and for which
  networks a search contains.
* **Settings.** :data:`N_FOLDS` folds and :data:`N_FOLD_SEEDS` splits for the cross-fitting,
  the predictors' penalty :data:`C_DEFAULT`, Optuna's default ``n_startup_trials`` (5) for
  ``median``, and ``min_resource=1``, ``reduction_factor=3`` for ``halving`` (rungs at epochs 1,
  3, 9: the decision window of the default profile). None of them was tuned on the results.
* **Read-outs** per search: epochs trained (compute; ``compute`` is the share of the epochs
  of ``none``), the best final accuracy among the runs not stopped (``regret``: the best of
  ``none`` minus it, in accuracy points; a search that stops every run counts its best as 0),
  the share of "high" runs stopped (wrongly) and of "low" runs stopped (rightly), and whether
  the best network of the search was stopped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from .predictor import PREDICTOR_KINDS, RunPredictor, alive_matrix, population_array


#: defaults of the study (the notebook's parameters are the number of orders, trials, stop_below, seed)
N_FOLDS = 5  # cross-fitting folds, grouped by configuration
N_FOLD_SEEDS = 5  # cross-fitting splits
C_DEFAULT = 1.0  # inverse L2 penalty of the predictors
N_STARTUP = 5  # median: Optuna's default n_startup_trials
MIN_RESOURCE = 1  # successive halving: first rung after epoch 1
REDUCTION_FACTOR = 3  # successive halving: keep the top third at every rung (rungs at epochs 1, 3, 9)
PRUNERS: tuple[str, ...] = ("none", "graph", "curve", "both", "median", "halving")
PRUNER_LABELS = {"none": "no pruning", "graph": "graph signatures", "curve": "learning curve",
                 "both": "graph + curve", "median": "median (Optuna)", "halving": "successive halving (Optuna)"}


# --------------------------------------------------------------------------- the data of a search
@dataclass
class SearchData:
    """What the simulation needs of one population (arrays over networks ``i`` and epochs ``0..T``)."""

    curves: np.ndarray  # (n, T+1) test accuracy (%) after each epoch
    alive: np.ndarray  # (n, T+1) bool: training with finite weights at that epoch
    final_acc: np.ndarray  # (n,) final test accuracy (%); NaN for diverged runs
    labels: np.ndarray  # (n,) 1 = high
    epochs_trained: np.ndarray  # (n,) epochs of the run when nothing stops it
    groups: np.ndarray  # (n,) configuration id

    def __post_init__(self) -> None:
        n = len(self.labels)
        for name in ("curves", "alive"):
            a = getattr(self, name)
            if a.ndim != 2 or a.shape[0] != n:
                raise ValueError(f"paperlib.stopping.pruning: {name} must be (n_networks={n}, n_epochs), got {a.shape}")
        for name in ("final_acc", "epochs_trained", "groups"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"paperlib.stopping.pruning: {name} must have {n} entries")


def population_groups(feats: Any) -> np.ndarray:
    """Configuration id of every network: ``feats.groups`` (every hyperparameter but the seed)."""
    if getattr(feats, "groups", None) is not None:
        return np.asarray(feats.groups)
    raise AttributeError("paperlib.stopping.pruning: the population features have no 'groups' (configuration ids); "
                         "re-run the features notebook (03_features)")


def groups_from_runs(profile: str, keys: Sequence[str]) -> np.ndarray:
    """Configuration ids of the runs ``keys`` from ``runs.csv``: equal when every hyperparameter
    column but ``seed`` (and the run's key and outcomes) is equal."""
    from ..files import read_runs

    runs = read_runs(profile).set_index("key")
    cols = [c for c in ("arch", "dataset", "model", "lr", "dropout", "optimizer") if c in runs.columns]
    if not cols:
        raise ValueError(f"paperlib.stopping.pruning: runs.csv of {profile!r} has no hyperparameter columns to group by")
    conf = runs.loc[list(keys), cols].astype(str).agg("|".join, axis=1)
    return pd.factorize(conf.to_numpy())[0]


def search_data(feats: Any) -> SearchData:
    """:class:`SearchData` of a :class:`paperlib.features.population.PopulationFeatures` (needs ``learning-curve``)."""
    curve = population_array(feats, ("learning-curve",))[:, :, 0]
    return SearchData(curves=curve, alive=alive_matrix(feats), final_acc=np.asarray(feats.final_acc, float),
                      labels=np.asarray(feats.labels, int), epochs_trained=np.asarray(feats.epochs_trained, int),
                      groups=population_groups(feats))


# --------------------------------------------------------------------------- cross-fitting
def cross_fit_proba(A: np.ndarray, y: np.ndarray, alive: np.ndarray, groups: np.ndarray, n_folds: int, seed: int,
                    make_predictor: Callable[[], RunPredictor], ts: Sequence[int]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold ``P(high)`` of every network at every epoch of ``ts``.

    Returns ``(proba, fold)``: ``proba`` is ``(n, n_epochs)``, NaN where no decision is taken
    (epoch outside ``ts``, network not alive); ``fold[i]`` is the fold whose predictor scored
    network ``i``. The predictor of a fold is fitted on the networks of the other folds only, and
    a configuration (``groups``) never spans two folds. With fewer networks of a class than folds,
    some training folds hold one class only (scikit-learn's warning about it is silenced); their
    predictor then gives every network that class's share (:class:`RunPredictor`), and
    :func:`reading` says so.
    """
    y = np.asarray(y, int)
    groups = np.asarray(groups)
    n = len(y)
    n_groups = len(np.unique(groups))
    k = int(min(n_folds, n_groups))
    if k < 2:
        raise ValueError(f"paperlib.stopping.pruning: cross-fitting needs at least 2 configurations, got {n_groups}")
    proba = np.full((n, A.shape[1]), np.nan)
    fold = np.full(n, -1)
    splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # fewer networks of a class than folds: stated in the docstring
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(splitter.split(np.zeros(n), y, groups))
    for f, (tr, te) in enumerate(splits):
        if set(groups[tr]) & set(groups[te]):  # pragma: no cover - StratifiedGroupKFold guarantees it
            raise AssertionError("a configuration spans two folds")
        pred = make_predictor().fit(A[tr], y[tr], alive=alive[tr])
        fold[te] = f
        for t in ts:
            if t in set(pred.ts_.tolist()):
                p = pred.proba_high_at(A[te], t)
                proba[te, t] = np.where(alive[te, t], p, np.nan)
    return proba, fold


# --------------------------------------------------------------------------- pruners
def threshold_decisions(proba: np.ndarray, alive: np.ndarray, ts: Sequence[int], stop_below: float) -> np.ndarray:
    """Epoch at which each network is stopped (0: never): the first ``t`` in ``ts`` where it is
    alive and ``proba[i, t] < stop_below``."""
    out = np.zeros(proba.shape[0], dtype=int)
    for t in sorted(ts):
        hit = (out == 0) & alive[:, t] & (np.nan_to_num(proba[:, t], nan=np.inf) < stop_below)
        out[hit] = t
    return out


def median_decisions(curves: np.ndarray, alive: np.ndarray, order: Sequence[int], ts: Sequence[int],
                     n_startup: int = 5) -> np.ndarray:
    """Optuna's ``MedianPruner(n_startup_trials=n_startup, n_warmup_steps=min(ts), interval_steps=1)``
    on a sequential search in ``order``, checked at the epochs ``ts`` only; maximising.

    A run is stopped at ``t`` when at least ``n_startup`` runs have completed (not stopped) before
    it, some of them have a value at ``t``, and its best accuracy over epochs ``1..t`` is below the
    median of theirs at ``t`` (``numpy.nanpercentile`` 50, as Optuna).
    """
    ts = sorted(ts)
    out = np.zeros(curves.shape[0], dtype=int)
    completed: list[int] = []
    for i in order:
        if len(completed) >= n_startup:
            done = np.array(completed)
            for t in ts:
                if not alive[i, t]:
                    break
                best = np.nanmax(curves[i, 1:t + 1])
                if np.isnan(best):
                    out[i] = t
                    break
                vals = curves[done, t][alive[done, t]]
                if len(vals) == 0:
                    continue
                if best < float(np.nanpercentile(vals, 50)):
                    out[i] = t
                    break
        if out[i] == 0:
            completed.append(int(i))
    return out


def halving_decisions(curves: np.ndarray, alive: np.ndarray, order: Sequence[int], ts: Sequence[int],
                      min_resource: int = 1, reduction_factor: int = 3) -> np.ndarray:
    """Optuna's ``SuccessiveHalvingPruner(min_resource, reduction_factor, min_early_stopping_rate=0,
    bootstrap_count=0)`` on a sequential search in ``order``, checked at the epochs ``ts`` only.

    At a rung epoch ``min_resource * reduction_factor**rung`` a run records its accuracy for the
    rung; it is promoted when that accuracy is at least the ``k``-th largest of the accuracies
    recorded at the rung so far (its own included), ``k = max(len // reduction_factor, 1)``; else it
    is stopped. Runs record rungs whether they are stopped later or not (as Optuna).
    """
    if min_resource < 1 or reduction_factor < 2:
        raise ValueError(f"paperlib.stopping.pruning: need min_resource >= 1 and reduction_factor >= 2, got "
                         f"{min_resource}, {reduction_factor}")
    ts = sorted(ts)
    out = np.zeros(curves.shape[0], dtype=int)
    recorded: dict[int, list[float]] = {}
    for i in order:
        rung = 0
        for t in ts:
            if not alive[i, t]:
                break
            value = float(curves[i, t])
            stop = False
            while t >= min_resource * reduction_factor ** rung:
                if np.isnan(value):
                    stop = True
                    break
                competing = recorded.setdefault(rung, [])
                competing.append(value)
                idx = max(len(competing) // reduction_factor - 1, 0)
                if value < sorted(competing)[-(idx + 1)]:
                    stop = True
                    break
                rung += 1
            if stop:
                out[i] = t
                break
    return out


# --------------------------------------------------------------------------- one search
def search_outcome(stopped_at: np.ndarray, trials: np.ndarray, data: SearchData) -> dict[str, float]:
    """Read-outs of one search over the networks ``trials`` with stopping epochs ``stopped_at`` (0: never)."""
    trials = np.asarray(trials, int)
    s = np.asarray(stopped_at, int)[trials]
    stopped = s > 0
    natural = data.epochs_trained[trials]
    cost = np.where(stopped, np.minimum(s, natural), natural)
    acc = np.nan_to_num(data.final_acc[trials], nan=0.0)
    best_none = float(acc.max()) if len(acc) else float("nan")
    kept = acc[~stopped]
    best = float(kept.max()) if len(kept) else 0.0
    y = data.labels[trials]
    best_idx = int(np.argmax(acc))
    return {
        "epochs": float(cost.sum()), "epochs_none": float(natural.sum()),
        "compute": float(cost.sum() / max(natural.sum(), 1)),
        "best": best, "best_none": best_none, "regret": best_none - best,
        "high_stopped": float(stopped[y == 1].mean()) if (y == 1).any() else float("nan"),
        "low_stopped": float(stopped[y == 0].mean()) if (y == 0).any() else float("nan"),
        "best_stopped": float(stopped[best_idx]),
    }


def decisions(pruner: str, data: SearchData, order: np.ndarray, ts: Sequence[int], proba: np.ndarray | None = None,
              stop_below: float = 0.5, n_startup: int = 5, min_resource: int = 1,
              reduction_factor: int = 3) -> np.ndarray:
    """Stopping epoch of every network (0: never) under ``pruner`` for the search ``order``."""
    if pruner == "none":
        return np.zeros(len(data.labels), dtype=int)
    if pruner in PREDICTOR_KINDS:
        if proba is None:
            raise ValueError(f"paperlib.stopping.pruning: pruner {pruner!r} needs cross-fitted probabilities")
        return threshold_decisions(proba, data.alive, ts, stop_below)
    if pruner == "median":
        return median_decisions(data.curves, data.alive, order, ts, n_startup)
    if pruner == "halving":
        return halving_decisions(data.curves, data.alive, order, ts, min_resource, reduction_factor)
    raise KeyError(f"paperlib.stopping.pruning: unknown pruner {pruner!r}; choose one of {PRUNERS}")


def simulate(data: SearchData, ts: Sequence[int], probas: dict[str, list[np.ndarray]], n_repeats: int,
             n_trials: int = 0, seed: int = 0, pruners: Sequence[str] = PRUNERS, stop_below: float = 0.5,
             n_startup: int = 5, min_resource: int = 1, reduction_factor: int = 3) -> pd.DataFrame:
    """Repeat the search ``n_repeats`` times in random orders; one row per (repeat, pruner).

    ``probas[kind]`` is a list of cross-fitted probability arrays, one per fold seed; repetition
    ``r`` uses entry ``r mod len``. ``n_trials`` networks per search (0: all of them).
    """
    n = len(data.labels)
    m = n if n_trials <= 0 else min(int(n_trials), n)
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_repeats):
        order = rng.permutation(n)[:m]
        for pruner in pruners:
            proba = probas[pruner][r % len(probas[pruner])] if pruner in PREDICTOR_KINDS else None
            stop = decisions(pruner, data, order, ts, proba, stop_below, n_startup, min_resource, reduction_factor)
            rows.append({"repeat": r, "pruner": pruner, **search_outcome(stop, order, data)})
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread over repetitions, one row per pruner."""
    g = runs.groupby("pruner", sort=False)
    out = pd.DataFrame({
        "compute_mean": g["compute"].mean(), "compute_std": g["compute"].std(ddof=0),
        "regret_mean": g["regret"].mean(), "regret_std": g["regret"].std(ddof=0),
        "regret_p90": g["regret"].quantile(0.9),
        "no_regret_share": g["regret"].apply(lambda s: float((s <= 1e-9).mean())),
        "high_stopped_mean": g["high_stopped"].mean(), "low_stopped_mean": g["low_stopped"].mean(),
        "best_stopped_share": g["best_stopped"].mean(),
        "epochs_mean": g["epochs"].mean(), "epochs_none_mean": g["epochs_none"].mean(),
        "best_none_mean": g["best_none"].mean(),
    }).reset_index()
    out["saved_pct"] = 100.0 * (1.0 - out["compute_mean"])
    return out


__all__ = ["PRUNERS", "PRUNER_LABELS", "SearchData", "cross_fit_proba", "decisions", "groups_from_runs",
           "halving_decisions", "median_decisions", "population_groups", "search_data", "search_outcome", "simulate",
           "summarise", "threshold_decisions"]
