"""The simulated search: hand-computed example, Optuna's own pruners as reference, cross-fitting."""

from __future__ import annotations

import numpy as np
import pytest

from paperlib.stopping.predictor import RunPredictor
from paperlib.stopping.search import (SearchData, cross_fit_proba, halving_decisions, median_decisions, search_outcome,
                                      simulate, summarise, threshold_decisions)

from conftest import write_result


def _hand_data() -> SearchData:
    # epochs 0..3; every run trains 3 epochs; threshold 50: runs 0 and 2 are "high"
    curves = np.array([[10, 20, 40, 60],
                       [10, 15, 18, 20],
                       [10, 50, 70, 80],
                       [10, 12, 11, 10]], dtype=float)
    return SearchData(curves=curves, alive=np.ones((4, 4), bool), final_acc=curves[:, -1].copy(),
                      labels=np.array([1, 0, 1, 0]), epochs_trained=np.array([3, 3, 3, 3]),
                      groups=np.arange(4))


def test_median_pruner_hand_computed():
    d = _hand_data()
    # order 0,1,2,3, n_startup 1: run 0 completes; run 1 at t=1: best 15 < median{20} -> stop;
    # run 2: 50 >= 20, 70 >= 40, 80 >= 60 -> completes; run 3 at t=1: 12 < median{20, 50} = 35 -> stop
    stop = median_decisions(d.curves, d.alive, [0, 1, 2, 3], [1, 2, 3], n_startup=1)
    assert stop.tolist() == [0, 1, 0, 1]
    out = search_outcome(stop, np.array([0, 1, 2, 3]), d)
    assert out["epochs"] == 3 + 1 + 3 + 1 and out["epochs_none"] == 12
    assert out["compute"] == pytest.approx(8 / 12)
    assert out["regret"] == 0 and out["high_stopped"] == 0 and out["low_stopped"] == 1


def test_halving_hand_computed():
    d = _hand_data()
    # eta 2, rungs at epochs 1, 2, 4; order 2,0,1,3.
    # run 2: rung 0 [50] promoted, rung 1 [70] promoted.  run 0: rung 0 [50, 20]: top 1 is 50 -> stop at 1.
    # run 1: [50, 20, 15] -> stop at 1.  run 3: [50, 20, 15, 12]: top 2 -> needs >= 20 -> stop at 1
    stop = halving_decisions(d.curves, d.alive, [2, 0, 1, 3], [1, 2, 3], min_resource=1, reduction_factor=2)
    assert stop.tolist() == [1, 1, 0, 1]
    out = search_outcome(stop, np.array([2, 0, 1, 3]), d)
    assert out["compute"] == pytest.approx(6 / 12)
    assert out["regret"] == 0 and out["high_stopped"] == 0.5 and out["best_stopped"] == 0


def test_threshold_pruner_hand_computed():
    d = _hand_data()
    proba = np.full((4, 4), np.nan)
    proba[:, 1] = [0.6, 0.4, 0.9, 0.1]
    proba[:, 2] = [0.3, 0.9, 0.8, 0.9]
    proba[:, 3] = [0.9, 0.9, 0.2, 0.9]
    stop = threshold_decisions(proba, d.alive, [1, 2], stop_below=0.5)  # t=3 is outside the window
    assert stop.tolist() == [2, 1, 0, 1]
    out = search_outcome(stop, np.arange(4), d)
    assert out["epochs"] == 2 + 1 + 3 + 1
    assert out["best"] == 80 and out["regret"] == 0 and out["high_stopped"] == 0.5
    # the same search without run 2: the best kept run is none -> best 0, regret 60
    out = search_outcome(stop, np.array([0, 1, 3]), d)
    assert out["best"] == 0 and out["regret"] == 60 and out["best_stopped"] == 1
    # a run that is not alive is never stopped by the pruner
    alive = d.alive.copy()
    alive[1, 1:] = False
    assert threshold_decisions(proba, alive, [1, 2], 0.5).tolist() == [2, 0, 0, 1]


def test_simulate_and_summary_are_consistent():
    d = _hand_data()
    proba = np.zeros((4, 4))  # stops everything at the first epoch
    runs = simulate(d, [1, 2, 3], {"graph": [proba]}, n_repeats=3, pruners=("none", "graph"), n_startup=1)
    s = summarise(runs).set_index("pruner")
    assert s.loc["none", "compute_mean"] == 1 and s.loc["none", "regret_mean"] == 0
    assert s.loc["graph", "compute_mean"] == pytest.approx(4 / 12)
    assert s.loc["graph", "regret_mean"] == 80 and s.loc["graph", "high_stopped_mean"] == 1


def _replay_optuna(curves: np.ndarray, order: list[int], pruner) -> np.ndarray:
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stopped = np.zeros(len(curves), dtype=int)

    def objective(trial):
        i = order[trial.number]
        for step in range(1, curves.shape[1]):
            trial.report(float(curves[i, step]), step)
            if trial.should_prune():
                stopped[i] = step
                raise optuna.TrialPruned()
        return float(curves[i, -1])

    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(0))
    study.optimize(objective, n_trials=len(order))
    return stopped


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_median_matches_optuna(seed):
    optuna = pytest.importorskip("optuna")
    rng = np.random.default_rng(seed)
    curves = np.cumsum(rng.uniform(0, 10, size=(14, 7)), axis=1)
    order = rng.permutation(14).tolist()
    ref = _replay_optuna(curves, order, optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0))
    ours = median_decisions(curves, np.ones_like(curves, bool), order, range(1, 7), n_startup=3)
    assert ours.tolist() == ref.tolist()
    assert (ours > 0).any()


@pytest.mark.parametrize("seed,eta", [(0, 2), (1, 3), (2, 2)])
def test_halving_matches_optuna(seed, eta):
    optuna = pytest.importorskip("optuna")
    rng = np.random.default_rng(seed)
    curves = rng.uniform(0, 100, size=(16, 10))
    order = rng.permutation(16).tolist()
    ref = _replay_optuna(curves, order, optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=eta, min_early_stopping_rate=0))
    ours = halving_decisions(curves, np.ones_like(curves, bool), order, range(1, 10), 1, eta)
    assert ours.tolist() == ref.tolist()
    assert (ours > 0).any()


class _Spy(RunPredictor):
    """Records the network ids (feature column 0, epoch 1) it is fitted on and asked about."""

    log: list = []

    def fit(self, X, y, alive=None):
        _Spy.log.append(("fit", set(np.asarray(X)[:, 1, 0].astype(int).tolist())))
        return super().fit(X, y, alive)

    def proba_high_at(self, X, t):
        _Spy.log.append(("score", set(np.asarray(X)[:, 1, 0].astype(int).tolist())))
        return super().proba_high_at(X, t)


def test_cross_fitting_never_scores_a_network_or_its_twin_with_a_predictor_fitted_on_it():
    rng = np.random.default_rng(0)
    n_conf, seeds, T = 15, 2, 3
    n = n_conf * seeds
    groups = np.repeat(np.arange(n_conf), seeds)
    y = (rng.uniform(size=n_conf) < 0.4).astype(int)[groups]  # label decided by the configuration
    A = rng.normal(size=(n, T + 1, 2))
    A[:, :, 0] = np.arange(n)[:, None]  # column 0 carries the network id
    A[:, :, 1] += 3 * y[:, None]
    alive = np.ones((n, T + 1), bool)
    alive[3, 2:] = False  # stopped after epoch 1: never scored at t >= 2
    _Spy.log = []
    proba, fold = cross_fit_proba(A, y, alive, groups, n_folds=4, seed=1,
                                  make_predictor=lambda: _Spy(("x",), (2,), t_min=1, t_max=T), ts=[1, 2, 3])
    assert (fold >= 0).all() and len(set(fold)) == 4
    fits = [ids for kind, ids in _Spy.log if kind == "fit"]
    scores = [ids for kind, ids in _Spy.log if kind == "score"]
    assert len(fits) == 4 and len(scores) == 4 * 3
    for k, trained in enumerate(fits):
        scored = scores[3 * k]
        assert not trained & scored
        assert not set(groups[list(trained)]) & set(groups[list(scored)])  # no seed twin either
        assert trained | scored == set(range(n))
    assert np.isnan(proba[3, 2:]).all() and np.isfinite(proba[3, 1])
    assert np.isnan(proba[:, 0]).all() and np.isfinite(np.delete(proba[:, 1:], 3, axis=0)).all()


def test_population_study_table_and_figure(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from paperlib import paths
    from paperlib.stopping import pruning

    rng = np.random.default_rng(0)
    n, T = 24, 4
    y = (rng.uniform(size=n // 2) < 0.5).astype(int).repeat(2)
    curve = np.cumsum(rng.uniform(0, 5, size=(n, T + 1, 1)), axis=1) + 30 * y[:, None, None]
    arrays = {"deg": rng.normal(size=(n, T + 1, 5)) + y[:, None, None], "evec": rng.normal(size=(n, T + 1, 5)),
              "learning-curve": curve}
    feats = SimpleNamespace(keys=np.arange(n), arrays=arrays, labels=y, threshold=50.0, arch="Net", dataset="digits",
                            epochs_trained=np.full(n, 8), final_acc=curve[:, -1, 0] + 10, groups=np.arange(n) // 2,
                            alive=lambda t: np.ones(n, bool))
    summary, skipped = pruning.run_population(feats, SimpleNamespace(t_max=3, arch="Net"), n_repeats=4,
                                              n_fold_seeds=2, n_folds=3)
    assert not skipped and summary["pruner"].tolist() == list(pruning.PRUNERS)
    assert list(summary.columns) == pruning.SUMMARY_COLUMNS
    s = summary.set_index("pruner")
    assert s.loc["none", "compute_mean"] == 1 and s.loc["none", "regret_mean"] == 0
    assert (s["t_max"] == 3).all() and (s["compute_mean"] <= 1).all()
    # a pruner stops only in the window: at least t_min epochs of every run are paid
    assert (s["epochs_mean"] >= n * 1).all()
    with pytest.raises(ValueError, match="stop_below"):
        pruning.check_settings(1, 0, 5, 1, 1.5, 1, 1.0, 5, 1, 3, 0)
    monkeypatch.setattr(paths, "results_dir", lambda p: tmp_path / "results" / p)
    monkeypatch.setattr(paths, "figures_dir", lambda p: tmp_path / "figures" / p)
    (tmp_path / "results" / "x").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="07_early_stopping"):
        pruning.read_early_stopping("x")
    write_result(tmp_path / "results" / "x" / "early_stopping.csv", summary)
    md = pruning.early_stopping_markdown(pruning.read_early_stopping("x"))
    assert all(label in md for label in pruning.PRUNER_LABELS.values())
    from paperlib.report import figures

    files = figures.write_fig_early_stopping("x")
    assert all(f.exists() and f.stat().st_size > 0 for f in files)
    assert "Net" in pruning.reading(summary)
