"""Q1/Q2 protocol: equivalence with GridSearchCV, a leakage guard, and small end-to-end runs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedKFold

from paperlib import experiments, features, paths
from paperlib.signatures import TemporalSignature

from test_features import fake_centralities, make_fake_store, tiny_profile


def _layout(n: int = 45, epochs: int = 4, width: int = 3, seed: int = 0, signal: float = 1.0):
    """Per-epoch matrix whose later epochs carry the label (with ``signal``)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.45).astype(int)
    X = rng.normal(size=(n, epochs, width)) + signal * y[:, None, None] * np.linspace(0, 1, epochs)[None, :, None]
    return X.reshape(n, -1), y


@pytest.mark.parametrize("classifier", ["svm", "mlp"])
def test_tune_and_fit_equals_gridsearchcv(classifier):
    X, y = _layout(signal=0.6)
    train, test = np.arange(33), np.arange(33, 45)
    search = experiments.make_search("deg", t=3, mode="wavg", classifier=classifier, width=3, seed=7)
    search.fit(X[train], y[train])
    Z = TemporalSignature(t=3, mode="wavg", width=3).fit_transform(X)
    model, best = experiments.tune_and_fit(Z[train], y[train], classifier, seed=7)
    assert {f"clf__{k}": v for k, v in best.items()} == search.best_params_
    np.testing.assert_array_equal(model.predict(Z[test]), search.predict(X[test]))
    score = experiments._score(model, Z[test])
    ref = search.decision_function(X[test]) if classifier == "svm" else search.predict_proba(X[test])[:, 1]
    np.testing.assert_allclose(score, ref, rtol=1e-9, atol=1e-12)


def test_nested_cv_pools_out_of_fold_predictions():
    X, y = _layout(n=40, signal=2.0)
    Z = TemporalSignature(t=3, width=3).fit_transform(X)
    res = experiments.nested_cv(Z, y, final_acc=50 + 30 * y + np.arange(40) * 0.01, classifier="svm",
                                fold_seed=0, n_folds=5)
    assert res["accuracy"] > 0.8 and res["spearman"] > 0.5
    assert res["majority_accuracy"] == pytest.approx(np.mean(y == 0), abs=0.06)
    assert len(res["params"].split("|")) == 5


def test_leakage_guard_shuffled_labels_score_near_chance():
    """With labels shuffled, the features carry no information about them: the full protocol (scaler and
    tuning inside the folds) must not do better than predicting the majority class, up to noise."""
    X, y = _layout(n=48, signal=3.0, seed=3)
    Z = TemporalSignature(t=3, mode="plain", width=3).fit_transform(X)
    final_acc = 40 + 40 * y + np.random.default_rng(1).normal(0, 3, len(y))
    positive = experiments.nested_cv(Z, y, final_acc, "svm", 0, 5)
    assert positive["accuracy"] > 0.9  # the guard below is not vacuous: the protocol can learn
    rng = np.random.default_rng(0)
    accs, majority = [], []
    for seed in range(3):
        perm = rng.permutation(len(y))
        for clf in ("svm", "mlp"):
            r = experiments.nested_cv(Z, y[perm], final_acc[perm], clf, seed, 5)
            accs.append(r["accuracy"])
            majority.append(r["majority_accuracy"])
    # 6 repetitions of 48 predictions: the standard error of the mean accuracy is about 0.03
    assert np.mean(accs) < np.mean(majority) + 0.08
    assert abs(np.mean(accs) - 0.5) < 0.15


# --------------------------------------------------------------------------- end to end
@pytest.fixture
def tiny_features(tmp_results, tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_STORE", str(tmp_path / "store"))
    profile = dataclasses.replace(tiny_profile(t_max=2), fold_seeds=(0,))
    runs = make_fake_store(profile)
    # "Small-x2" gets no high network: it cannot be cross-validated and must be skipped
    runs.loc[runs["arch"] == "Small-x2", "final_acc"] = 20.0
    runs.to_csv(paths.results_dir(profile.name) / "runs.csv", index=False)
    features.build_profile_features(profile, centralities=fake_centralities)
    return profile


def test_run_q1_end_to_end(tiny_features):
    profile = tiny_features
    q1 = experiments.run_q1(profile, n_jobs=2)
    out = paths.results_dir("tiny")
    assert (out / "q1.csv").exists()
    assert list(pd.read_csv(out / "q1.csv").columns) == experiments.Q1_COLUMNS
    assert set(q1["arch"]) == {"Small", "Deep", "Deeper"}
    skipped = pd.read_csv(out / "q1_skipped.csv")
    assert set(skipped.loc[skipped["arch"] == "Small-x2", "reason"].str.contains("n_folds"))== {True}
    assert set(skipped.loc[skipped["arch"] == "Deeper", "feature_set"]) == {"unroll-deg", "unroll-evec"}
    small = q1[q1["arch"] == "Small"]
    # one row per feature set x mode x classifier x t x fold seed (MLP: reduced sweep)
    svm = small[small["classifier"] == "svm"]
    assert len(svm) == (4 * 3 + 4) * 2 * 1
    mlp = small[small["classifier"] == "mlp"]
    assert len(mlp) == 2 * 2 + (16 - 2)
    assert set(mlp[mlp["feature_set"] == "B_Wl"]["t"]) == {2}
    assert set(mlp[(mlp["feature_set"] == "deg") & (mlp["mode"] == "plain")]["t"]) == {1, 2}
    assert set(small.loc[small["feature_set"].str.startswith("B_"), "mode"]) == {"plain"}
    assert q1["accuracy"].between(0, 1).all() and (q1["n_networks"] == 12).all()
    assert (q1["threshold"] == 50.0).all()
    metrics = json.loads(paths.metrics_path("tiny").read_text())["q1"]
    assert metrics["per_arch"]["Small"]["t"] == 2 and set(metrics["per_arch"]["Small"]["deg"]) == {"svm", "mlp"}


def test_run_q2_end_to_end(tiny_features):
    profile = tiny_features
    q2 = experiments.run_q2(profile, n_jobs=1)
    assert list(q2.columns) == experiments.Q2_COLUMNS
    skipped = pd.read_csv(paths.results_dir("tiny") / "q2_skipped.csv")
    # different last layers (6 vs 12 hidden units): B_Wl cannot transfer from Small to Small-x2
    wider = skipped[skipped["experiment"] == "q2:wider"]
    assert "B_Wl" in set(wider["feature_set"]) and wider["reason"].str.contains("widths differ").any()
    # no unrolled centralities for the test population
    deeper = skipped[skipped["experiment"] == "q2:deeper"]
    assert {"unroll-deg", "unroll-evec"} <= set(deeper["feature_set"])
    assert {"deg", "evec", "B_Wl", "learning-curve"} <= set(q2.loc[q2["transfer"] == "deeper", "feature_set"])
    assert set(q2["seed"]) == set(profile.fold_seeds)
    assert (q2["n_test"] == 12).all() and q2["accuracy"].between(0, 1).all()
