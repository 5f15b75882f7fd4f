"""Feature sets on a small synthetic run store (fake snapshots, histories and centralities)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from torch import nn

from paperlib import features
from paperlib import paths
from paperlib.profiles import Grid, Population, Profile, Transfer, get_profile
from paperlib.features.signatures import aggregate
from paperlib.files import atomic_write_json
from paperlib.train.store import Run, save_tensors
from conftest import write_result

HIDDEN = {"Small": 6, "Small-x2": 12, "Deep": 6, "Deeper": 6}


def tiny_profile(n_per_pop: int = 12, t_max: int = 3) -> Profile:
    """A profile of four tiny populations; "Deeper" has no unrolled centralities in the fake store."""
    grid = Grid(lrs=tuple(10.0 ** -np.arange(n_per_pop // 2)), dropouts=(0.0,), seeds=(0, 1))
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
                         "lr": 10.0 ** -(i // 2), "dropout": 0.0, "seed": i % 2, "optimizer": "sgd",
                         "status": "diverged" if diverged else "finished", "diverged": diverged,
                         "epochs_trained": trained, "final_acc": final,
                         "diverged_epoch": trained if diverged else None})
    runs = pd.DataFrame(rows)
    paths.ensure(paths.results_dir(profile.name))
    write_result(paths.results_dir(profile.name) / "runs.csv", runs)
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


def test_size_aware_is_the_signature_of_v_over_its_mean():
    v = np.random.default_rng(3).gamma(2.0, 1.5, size=41)
    expected = aggregate(v / v.mean())
    got = features.size_aware(aggregate(v)[None, :])[0]
    np.testing.assert_allclose(got, expected[[0, 2, 3, 4]], rtol=1e-12)
    np.testing.assert_allclose(features.size_aware(aggregate(7.0 * v)[None, :]), got[None, :], rtol=1e-12)


def synthetic_population(n: int = 8, t_max: int = 4) -> features.PopulationFeatures:
    """Eight runs: 0 diverged at epoch 2, 1 stopped after epoch 1, 2 diverged at epoch 5 (after t_max)."""
    trained = np.array([2, 1, 5, 6, 6, 6, 6, 6])
    div = np.array([2, np.inf, 5, np.inf, np.inf, np.inf, np.inf, np.inf])
    a = np.random.default_rng(0).normal(size=(n, t_max + 1, 5))
    for i in range(n):
        a[i, int(min(trained[i], div[i] - 1)) + 1:] = np.nan
    return features.PopulationFeatures(
        "P", "digits", np.array([f"k{i}" for i in range(n)]), np.linspace(20, 90, n), np.isfinite(div), trained,
        50.0, t_max, {"deg": a, "learning-curve": a[..., :1]}, {}, np.arange(n) // 2, div)


def test_alive_is_the_information_horizon():
    f = synthetic_population()
    np.testing.assert_array_equal(f.alive(1), [1, 1, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(f.alive(2), [0, 0, 1, 1, 1, 1, 1, 1])  # diverged at 2, stopped after 1
    np.testing.assert_array_equal(f.alive(4), [0, 0, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(f.alive(5), [0, 0, 0, 1, 1, 1, 1, 1])
    for t in range(1, 5):  # every alive network has finite features at epochs 1..t
        assert np.isfinite(f.arrays["deg"][f.alive(t), 1:t + 1]).all()
    # the labels: diverged runs are low whatever their final accuracy
    assert f.labels[2] == 0 and f.labels[-1] == 1


def test_derived_sets_are_built_from_the_stored_ones():
    f = synthetic_population()
    combo = f.array("learning-curve+deg")
    assert combo.shape == (8, 5, 6)
    np.testing.assert_array_equal(combo[..., 0], f.arrays["learning-curve"][..., 0])
    np.testing.assert_array_equal(combo[..., 1:], f.arrays["deg"])
    assert f.width("deg-sa") == 4 and not f.available("evec-sa")
    with pytest.raises(KeyError, match="evec"):
        f.array("evec-sa")


def test_configuration_groups_ignore_the_seed():
    df = pd.DataFrame({"lr": [0.1, 0.1, 0.01, 0.01, 0.1], "dropout": [0.0, 0.0, 0.0, 0.0, 0.5],
                       "seed": [0, 1, 0, 1, 0], "optimizer": "sgd", "final_acc": [1, 2, 3, 4, 5]})
    np.testing.assert_array_equal(features.configuration_groups(df), [0, 0, 1, 1, 2])
    with pytest.raises(ValueError, match="configuration columns"):
        features.configuration_groups(df[["seed", "final_acc"]])


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
    np.testing.assert_array_equal(feats.groups, np.arange(12) // 2)  # seed twins share a configuration
    assert feats.diverged_epoch[0] == 2 and np.isinf(feats.diverged_epoch[1:]).all()
    for name, arr in feats.arrays.items():
        assert arr.shape[:2] == (12, 4), name
        assert np.isfinite(arr[2:]).all(), name  # runs that trained through t_max: all finite
    # run 0 diverged at epoch 2: NaN there (non-finite snapshot) and nothing after; run 1 stopped after
    # epoch 1: NaN at epochs 2 and 3, never a copy of epoch 1
    deg = feats.arrays["deg"]
    assert np.isfinite(deg[0, :2]).all() and np.isnan(deg[0, 2:]).all()
    assert np.isfinite(deg[1, :2]).all() and np.isnan(deg[1, 2:]).all()
    assert np.isnan(feats.arrays["learning-curve"][1, 2:]).all()
    np.testing.assert_array_equal(feats.alive(2), np.arange(12) >= 2)
    # the signature of one snapshot equals aggregate() of its centralities
    c = fake_centralities(Run(paths.runs_dir("tiny") / feats.keys[5]), "rolled")
    np.testing.assert_allclose(deg[5, 2], aggregate(c["deg"][2]))
    # B_Wprime of a snapshot: scipy on the flattened last layer
    sd = torch.load(Run(paths.runs_dir("tiny") / feats.keys[5]).snapshot_path(3), weights_only=True)
    flat = np.concatenate([sd["fc.weight"].numpy().ravel(), sd["fc.bias"].numpy()]).astype(np.float64)
    np.testing.assert_allclose(feats.arrays["B_Wprime"][5, 3, 3], scipy.stats.skew(flat), rtol=1e-6)
    np.testing.assert_allclose(feats.arrays["B_Wl"][5, 3], flat, rtol=1e-6)
    # labels: diverged run 0 is low
    assert feats.labels[0] == 0 and feats.labels.sum() == (runs.loc[runs["arch"] == "Small", "final_acc"] >= 50).sum()
    row = index[(index["arch"] == "Small") & (index["feature_set"] == "deg")].iloc[0]
    assert row["n_configurations"] == 6 and row["n_alive_at_t"] == 10 and row["n_diverged_by_t"] == 1


def test_a_missing_epoch_of_an_alive_run_is_an_error_naming_it(tiny_store):
    profile, runs = tiny_store
    victim = Run(paths.runs_dir("tiny") / "small-05")
    victim.snapshot_path(2).unlink()
    with pytest.raises(features.MissingEpochError, match="small-05.*epoch 2"):
        features.build_profile_features(profile, centralities=fake_centralities)
    assert not (paths.results_dir("tiny") / "features.csv").exists()  # nothing written

    def holey(run, kind):
        c = fake_centralities(run, kind)
        if run.key == "small-07":
            c = {k: (v[[0, 1, 3]] if getattr(v, "ndim", 0) and len(v) == len(c["epochs"]) else v) for k, v in c.items()}
        return c

    profile2 = dataclasses.replace(profile, feature_sets=("deg",))
    with pytest.raises(features.MissingEpochError, match="small-07.*epoch 2"):
        features.build_profile_features(profile2, centralities=holey)


def test_load_population_detects_stale_cache(tiny_store):
    profile, runs = tiny_store
    features.build_profile_features(profile, centralities=fake_centralities)
    write_result(paths.results_dir("tiny") / "runs.csv", runs.iloc[:-1])
    with pytest.raises(ValueError, match="do not match"):
        features.load_population(profile, "Deeper")
