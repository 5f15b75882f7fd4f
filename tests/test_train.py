"""Training runs and the run store: resuming bit-identically, skipping finished runs, corrupt
files, diverged runs, early stopping, and a population trained on a Dask LocalCluster."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from paperlib import kernels, paths
from paperlib.train import data, populations, trainer as train
from paperlib.profiles import Grid, Population, get_profile
from paperlib.train.store import CorruptFileError, RunStore, spec_key


def tiny_spec(**over) -> dict:
    spec = {
        "dataset": "digits", "image_size": 16, "train_limit": 192, "model": "lenet",
        "model_kwargs": {"width": 0.5}, "lr": 0.05, "dropout": 0.3, "seed": 3, "optimizer": "sgd",
        "momentum": 0.9, "batch_size": 64, "epochs": 4, "patience": 5, "burn_in": 0, "device": "cpu",
        "precision": "float32", "threads": 1, "isa": kernels.isa_class(), "version": train.TRAIN_VERSION,
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


class AuthorsEarlyStopping:
    """Reference: the ``EarlyStopping(mode="max", patience)`` the authors' training loop uses
    (best/num_bad_epochs counter, ``is_better`` = strictly greater), written out independently."""

    def __init__(self, patience):
        self.patience, self.best, self.bad = patience, None, 0

    def step(self, metric):
        if self.best is None:
            self.best = metric
            return False
        if metric > self.best:
            self.best, self.bad = metric, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


def authors_stop_epoch(accs, patience, burn_in):
    """1-based epoch at which the authors' loop breaks (``epoch`` 0-based, ``epoch > burn_in - 1``)."""
    es = AuthorsEarlyStopping(patience)
    for epoch, acc in enumerate(accs):  # their loop: epoch = 0, 1, ...
        if es.step(acc) and epoch > burn_in - 1:
            return epoch + 1
    return len(accs)


def our_stop_epoch(accs, patience, burn_in):
    history = [{"epoch": 0, "test_acc": 99.0}]  # the initialisation never counts, even when best
    for e, acc in enumerate(accs, 1):
        history.append({"epoch": e, "test_acc": acc})
        if train.early_stop(history, patience, burn_in):
            return e
    return len(accs)


def test_early_stopping_rule_hand_cases():
    hist = lambda accs: [{"epoch": i, "test_acc": a} for i, a in enumerate(accs)]  # noqa: E731
    # best 60 at epoch 2; epochs 3..7 do not beat it -> stop after epoch 7
    assert train.early_stop(hist([10, 50, 60, 55, 59, 58, 57, 60]), patience=5)
    assert not train.early_stop(hist([10, 50, 60, 55, 59, 58, 57]), patience=5)
    # epoch 0 does not count: five flat trained epochs are not yet "5 without improvement"
    assert not train.early_stop(hist([10, 10, 10, 10, 10, 10]), patience=5)
    assert train.early_stop(hist([10, 10, 10, 10, 10, 10, 10]), patience=5)
    # the same stop is not taken while the epoch is <= burn_in
    assert not train.early_stop(hist([10, 50, 60, 55, 59, 58, 57, 60]), patience=5, burn_in=7)
    assert train.early_stop(hist([10, 50, 60, 55, 59, 58, 57, 60, 50]), patience=5, burn_in=7)


def test_early_stopping_matches_the_authors_loop():
    rng = torch.Generator().manual_seed(0)
    for trial in range(300):
        n = int(torch.randint(1, 40, (1,), generator=rng))
        accs = torch.randint(0, 6, (n,), generator=rng).tolist()  # few levels: many ties
        patience = int(torch.randint(1, 6, (1,), generator=rng))
        burn_in = int(torch.randint(0, 15, (1,), generator=rng))
        assert our_stop_epoch(accs, patience, burn_in) == authors_stop_epoch(accs, patience, burn_in), \
            (accs, patience, burn_in)


def test_early_stopping_ends_a_run_only_after_the_burn_in(tmp_path):
    spec = tiny_spec(lr=1e-7, epochs=12, patience=2, burn_in=6)
    meta = train.train_run(tmp_path, spec)
    accs = [h["test_acc"] for h in meta["history"][1:]]
    e = meta["early_stop_epoch"]
    assert meta["status"] == "finished" and 6 < e < 12
    assert e == authors_stop_epoch(accs + [-1.0] * (12 - len(accs)), 2, 6)
    no_burn = train.train_run(tmp_path, {**spec, "burn_in": 0})
    assert no_burn["early_stop_epoch"] < e  # flat accuracy: without burn-in it stops as soon as it can


def test_population_on_dask_local_cluster(tmp_path, monkeypatch):
    pytest.importorskip("dask.distributed")
    monkeypatch.setattr(paths, "RESULTS", tmp_path / "results")
    monkeypatch.setenv("PAPERLIB_STORE", str(tmp_path / "store"))
    pop = Population("LeNet", "lenet", "digits", 50.0, Grid(lrs=(0.05, 1e6), dropouts=(0.0,), seeds=(0, 1)),
                     epochs=2, t_max=2, model_kwargs={"width": 0.5})
    profile = dataclasses.replace(get_profile("smoke"), name="dasktest", populations=(pop,), workers=2,
                                  train_limit=128, transfers=())
    # workers=0 (what an unset notebook parameter used to pass): one worker at least, never a hang
    assert populations.effective_workers("cpu", 0) == 1 and populations.effective_workers("cpu", 3) == 3
    populations.train_specs(paths.runs_dir("dasktest"), train.profile_specs(profile), engine="dask", workers=0)
    df = populations.train_profile(profile, engine="dask")  # everything is finished: no cluster needed
    assert len(df) == 4 and df["key"].is_unique
    csv = pd.read_csv(tmp_path / "results" / "dasktest" / "runs.csv")
    for col in ["key", "arch", "dataset", "model", "lr", "dropout", "seed", "optimizer", "status", "diverged",
                "epochs_trained", "early_stop_epoch", "final_acc", "isa"]:
        assert col in csv.columns
    timed = pd.read_csv(tmp_path / "results" / "dasktest" / "timings" / "runs.csv")
    assert list(timed.columns) == ["key", "train_seconds", "epoch_seconds"] and (timed["train_seconds"] > 0).all()
    snaps = pd.read_csv(tmp_path / "results" / "dasktest" / "snapshots.csv")
    for _, spec in train.profile_specs(profile):
        run = RunStore(paths.runs_dir("dasktest")).run(spec)
        rows = snaps[snaps["key"] == run.key].sort_values("epoch")
        assert rows["sha256"].tolist() == [run.meta()["snapshots"][str(e)]["sha256"] for e in rows["epoch"]]
        assert rows["epoch"].tolist() == run.snapshot_epochs()
    assert set(csv.loc[csv.lr == 0.05, "status"]) == {"finished"}
    assert set(csv.loc[csv.lr == 1e6, "status"]) == {"diverged"} and csv.loc[csv.lr == 1e6, "diverged"].all()
    store = RunStore(paths.runs_dir("dasktest"))
    assert sorted(r.key for r in store) == sorted(df["key"])
    for run in store:
        assert run.snapshot_epochs()[0] == 0 and len(run.snapshot_epochs()) == run.meta()["epochs_trained"] + 1
    # the same population again (local engine, in-process): everything is skipped, same results
    again = populations.train_profile(dataclasses.replace(profile, workers=1))
    pd.testing.assert_frame_equal(again, df)


# --------------------------------------------------------------------------- machine independence
def snapshot_bytes(root, spec) -> dict[int, bytes]:
    run = RunStore(root).run(spec)
    return {e: run.snapshot_path(e).read_bytes() for e in run.snapshot_epochs()}


def test_spec_key_covers_device_precision_and_burn_in():
    profile = get_profile("smoke")
    spec = train.run_spec(profile, profile.populations[0], 0.01, 0.5, 1)
    assert spec["device"] in ("cpu", "cuda") and spec["threads"] == profile.threads == 1
    assert spec["burn_in"] == profile.burn_in and spec["precision"] == "float32"
    keys = {spec_key({**spec, **over}) for over in
            [{}, {"device": "cuda" if spec["device"] == "cpu" else "cpu"}, {"precision": "bf16"}, {"burn_in": 3},
             {"threads": 2}]}
    assert len(keys) == 5
    cpu = train.run_spec(profile.with_overrides(device="cpu"), profile.populations[0], 0.01, 0.5, 1)
    assert cpu["device"] == "cpu"
    with pytest.raises(ValueError, match="missing fields"):
        train.train_run("unused", {k: v for k, v in tiny_spec().items() if k != "burn_in"})
    with pytest.raises(ValueError, match="resolved"):
        train.train_run("unused", tiny_spec(device="auto"))


def test_meta_records_the_environment(tmp_path):
    import paperlib

    torch.set_num_threads(2)  # the process's setting must neither leak into the run nor be lost
    meta = train.train_run(tmp_path, tiny_spec(epochs=1))
    assert torch.get_num_threads() == 2
    assert meta["torch"] == torch.__version__ and meta["paperlib"] == paperlib.__version__
    assert meta["device"] == "cpu" and meta["device_name"] == "cpu"
    assert meta["precision"] == "float32" and meta["threads"] == 1
    assert sorted(meta["snapshots"]) == ["0", "1"]


_SUBPROCESS = """
import os, sys, json, torch
torch.set_num_threads(int(sys.argv[2]))
from paperlib.train import trainer as train
meta = train.train_run(sys.argv[1], json.loads(sys.argv[3]))
print(json.dumps({"threads_after": torch.get_num_threads(), "in_run": meta["threads"]}))
"""


def test_same_snapshots_with_1_and_2_intra_op_threads(tmp_path):
    import json
    import os
    import subprocess
    import sys

    spec = tiny_spec(model="resnet_cifar", model_kwargs={"depth": 8, "width": 0.5}, epochs=2, lr=0.02)
    out = {}
    for n in (1, 2):
        env = {**os.environ, "OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)}
        res = subprocess.run([sys.executable, "-c", _SUBPROCESS, str(tmp_path / f"t{n}"), str(n), json.dumps(spec)],
                             env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        out[n] = json.loads(res.stdout.strip().splitlines()[-1])
        assert out[n] == {"threads_after": n, "in_run": 1}
    a, b = snapshot_bytes(tmp_path / "t1", spec), snapshot_bytes(tmp_path / "t2", spec)
    assert sorted(a) == [0, 1, 2] and a == b


def test_same_snapshots_serial_and_through_a_2_worker_pool(tmp_path):
    specs = [("LeNet", tiny_spec(epochs=2, seed=s, lr=lr)) for s, lr in [(0, 0.05), (1, 0.01), (2, 0.1)]]
    serial = populations.train_specs(tmp_path / "w1", specs, workers=1)
    pooled = populations.train_specs(tmp_path / "w2", specs, workers=2)
    for _, spec in specs:
        assert snapshot_bytes(tmp_path / "w1", spec) == snapshot_bytes(tmp_path / "w2", spec)
    cols = [c for c in populations.RUN_COLUMNS if "seconds" not in c]
    pd.testing.assert_frame_equal(serial[cols], pooled[cols])
    assert set(serial["device"]) == {"cpu"} and set(serial["precision"]) == {"float32"}


def test_workers_0_trains_with_the_profiles_workers(monkeypatch, tmp_path):
    seen = {}

    def fake_train_specs(root, specs, **kw):
        seen.update(kw)
        return pd.DataFrame(columns=populations.RUN_COLUMNS)

    monkeypatch.setattr(populations, "train_specs", fake_train_specs)
    monkeypatch.setattr(paths, "RESULTS", tmp_path / "results")
    profile = get_profile("smoke", workers=0)
    populations.train_profile(profile)
    assert seen["workers"] == get_profile("smoke").workers >= 1


def test_bf16_is_opt_in_and_part_of_the_key(tmp_path):
    f32 = train.train_run(tmp_path, tiny_spec(epochs=1))
    bf16 = train.train_run(tmp_path, tiny_spec(epochs=1, precision="bf16"))
    assert f32["key"] != bf16["key"] and bf16["precision"] == "bf16"
    a = RunStore(tmp_path).get(f32["key"]).load_snapshot(1)
    b = RunStore(tmp_path).get(bf16["key"]).load_snapshot(1)
    assert all(v.dtype == a[k].dtype for k, v in b.items())  # weights stay float32
    assert any(not torch.equal(a[k], b[k]) for k in a)  # autocast changes the arithmetic


# --------------------------------------------------------------------------- damaged snapshots
def test_corrupt_then_missing_snapshot_is_retrained_bit_identical(tmp_path):
    specs = [("LeNet", tiny_spec(epochs=3))]
    spec = specs[0][1]
    populations.train_specs(tmp_path, specs, workers=1)
    original = snapshot_bytes(tmp_path, spec)
    run = RunStore(tmp_path).run(spec)
    (run.dir / "centrality.npz").write_bytes(b"derived from the old snapshots")
    snap = run.snapshot_path(2)
    snap.write_bytes(snap.read_bytes()[:-10] + b"0123456789")  # same size, other bytes: only the hash sees it
    assert train.check_run(run, checksums=False) == []
    assert any("SHA-256" in p for p in train.check_run(run))
    with pytest.warns(UserWarning, match="snap_002.pt"):
        populations.train_specs(tmp_path, specs, workers=1)
    assert snapshot_bytes(tmp_path, spec) == original
    assert not (run.dir / "centrality.npz").exists()  # caches of the damaged run are dropped
    run.snapshot_path(1).unlink()
    with pytest.warns(UserWarning, match="snap_001.pt: missing"):
        df = populations.train_specs(tmp_path, specs, workers=1)
    assert snapshot_bytes(tmp_path, spec) == original and df.loc[0, "status"] == "finished"
    snap.write_bytes(snap.read_bytes()[:100])  # truncated: found from the size alone
    with pytest.warns(UserWarning, match="bytes"):
        populations.train_specs(tmp_path, specs, workers=1, checksums=False)
    assert snapshot_bytes(tmp_path, spec) == original


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_store_files_follow_the_umask(tmp_path, monkeypatch, umask, mode):
    import os
    import stat

    from paperlib.files import atomic

    monkeypatch.setattr(atomic, "_UMASK", None)
    old = os.umask(umask)
    try:
        meta = train.train_run(tmp_path, tiny_spec(epochs=1))
    finally:
        os.umask(old)
        atomic._UMASK = None
    run = RunStore(tmp_path).get(meta["key"])
    for path in [run.snapshot_path(0), run.snapshot_path(1), run.meta_path, run.dir / "spec.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


# --------------------------------------------------------------------------- CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_run_is_deterministic_and_recorded(tmp_path):
    spec = tiny_spec(device="cuda", model="resnet_cifar", model_kwargs={"depth": 8, "width": 0.5}, epochs=2)
    a = train.train_run(tmp_path / "a", spec)
    b = train.train_run(tmp_path / "b", spec)
    assert a["device"] == "cuda" and a["device_name"] == torch.cuda.get_device_name()
    assert snapshot_bytes(tmp_path / "a", spec) == snapshot_bytes(tmp_path / "b", spec)
    cpu = train.train_run(tmp_path / "a", {**spec, "device": "cpu"})
    assert cpu["key"] != a["key"]
