"""The evaluator: grouped folds, the fast tuning against GridSearchCV, read-outs, the horizon, the paired test."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from paperlib.evaluate import evaluation, experiments, stats, tuning
from paperlib.features.population import PopulationFeatures
from paperlib.features.signatures import TemporalSignature


def twin_population(n_configs: int = 16, twins: int = 4, dim: int = 4, seed: int = 0):
    """Labels depend only on the configuration; seed twins sit close to their configuration's centre."""
    rng = np.random.default_rng(seed)
    label_of = rng.permutation(np.arange(n_configs) % 2)
    centre = rng.normal(size=(n_configs, dim)) * 3.0
    groups = np.repeat(np.arange(n_configs), twins)
    Z = centre[groups] + rng.normal(size=(len(groups), dim)) * 0.1
    return Z, label_of[groups], groups


def test_grouped_folds_keep_twins_together_and_drop_to_chance():
    Z, y, groups = twin_population()
    final = 50.0 + y
    grouped, ungrouped = [], []
    for seed in range(3):
        for tr, te in tuning.grouped_splits(y, groups, 4, seed):
            assert not set(groups[tr]) & set(groups[te])  # a configuration never straddles train and test
        grouped.append(evaluation.nested_cv(Z, y, groups, final, "svm", seed, 4)["accuracy"])
        # every network its own group: an ordinary stratified split, twins on both sides
        ungrouped.append(evaluation.nested_cv(Z, y, np.arange(len(y)), final, "svm", seed, 4)["accuracy"])
    assert np.mean(ungrouped) > 0.9  # a twin in training gives the label away
    assert abs(np.mean(grouped) - 0.5) < 0.2  # the features carry nothing beyond the configuration


def _layout(n_configs: int = 20, twins: int = 2, epochs: int = 4, width: int = 3, seed: int = 0, signal=0.8):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_configs), twins)
    y = (rng.random(n_configs) < 0.45).astype(int)[groups]
    X = rng.normal(size=(len(y), epochs, width)) + signal * y[:, None, None] * np.linspace(0, 1, epochs)[None, :, None]
    return X.reshape(len(y), -1), y, groups


@pytest.mark.parametrize("classifier", ["svm", "mlp"])
def test_fast_tuning_equals_gridsearchcv_with_the_same_grouped_splits(classifier):
    X, y, groups = _layout()
    train, test = np.arange(30), np.arange(30, 40)
    search = tuning.make_search(True, t=3, mode="wavg", classifier=classifier, width=3, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GridSearchCV's own MLP convergence warnings, if any
        search.fit(X[train], y[train], groups=groups[train])
    Z = TemporalSignature(t=3, mode="wavg", width=3).fit_transform(X)
    model, best = tuning.tune_and_fit(Z[train], y[train], groups[train], classifier, seed=7)
    assert {f"clf__{k}": v for k, v in best.items()} == search.best_params_
    np.testing.assert_array_equal(model.predict(Z[test]), search.predict(X[test]))
    ref = search.decision_function(X[test]) if classifier == "svm" else search.predict_proba(X[test])[:, 1]
    np.testing.assert_allclose(model.score(Z[test]), ref, rtol=1e-6, atol=1e-9)
    # the inner scores themselves, grid point by grid point
    points, scores = tuning._inner_scores(Z[train], y[train], groups[train], classifier, 7, 3,
                                              tuning.FitCounter())
    np.testing.assert_allclose(scores.mean(axis=1), search.cv_results_["mean_test_score"], atol=1e-12)


def test_grids_are_log_grids_with_class_weights():
    svm = tuning.CLASSIFIERS["svm"].grid_points(n_features=10)
    assert {p["class_weight"] for p in svm} == {None, "balanced"}
    Cs = sorted({p["C"] for p in svm})
    gammas = sorted({p["gamma"] for p in svm})
    assert len(Cs) >= 3 and np.allclose(np.diff(np.log10(Cs)), 1.0)
    assert len(gammas) >= 3 and np.allclose(np.diff(np.log10(gammas)), 1.0)
    assert np.isclose(np.median(gammas), 1 / 10)  # scikit-learn's "scale" on standardised features


def test_balanced_accuracy_matches_sklearn():
    rng = np.random.default_rng(2)
    for _ in range(20):
        y, p = rng.integers(0, 2, 15), rng.integers(0, 2, 15)
        assert tuning.balanced_accuracy(y, p) == pytest.approx(balanced_accuracy_score(y, p))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on a single-class y
        y1 = np.zeros(6, int)
        assert tuning.balanced_accuracy(y1, np.array([0, 0, 1, 0, 1, 0])) == pytest.approx(
            balanced_accuracy_score(y1, np.array([0, 0, 1, 0, 1, 0])))


def test_single_class_flag_fires_on_a_constant_predictor():
    y = np.array([0, 0, 0, 1, 1, 0, 0, 1])
    const = evaluation.readouts(y, np.zeros(8, int), np.zeros(8), np.zeros(8, int), np.arange(8.0))
    assert const["single_class"] and const["accuracy"] == pytest.approx(5 / 8)
    assert const["balanced_accuracy"] == pytest.approx(0.5) and np.isnan(const["spearman"])
    real = evaluation.readouts(y, y, y.astype(float), np.zeros(8, int), np.arange(8.0))
    assert not real["single_class"] and real["accuracy"] == 1.0
    # a training fold with one class gives a constant model, and the flag says so
    model, best = tuning.tune_and_fit(np.random.default_rng(0).normal(size=(6, 2)), np.ones(6, int),
                                          np.arange(6), "svm", 0)
    assert best == {"constant": 1}
    assert evaluation.readouts(y, model.predict(np.zeros((8, 2))), model.score(np.zeros((8, 2))),
                               np.zeros(8, int), np.arange(8.0))["single_class"]


def test_paired_test_matches_a_hand_computed_example():
    # differences of 2 repetitions x 3 folds, n_train = 20, n_test = 10
    d = np.array([[0.10, 0.00, 0.05], [0.20, 0.05, 0.10]])
    mean = 0.5 / 6  # 0.083333
    var = sum((x - mean) ** 2 for x in d.ravel()) / 5  # sample variance: 0.023333 / 5 = 0.0046667
    t = mean / np.sqrt((1 / 6 + 10 / 20) * var)  # 0.083333 / sqrt(0.0031111) = 1.4940
    r = stats.corrected_resampled_ttest(d, n_train=20, n_test=10)
    assert r.mean_difference == pytest.approx(mean) and r.df == 5 and r.n == 6
    assert r.t == pytest.approx(t) and r.t == pytest.approx(1.49404, abs=1e-4)
    # two-sided p of t=1.4940 with 5 degrees of freedom (t tables: between 0.2 and 0.1; scipy: 0.1954)
    assert r.p_value == pytest.approx(0.1954, abs=1e-3) and not r.significant
    # the naive paired t-test (no correction) would be far more confident
    assert mean / np.sqrt(var / 6) > 2.5
    same = stats.corrected_resampled_ttest(np.zeros(6), 20, 10)
    assert same.t == 0.0 and same.p_value == 1.0
    acc, n_tr, n_te = stats.parse_folds("0.5;0.75", "30/10;31/9")
    np.testing.assert_array_equal(acc, [0.5, 0.75]) and np.testing.assert_array_equal(n_te, [10, 9])


def _population_with_stops(n_configs: int = 12, twins: int = 2, t_max: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = n_configs * twins
    groups = np.repeat(np.arange(n_configs), twins)
    final = rng.uniform(10, 90, n)
    trained = np.full(n, 10)
    div = np.full(n, np.inf)
    trained[[0, 5]] = [1, 2]  # stopped after epochs 1 and 2
    div[[3, 8, 13]] = [1, 2, 3]  # diverged at epochs 1, 2, 3
    trained[[3, 8, 13]] = [1, 2, 3]
    deg = rng.normal(size=(n, t_max + 1, 5)) + ((final - 50) / 40)[:, None, None]
    for i in range(n):
        last = int(min(trained[i], div[i] - 1))
        deg[i, last + 1:] = np.nan
    return PopulationFeatures("P", "digits", np.array([f"r{i}" for i in range(n)]), final, np.isfinite(div),
                              trained, 50.0, t_max, {"deg": deg}, {}, groups, div)


def test_a_stopped_or_diverged_network_never_enters_the_evaluation_at_t(monkeypatch):
    f = _population_with_stops()
    seen = {}
    real = evaluation.nested_cv

    def spy(Z, y, groups, final_acc, classifier, seed, n_folds, counter=None):
        seen.setdefault(Z.shape[1] // 5, []).append((Z.copy(), final_acc.copy()))
        return real(Z, y, groups, final_acc, classifier, seed, n_folds, counter)

    monkeypatch.setattr(evaluation, "nested_cv", spy)
    task = evaluation.Task("q1", "q1", (experiments.networks(f, "deg"),), None, "deg", "plain", "svm", (1, 2, 3, 4), (0,), 3)
    rows = evaluation.run_task(task)
    assert [r["t"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        t = r["t"]
        alive = (f.epochs_trained >= t) & (f.diverged_epoch > t)
        assert r["n_networks"] == alive.sum() and r["n_decided"] == (~alive).sum()
        Z, fin = seen[t][0]
        np.testing.assert_array_equal(fin, f.final_acc[alive])  # exactly the alive networks, in order
        assert np.isfinite(Z).all()
    assert rows[0]["n_decided"] == 1 and rows[-1]["n_decided"] == 5
    # a decided network's features are never read: poisoning them changes nothing
    poisoned = _population_with_stops()
    for i in np.flatnonzero(~poisoned.alive(2)):
        poisoned.arrays["deg"][i] = 1e6
    again = evaluation.run_task(evaluation.Task("q1", "q1", (experiments.networks(poisoned, "deg"),), None, "deg", "plain",
                                                 "svm", (2,), (0,), 3))
    assert again[0]["accuracy"] == rows[1]["accuracy"] and again[0]["params"] == rows[1]["params"]


def test_mlp_fits_are_counted_and_non_converged_ones_reported(monkeypatch):
    monkeypatch.setattr(tuning, "MLP_MAX_ITER", 2)
    X, y, groups = _layout(signal=2.0)
    Z = TemporalSignature(t=3, width=3).fit_transform(X)
    counter = tuning.FitCounter()
    with warnings.catch_warnings():
        warnings.simplefilter("error", tuning.ConvergenceWarning)  # none escapes uncounted
        tuning.tune_and_fit(Z, y, groups, "mlp", 0, counter=counter)
    n_points = len(tuning.CLASSIFIERS["mlp"].grid_points())
    assert counter.fits == (3 * n_points if n_points > 1 else 0) + 1 and counter.not_converged == counter.fits
    ok = tuning.FitCounter()
    monkeypatch.setattr(tuning, "MLP_MAX_ITER", 2000)
    tuning.tune_and_fit(Z, y, groups, "mlp", 0, counter=ok)
    assert ok.fits == counter.fits and ok.not_converged == 0
