"""Feature sets on a small synthetic run store (fake snapshots, histories and centralities)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from torch import nn

from paperlib import features, paths
from paperlib.profiles import Grid, Population, Profile, Transfer, get_profile
from paperlib.signatures import aggregate
from paperlib.store import Run, atomic_write_json, save_tensors

HIDDEN = {"Small": 6, "Small-x2": 12, "Deep": 6, "Deeper": 6}


def tiny_profile(n_per_pop: int = 12, t_max: int = 3) -> Profile:
    """A profile of four tiny populations; "Deeper" has no unrolled centralities in the fake store."""
    grid = Grid(lrs=(0.1,), dropouts=(0.0,), seeds=tuple(range(n_per_pop)))
    pops = tuple(Population(arch, "lenet", "digits", 50.0, grid, epochs=5, t_max=t_max) for arch in HIDDEN)
    base = get_profile("smoke")
    return dataclasses.replace(
        base, name="tiny", populations=pops, n_folds=3, fold_seeds=(0, 1),
        transfers=(Transfer("deeper", ("Deep",), "Deeper"), Transfer("wider", ("Small",), "Small-x2")))


def make_fake_store(profile: Profile, n_per_pop: int = 12, seed: int = 0) -> pd.DataFrame:
    """Runs whose weight scale and centralities track the final accuracy; run 0 of each population diverges
    at epoch 2 (NaN weights, training stops) and run 1 stops early after epoch 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for pop in profile.populations:
        h = HIDDEN[pop.arch]
        for i in range(n_per_pop):
            key = f"{pop.arch.lower()}-{i:02d}"
            run = Run(paths.runs_dir(profile.name) / key)
            atomic_write_json(run.dir / "spec.json", {"arch": pop.arch, "i": i})
            diverged = i == 0
            final = float("nan") if diverged else float(rng.uniform(10, 95))
            trained = 2 if diverged else (1 if i == 1 else pop.epochs)
            quality = 0.0 if diverged else (final - 50) / 45
            history = []
            for e in range(trained + 1):
                sd = {"conv.weight": torch.randn(3, 1, 3, 3),
                      "bn.running_mean": torch.zeros(3),
                      "fc.weight": torch.randn(10, h) * (1 + 0.5 * quality) * (1 + 0.1 * e),
                      "fc.bias": torch.randn(10)}
                if diverged and e == trained:
                    sd["fc.weight"][0, 0] = float("nan")
                save_tensors(run.snapshot_path(e), sd)
                acc = 10.0 if diverged else final * min(1.0, (e + 1) / 3)
                history.append({"epoch": e, "test_acc": acc, "train_loss": 1.0, "seconds": 0.1})
            run.write_meta({"status": "diverged" if diverged else "finished", "history": history,
                            "early_stop_epoch": trained, "final_acc": final,
                            "diverged_epoch": trained if diverged else None})
            rows.append({"key": key, "arch": pop.arch, "dataset": pop.dataset, "model": pop.model,
                         "status": "diverged" if diverged else "finished", "diverged": diverged,
                         "epochs_trained": trained, "final_acc": final})
    runs = pd.DataFrame(rows)
    paths.ensure(paths.results_dir(profile.name))
    runs.to_csv(paths.results_dir(profile.name) / "runs.csv", index=False)
    return runs


def fake_centralities(run: Run, kind: str) -> dict[str, np.ndarray]:
    """Centralities of the snapshots 0..min(t_max, trained); "Deeper" has no unrolled ones."""
    if kind == "unrolled" and run.key.startswith("deeper"):
        raise FileNotFoundError(f"{run.dir}: no unrolled centralities")
    meta = run.meta()
    epochs = np.array([h["epoch"] for h in meta["history"]])
    final = meta["final_acc"]
    q = 0.0 if final != final else (final - 50) / 45
    rng = np.random.default_rng(abs(hash((run.key, kind))) % 2**32)
    n_nodes = 20
    deg = rng.gamma(2.0, 1.0 + 0.5 * q, size=(len(epochs), n_nodes)) * (1 + 0.2 * epochs[:, None])
    evec = np.abs(rng.normal(size=(len(epochs), n_nodes))) + q
    finite = np.ones(len(epochs), bool)
    if meta["status"] == "diverged":
        deg[-1] = np.nan
        evec[-1] = np.nan
        finite[-1] = False
    return {"epochs": epochs, "deg": deg, "evec": evec, "finite": finite}


@pytest.fixture
def tiny_store(tmp_results, tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_STORE", str(tmp_path / "store"))
    profile = tiny_profile()
    runs = make_fake_store(profile)
    return profile, runs


# --------------------------------------------------------------------------- unit checks
def test_weight_stats_against_numpy():
    v = np.random.default_rng(1).normal(size=(2, 37))
    out = features.weight_stats(v)
    for row, o in zip(v, out):
        np.testing.assert_allclose(o, [row.mean(), row.var(), *np.percentile(row, [0, 25, 50, 75, 100])])
    assert np.isnan(features.weight_stats(np.array([[1.0, np.inf]]))).all()


def test_last_layer_is_the_last_linear_module():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    sd = model.state_dict()
    got = features.last_layer(sd)
    expected = np.concatenate([model[3].weight.detach().numpy().ravel(), model[3].bias.detach().numpy()])
    np.testing.assert_allclose(got, expected)
    assert got.size == 4 * 2 + 2


def test_forward_fill_and_flag():
    rows = np.array([[1.0, 2.0], [np.nan, 5.0]])
    filled = features._forward_fill(np.array([0, 2]), rows, 4)
    np.testing.assert_array_equal(filled[0], [1, 2])
    np.testing.assert_array_equal(filled[1], [1, 2])
    assert np.isnan(filled[2, 0]) and np.isnan(filled[3, 0])
    flagged, n_bad = features.with_flag(filled)
    assert n_bad == 2 and np.isfinite(flagged).all()
    np.testing.assert_array_equal(flagged[:, -1], [0, 0, 1, 1])
    np.testing.assert_array_equal(flagged[2], [features.FILL_VALUE, features.FILL_VALUE, 1])  # whole epoch replaced


def test_labels():
    labels = features.population_labels(np.array([50.0, 49.9, np.nan, 80.0]), np.array([0, 0, 1, 1], bool), 50.0)
    np.testing.assert_array_equal(labels, [1, 0, 0, 0])


# --------------------------------------------------------------------------- whole profile
def test_build_profile_features(tiny_store):
    profile, runs = tiny_store
    index = features.build_profile_features(profile, centralities=fake_centralities)
    assert (paths.results_dir("tiny") / "features.csv").exists()
    assert set(index["feature_set"]) == set(profile.feature_sets)
    assert len(index) == len(profile.populations) * len(profile.feature_sets)
    # missing unrolled centralities: recorded, not a crash
    miss = index[(index["arch"] == "Deeper") & index["feature_set"].str.startswith("unroll")]
    assert (miss["status"] == "missing").all() and miss["reason"].str.contains("unrolled").all()
    ok = index[index["status"] == "ok"]
    assert (ok["n_networks"] == 12).all() and (ok["t_available"] == 3).all()
    dims = ok.set_index(["arch", "feature_set"])["dim_per_epoch"]
    assert dims[("Small", "deg")] == 5 and dims[("Small", "B_What")] == 7
    assert dims[("Small", "B_Wl")] == 10 * 6 + 10 and dims[("Small-x2", "B_Wl")] == 10 * 12 + 10
    assert dims[("Small", "learning-curve")] == 1

    feats = features.load_population(profile, "Small")
    assert feats.keys.tolist() == sorted(runs.loc[runs["arch"] == "Small", "key"])
    for name, arr in feats.arrays.items():
        assert arr.shape[:2] == (12, 4) and np.isfinite(arr).all(), name
    # run 0 diverged at epoch 2: flagged at epochs 2 and 3 (forward filled), finite before
    deg = feats.arrays["deg"]
    np.testing.assert_array_equal(deg[0, :, -1], [0, 0, 1, 1])
    np.testing.assert_array_equal(deg[0, 2, :-1], features.FILL_VALUE)
    assert deg[1:, :, -1].sum() == 0
    # run 1 stopped after epoch 1: its later epochs repeat epoch 1
    np.testing.assert_array_equal(deg[1, 2], deg[1, 1])
    np.testing.assert_array_equal(feats.arrays["learning-curve"][1, 3], feats.arrays["learning-curve"][1, 1])
    # the signature of one snapshot equals aggregate() of its centralities
    c = fake_centralities(Run(paths.runs_dir("tiny") / feats.keys[5]), "rolled")
    np.testing.assert_allclose(deg[5, 2, :-1], aggregate(c["deg"][2]))
    # B_Wprime of a snapshot: scipy on the flattened last layer
    sd = torch.load(Run(paths.runs_dir("tiny") / feats.keys[5]).snapshot_path(3), weights_only=True)
    flat = np.concatenate([sd["fc.weight"].numpy().ravel(), sd["fc.bias"].numpy()]).astype(np.float64)
    np.testing.assert_allclose(feats.arrays["B_Wprime"][5, 3, 3], scipy.stats.skew(flat), rtol=1e-6)
    np.testing.assert_allclose(feats.arrays["B_Wl"][5, 3, :-1], flat, rtol=1e-6)
    # labels: diverged run 0 is low
    assert feats.labels[0] == 0 and feats.labels.sum() == (runs.loc[runs["arch"] == "Small", "final_acc"] >= 50).sum()


def test_load_population_detects_stale_cache(tiny_store):
    profile, runs = tiny_store
    features.build_profile_features(profile, centralities=fake_centralities)
    runs.iloc[:-1].to_csv(paths.results_dir("tiny") / "runs.csv", index=False)
    with pytest.raises(ValueError, match="do not match"):
        features.load_population(profile, "Deeper")
