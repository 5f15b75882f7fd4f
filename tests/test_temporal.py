"""Temporal centralities: node-aligned per snapshot, cached next to the run, recomputed on change."""

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest
import torch

from paperlib.graph import centrality, temporal
from paperlib import graph, paths
from paperlib.profiles import Grid, Population, Profile
from paperlib.train.store import RunStore
from paperlib.train.trainer import load_model
from conftest import write_result

SPEC = {"dataset": "digits", "image_size": 16, "model": "lenet", "model_kwargs": {"width": 0.5},
        "dropout": 0.0, "lr": 0.1, "seed": 0, "optimizer": "sgd", "note": "graph test"}
SHAPE = (1, 16, 16)


def _make_run(root, n_epochs=3, nan_epoch=None):
    from paperlib.train.models import build_model

    run = RunStore(root).run(SPEC)
    torch.manual_seed(0)
    net = build_model("lenet", 10, 1, 16, width=0.5)
    for e in range(n_epochs):
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(1.1).add_(0.01)
            if e == nan_epoch:
                net.features[0].weight[0, 0, 0, 0] = float("nan")
        run.save_snapshot(e, net.state_dict())
    return run


def test_compute_run_values_cache_and_recompute(tmp_path):
    run = _make_run(tmp_path, nan_epoch=2)
    out = temporal.compute_run(run, [0, 1, 2], ("rolled", "unrolled"), SHAPE)
    assert not out["rolled_cached"] and not out["unrolled_cached"]
    c = temporal.load_centralities(run, "rolled")
    assert list(c["epochs"]) == [0, 1, 2] and list(c["finite"]) == [True, True, False]
    g1 = graph.rolled_graph(load_model(run, 1), SHAPE)
    np.testing.assert_allclose(c["deg"][1], centrality.weighted_degree(g1.adjacency), rtol=1e-12)
    np.testing.assert_allclose(c["evec"][1], centrality.eigenvector_centrality(g1.adjacency), atol=1e-8)
    assert np.all(np.isnan(c["evec"][2]))
    u = temporal.load_centralities(run, "unrolled")
    u0 = graph.unrolled_graph(load_model(run, 0), SHAPE).materialize()
    np.testing.assert_allclose(u["evec"][0], centrality.eigenvector_centrality(u0), atol=1e-8)
    assert u["deg"].shape == (3, u0.shape[0])

    # unchanged snapshots: read from the cache
    again = temporal.compute_run(run, [0, 1, 2], ("rolled",), SHAPE)
    assert again["rolled_cached"]
    # a snapshot changes: recomputed, with the new values
    sd = run.load_snapshot(1)
    sd["features.0.weight"] *= 3.0
    run.save_snapshot(1, sd)
    st = run.snapshot_path(1).stat()
    os.utime(run.snapshot_path(1), ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = temporal.compute_run(run, [0, 1, 2], ("rolled",), SHAPE)
    assert not third["rolled_cached"]
    c2 = temporal.load_centralities(run, "rolled")
    assert not np.allclose(c2["deg"][1], c["deg"][1])
    np.testing.assert_allclose(c2["deg"][0], c["deg"][0])


def test_code_version_invalidates_the_cache(tmp_path, monkeypatch):
    run = _make_run(tmp_path, n_epochs=2)
    temporal.compute_run(run, [0, 1], ("rolled",), SHAPE)
    assert temporal.compute_run(run, [0, 1], ("rolled",), SHAPE)["rolled_cached"]
    monkeypatch.setattr(temporal, "CODE_VERSION", temporal.CODE_VERSION + 1)
    assert not temporal.compute_run(run, [0, 1], ("rolled",), SHAPE)["rolled_cached"]


def test_load_centralities_missing(tmp_path):
    run = _make_run(tmp_path, n_epochs=1)
    with pytest.raises(FileNotFoundError, match="compute_profile"):
        temporal.load_centralities(run, "unrolled")


def test_compute_profile_writes_table(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RESULTS", tmp_path / "results")
    monkeypatch.setenv("PAPERLIB_STORE", str(tmp_path / "store"))
    profile = Profile(name="tiny", description="test", image_size={"digits": 16}, populations=(
        Population("LeNet", "lenet", "digits", 50.0, Grid((0.1,), (0.0,), (0,)), epochs=3, t_max=1,
                   model_kwargs={"width": 0.5}),))
    run = _make_run(paths.runs_dir("tiny"), n_epochs=3)
    out = paths.ensure(paths.results_dir("tiny"))
    write_result(out / "runs.csv", pd.DataFrame([{"key": run.key, "arch": "LeNet", "epochs_trained": 2}]))
    df = temporal.compute_profile(profile, unrolled=True, workers=1, progress=False)
    assert list(df.columns[:5]) == ["key", "arch", "n_snapshots", "rolled_seconds", "unrolled_seconds"]
    assert df.loc[0, "n_snapshots"] == 1  # epochs 1..min(t_max=1, 2): the signatures do not read epoch 0
    assert (out / "centralities.csv").exists()
    assert list(temporal.load_centralities(run, "unrolled")["epochs"]) == [1]
    # a profile whose signatures include the initialisation gets epoch 0 as well
    with_init = dataclasses.replace(profile, include_epoch0=True)
    df = temporal.compute_profile(with_init, unrolled=True, workers=1, progress=False)
    assert df.loc[0, "n_snapshots"] == 2
    assert list(temporal.load_centralities(run, "unrolled")["epochs"]) == [0, 1]
