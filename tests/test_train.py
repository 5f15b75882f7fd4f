"""Training runs and the run store: resuming bit-identically, skipping finished runs, corrupt
files, diverged runs, early stopping, and a population trained on a Dask LocalCluster."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from paperlib import data, paths, train
from paperlib.profiles import Grid, Population, get_profile
from paperlib.store import CorruptFileError, RunStore, spec_key


def tiny_spec(**over) -> dict:
    spec = {
        "dataset": "digits", "image_size": 16, "train_limit": 192, "model": "lenet",
        "model_kwargs": {"width": 0.5}, "lr": 0.05, "dropout": 0.3, "seed": 3, "optimizer": "sgd",
        "momentum": 0.9, "batch_size": 64, "epochs": 4, "patience": 5, "version": train.TRAIN_VERSION,
    }
    spec.update(over)
    return spec


def final_weights(root, spec) -> dict[str, torch.Tensor]:
    run = RunStore(root).run(spec)
    return run.load_snapshot(run.meta()["early_stop_epoch"])


def test_run_spec_is_what_the_key_hashes():
    profile = get_profile("smoke")
    pop = profile.populations[0]
    spec = train.run_spec(profile, pop, 0.01, 0.5, 1)
    assert spec["momentum"] == 0.9 and spec["image_size"] == profile.image_size["digits"]
    assert spec_key(spec) == spec_key(dict(reversed(list(spec.items()))))  # order-free
    assert spec_key(spec) != spec_key({**spec, "seed": 2})
    assert len(train.population_specs(profile, pop)) == pop.grid.size


def test_run_records_snapshots_and_history(tmp_path):
    spec = tiny_spec()
    meta = train.train_run(tmp_path, spec)
    run = RunStore(tmp_path).get(meta["key"])
    assert meta["status"] == "finished" and run.meta()["status"] == "finished"
    assert run.snapshot_epochs() == list(range(meta["epochs_trained"] + 1)) == list(range(5))
    assert [h["epoch"] for h in meta["history"]] == [0, 1, 2, 3, 4]
    assert meta["history"][0]["train_loss"] is None and meta["history"][1]["train_loss"] > 0
    # final accuracy = test accuracy of the last snapshot, recomputed independently
    model = train.load_model(run, meta["early_stop_epoch"])
    _, test = data.load_dataset("digits", 16)
    x, y = test.tensors
    with torch.no_grad():
        acc = 100.0 * float((model(x).argmax(1) == y).float().mean())
    assert meta["final_acc"] == pytest.approx(acc)
    assert meta["best_acc"] == max(h["test_acc"] for h in meta["history"])
    assert not model.training


@pytest.mark.parametrize("over", [{}, {"model": "resnet_cifar", "model_kwargs": {"depth": 8, "width": 0.25},
                                       "optimizer": "adam", "lr": 3e-3}])
def test_interrupted_run_resumes_bit_identical(tmp_path, over):
    spec = tiny_spec(**over)
    train.train_run(tmp_path / "a", spec)

    def kill_after_2(epoch):
        if epoch == 2:
            raise train.RunInterrupted("killed between epochs")

    with pytest.raises(train.RunInterrupted):
        train.train_run(tmp_path / "b", spec, on_epoch_end=kill_after_2)
    run_b = RunStore(tmp_path / "b").run(spec)
    assert run_b.meta()["status"] == "running" and run_b.snapshot_epochs() == [0, 1, 2]
    torch.manual_seed(12345)  # the resumed run must not depend on the caller's RNG state
    meta_b = train.train_run(tmp_path / "b", spec)
    a, b = final_weights(tmp_path / "a", spec), final_weights(tmp_path / "b", spec)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta_a = RunStore(tmp_path / "a").run(spec).meta()
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(meta_a["history"]) == strip(meta_b["history"])


def test_finished_run_is_skipped(tmp_path):
    spec = tiny_spec(epochs=2)
    first = train.train_run(tmp_path, spec)
    snap = RunStore(tmp_path).run(spec).snapshot_path(2)
    mtime = snap.stat().st_mtime_ns
    again = train.train_run(tmp_path, spec)
    assert again == first and snap.stat().st_mtime_ns == mtime


def test_truncated_files_raise_naming_the_file(tmp_path):
    spec = tiny_spec(epochs=2)
    meta = train.train_run(tmp_path, spec)
    run = RunStore(tmp_path).get(meta["key"])
    snap = run.snapshot_path(1)
    snap.write_bytes(snap.read_bytes()[:100])
    with pytest.raises(CorruptFileError, match=str(snap)):
        train.load_model(run, 1)
    # an interrupted run whose resume file is truncated: an error, not a silent restart
    spec2 = tiny_spec(epochs=3, seed=4)
    with pytest.raises(train.RunInterrupted):
        train.train_run(tmp_path, spec2, on_epoch_end=lambda e: (_ for _ in ()).throw(train.RunInterrupted()))
    resume = RunStore(tmp_path).run(spec2).dir / "resume.pt"
    resume.write_bytes(resume.read_bytes()[:50])
    with pytest.raises(CorruptFileError, match="resume.pt"):
        train.train_run(tmp_path, spec2)


def test_diverging_run_is_recorded_not_raised(tmp_path):
    spec = tiny_spec(lr=1e6, dropout=0.0, epochs=6)
    meta = train.train_run(tmp_path, spec)
    run = RunStore(tmp_path).get(meta["key"])
    assert meta["status"] == "diverged" and run.meta()["status"] == "diverged"
    e = meta["diverged_epoch"]
    assert e is not None and 1 <= e <= 6 and meta["early_stop_epoch"] == e
    assert run.snapshot_epochs() == list(range(e + 1))  # snapshots are kept
    weights = run.load_snapshot(e)
    losses = [h["train_loss"] for h in meta["history"][1:]]
    assert losses[-1] is None or not all(torch.isfinite(w).all() for w in weights.values())
    assert 0.0 <= meta["final_acc"] <= 100.0
    assert train.train_run(tmp_path, spec)["status"] == "diverged"  # and it stays finished


def test_early_stopping_rule():
    hist = lambda accs: [{"test_acc": a} for a in accs]  # noqa: E731
    # best 60 at epoch 2; epochs 3..7 do not beat it -> stop after epoch 7
    assert train.early_stop(hist([10, 50, 60, 55, 59, 58, 57, 60]), patience=5)
    assert not train.early_stop(hist([10, 50, 60, 55, 59, 58, 57]), patience=5)
    assert not train.early_stop(hist([10, 10, 10, 10, 10]), patience=5)
    assert train.early_stop(hist([10, 10, 10, 10, 10, 10]), patience=5)


def test_early_stopping_ends_a_run(tmp_path):
    meta = train.train_run(tmp_path, tiny_spec(lr=1e-7, epochs=12, patience=2))
    accs = [h["test_acc"] for h in meta["history"]]
    assert meta["status"] == "finished" and meta["early_stop_epoch"] < 12
    assert max(accs[-2:]) <= max(accs[:-2])


def test_population_on_dask_local_cluster(tmp_path, monkeypatch):
    pytest.importorskip("dask.distributed")
    monkeypatch.setattr(paths, "RESULTS", tmp_path / "results")
    monkeypatch.setenv("PAPERLIB_STORE", str(tmp_path / "store"))
    pop = Population("LeNet", "lenet", "digits", 50.0, Grid(lrs=(0.05, 1e6), dropouts=(0.0,), seeds=(0, 1)),
                     epochs=2, t_max=2, model_kwargs={"width": 0.5})
    profile = dataclasses.replace(get_profile("smoke"), name="dasktest", populations=(pop,), workers=2,
                                  train_limit=128, transfers=())
    df = train.train_profile(profile, engine="dask")
    assert len(df) == 4 and df["key"].is_unique
    csv = pd.read_csv(tmp_path / "results" / "dasktest" / "runs.csv")
    for col in ["key", "arch", "dataset", "model", "lr", "dropout", "seed", "optimizer", "status", "diverged",
                "epochs_trained", "early_stop_epoch", "final_acc", "train_seconds", "epoch_seconds"]:
        assert col in csv.columns
    assert set(csv.loc[csv.lr == 0.05, "status"]) == {"finished"}
    assert set(csv.loc[csv.lr == 1e6, "status"]) == {"diverged"} and csv.loc[csv.lr == 1e6, "diverged"].all()
    store = RunStore(paths.runs_dir("dasktest"))
    assert sorted(r.key for r in store) == sorted(df["key"])
    for run in store:
        assert run.snapshot_epochs()[0] == 0 and len(run.snapshot_epochs()) == run.meta()["epochs_trained"] + 1
    # the same population again (local engine, in-process): everything is skipped, same results
    again = train.train_profile(dataclasses.replace(profile, workers=1))
    pd.testing.assert_frame_equal(again, df)
