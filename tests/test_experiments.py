"""Q1/Q2 through the one evaluator: the planner, a leakage guard, and small end-to-end runs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from paperlib.evaluate import evaluation, experiments
from paperlib import features
from paperlib import paths
from paperlib.features.signatures import TemporalSignature
from conftest import write_result

from test_features import fake_centralities, make_fake_store, tiny_profile


def test_leakage_guard_shuffled_labels_score_near_chance():
    """With labels shuffled across configurations, the features carry nothing about them: the full
    protocol (scaler and tuning inside grouped folds) must not beat chance, up to noise."""
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(24), 2)
    y = (rng.random(24) < 0.5).astype(int)[groups]
    X = rng.normal(size=(48, 4, 3)) + 3.0 * y[:, None, None] * np.linspace(0, 1, 4)[None, :, None]
    Z = TemporalSignature(t=3, width=3).fit_transform(X.reshape(48, -1))
    final_acc = 40 + 40 * y + rng.normal(0, 3, len(y))
    assert evaluation.nested_cv(Z, y, groups, final_acc, "svm", 0, 4)["accuracy"] > 0.9  # it can learn
    accs = []
    for seed in range(5):
        perm_cfg = rng.permutation(24)
        y_perm = y[::2][perm_cfg][groups]
        accs.append(evaluation.nested_cv(Z, y_perm, groups, final_acc, "svm", seed, 4)["balanced_accuracy"])
    assert abs(np.mean(accs) - 0.5) < 0.12  # 5 x 48 predictions: s.e. about 0.03


# --------------------------------------------------------------------------- end to end
@pytest.fixture
def tiny_features(tmp_results, tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_STORE", str(tmp_path / "store"))
    profile = dataclasses.replace(tiny_profile(t_max=2), fold_seeds=(0,))
    runs = make_fake_store(profile)
    # "Small-x2" gets no high network: it cannot be cross-validated and must be skipped
    runs.loc[runs["arch"] == "Small-x2", "final_acc"] = 20.0
    write_result(paths.results_dir(profile.name) / "runs.csv", runs)
    features.build_profile_features(profile, centralities=fake_centralities)
    return profile


def test_planner_yields_tasks_and_skips_with_reasons(tiny_features):
    profile = tiny_features
    plan = experiments.plan(profile, "q1")
    names = {(t.train[0].arch, t.feature_set) for t in plan.tasks}
    assert ("Small", "learning-curve+deg") in names and ("Small", "learning-curve+evec") in names
    assert not any(t.feature_set.endswith("-sa") for t in plan.tasks)  # size-aware: Q2 only
    reasons = {(s.arch, s.feature_set): s.reason for s in plan.skipped}
    assert "n_folds" in reasons[("Small-x2", "deg")]
    assert "unrolled" in reasons[("Deeper", "unroll-deg")]
    mlp = [t for t in plan.tasks if t.classifier == "mlp" and t.train[0].arch == "Small"]
    assert {t.ts for t in mlp if (t.mode, t.feature_set) == ("plain", "deg")} == {(1, 2)}
    assert {t.ts for t in mlp if t.feature_set == "B_Wl"} == {(2,)}
    q2 = experiments.plan(profile, "q2")
    assert {"deg-sa", "evec-sa"} <= {t.feature_set for t in q2.tasks}
    wider = [s for s in q2.skipped if s.name == "wider" and s.feature_set == "B_Wl"]
    assert wider and "widths differ" in wider[0].reason


def test_run_q1_end_to_end(tiny_features):
    profile = tiny_features
    q1 = experiments.run_q1(profile, n_jobs=1)
    out = paths.results_dir("tiny")
    assert list(pd.read_csv(out / "q1.csv").columns) == experiments.Q1_COLUMNS
    assert set(q1["arch"]) == {"Small", "Deep", "Deeper"}
    skipped = pd.read_csv(out / "q1_skipped.csv")
    assert set(skipped.loc[skipped["arch"] == "Small-x2", "reason"].str.contains("n_folds")) == {True}
    assert set(skipped.loc[skipped["arch"] == "Deeper", "feature_set"]) == {"unroll-deg", "unroll-evec"}
    small = q1[q1["arch"] == "Small"]
    # run 0 diverged at epoch 2, run 1 stopped after epoch 1: decided at t=2, alive at t=1
    assert set(small.loc[small["t"] == 1, "n_decided"]) == {0} and set(small.loc[small["t"] == 2, "n_decided"]) == {2}
    assert set(small.loc[small["t"] == 2, "n_networks"]) == {10}
    assert q1["accuracy"].between(0, 1).all() and q1["majority_accuracy"].between(0, 1).all()
    assert q1["single_class"].isin([True, False]).all()
    svm = small[small["classifier"] == "svm"]
    assert set(svm.loc[svm["feature_set"] == "B_Wl", "t"]) == {2}
    assert set(svm.loc[(svm["feature_set"] == "deg") & (svm["mode"] == "expavg"), "t"]) == {1, 2}
    folds = small["fold_accuracy"].str.split(";").map(len)
    assert (folds == profile.n_folds).all()
    metrics = json.loads(paths.metrics_path("tiny").read_text())["q1"]
    assert metrics["per_arch"]["Small"]["t"] == 2 and set(metrics["per_arch"]["Small"]["deg"]) == {"svm", "mlp"}
    assert metrics["protocol"]["selection_metric"] == "balanced_accuracy"
    assert metrics["fits"]["mlp"]["fits"] > 0


def test_run_q2_end_to_end(tiny_features):
    profile = tiny_features
    q2 = experiments.run_q2(profile, n_jobs=1)
    assert list(q2.columns) == experiments.Q2_COLUMNS
    skipped = pd.read_csv(paths.results_dir("tiny") / "q2_skipped.csv")
    deeper = skipped[skipped["experiment"] == "q2:deeper"]
    assert {"unroll-deg", "unroll-evec"} <= set(deeper["feature_set"])
    assert {"deg", "evec", "deg-sa", "evec-sa", "B_Wl", "learning-curve"} <= set(
        q2.loc[q2["transfer"] == "deeper", "feature_set"])
    assert set(q2["seed"]) == set(profile.fold_seeds)
    at2 = q2[q2["t"] == 2]
    assert (at2["n_test"] == 10).all() and (at2["n_decided"] == 2).all() and q2["accuracy"].between(0, 1).all()
