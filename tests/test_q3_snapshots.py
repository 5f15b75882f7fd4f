"""The committed Q3 snapshots: exported from a run store, read back without one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from paperlib import files, paths
from paperlib.evaluate import timing
from paperlib.profiles import get_profile
from paperlib.train.store import CorruptFileError, RunStore

P = get_profile("smoke")
POP = P.population("LeNet")


def _spec(seed: int) -> dict:
    return {"dataset": POP.dataset, "model": POP.model, "model_kwargs": dict(POP.model_kwargs),
            "image_size": P.image_size[POP.dataset], "dropout": 0.0, "seed": seed, "lr": 0.1, "optimizer": "sgd"}


@pytest.fixture
def store(tmp_results):
    """Two finished LeNet runs with snapshots 0..3 (weights: the initial ones plus the epoch)."""
    from paperlib.train import trainer as train

    make = getattr(train, "make_model", None) or train._make_model
    rows = []
    for seed in (0, 1):
        spec = _spec(seed)
        run = RunStore(paths.runs_dir(P.name)).run(spec)
        torch.manual_seed(seed)
        base = make(spec).state_dict()
        for epoch in range(4):
            run.save_snapshot(epoch, {k: v + epoch if v.is_floating_point() else v for k, v in base.items()})
        run.write_meta({"status": "finished"})
        rows.append({"key": run.key, "arch": POP.arch, "dataset": POP.dataset, "status": "finished",
                     "diverged": False})
    return pd.DataFrame(rows)


def test_export_then_load_without_the_store(store):
    path = timing.export_q3_snapshot(P, POP, store, epoch=2)
    assert path == paths.q3_snapshots_dir("smoke") / "LeNet.pt"
    first = sorted(store["key"])[0]
    expected = RunStore(paths.runs_dir("smoke")).get(first).load_snapshot(2)
    import shutil

    shutil.rmtree(paths.store_dir("smoke"))
    model, key, epoch = timing.load_q3_snapshot(P, POP)
    assert (key, epoch) == (first, 2)
    got = model.state_dict()
    assert set(got) == set(expected)
    for k in expected:
        assert got[k].dtype == expected[k].dtype
        np.testing.assert_array_equal(got[k].numpy(), expected[k].numpy())
    assert not model.training


def test_the_snapshot_is_the_last_at_or_before_the_epoch(store):
    timing.export_q3_snapshot(P, POP, store, epoch=10)
    assert timing.load_q3_snapshot(P, POP)[2] == 3


def test_export_leaves_an_unchanged_file_untouched(store):
    path = timing.export_q3_snapshot(P, POP, store, epoch=2)
    stat = path.stat()
    timing.export_q3_snapshot(P, POP, store, epoch=2)
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    blob = path.read_bytes()
    timing.export_q3_snapshot(P, POP, store, epoch=1)
    assert path.read_bytes() != blob


def test_a_snapshot_of_another_architecture_is_refused(store):
    path = timing.export_q3_snapshot(P, POP, store, epoch=2)
    wider = P.population("LeNet-x2")
    path.rename(files.q3_snapshot_path("smoke", wider.arch))
    with pytest.raises(ValueError, match="LeNet-x2.pt"):
        timing.load_q3_snapshot(P, wider)


def test_missing_or_corrupt_snapshot_names_the_file(tmp_results):
    with pytest.raises(FileNotFoundError, match="06_q3"):
        timing.load_q3_snapshot(P, POP)
    path = paths.ensure(paths.q3_snapshots_dir("smoke")) / "LeNet.pt"
    path.write_bytes(b"not a snapshot")
    with pytest.raises(CorruptFileError, match="LeNet.pt"):
        timing.load_q3_snapshot(P, POP)


def test_q3_row_times_the_committed_snapshot_without_a_store(store):
    timing.export_q3_snapshot(P, POP, store, epoch=2)
    import shutil

    shutil.rmtree(paths.store_dir("smoke"))
    runs = store.assign(epoch_seconds=[1.0, 3.0], early_stop_epoch=[4, 4])
    row = timing.q3_row(P, POP, runs, q1=None, cent=None, repeats=1, explicit=False, max_seconds=0.5)
    assert row["snapshot_run"] == sorted(store["key"])[0] and row["snapshot_epoch"] == 2
    assert row["rolled_snapshot_seconds"] > 0 and row["train_to_early_stop_seconds"] == pytest.approx(8.0)
