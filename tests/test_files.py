"""The files between steps: one module reads and writes them, atomically, with their promised columns
and one parser per column; a missing one names the notebook that writes it."""

from __future__ import annotations

import ast
import doctest
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import paperlib
from paperlib import files, paths


@pytest.fixture()
def results(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(paths, "results_dir", lambda name: tmp_path / name)
    return tmp_path


def _runs(n: int = 4) -> pd.DataFrame:
    df = pd.DataFrame({c: [0] * n for c in files.RUN_COLUMNS})
    df["key"] = [f"k{i}" for i in range(n)]
    df["status"] = ["finished", "diverged", "finished", "finished"][:n]
    df["diverged"] = [False, True, True, False][:n]
    return df


def test_doctests():
    assert doctest.testmod(files).failed == 0


def test_diverged_is_read_one_way_everywhere(results):
    files.write_table("p", "runs.csv", _runs())
    runs = files.read_runs("p")
    assert runs["diverged"].dtype == bool and runs["diverged"].tolist() == [False, True, True, False]
    from paperlib.evaluate import timing
    from paperlib.features import population

    assert population._diverged_column(runs).tolist() == [False, True, True, False]
    assert timing._is_diverged(runs).tolist() == [False, True, True, False]


def test_missing_runs_table_names_01_train(results):
    with pytest.raises(FileNotFoundError, match=r"runs\.csv.*01_train"):
        files.read_runs("nothing-here")


@pytest.mark.parametrize("name, step", [("q1.csv", "04_q1"), ("q2.csv", "05_q2"), ("q3.csv", "06_q3"),
                                        ("features.csv", "03_features"), ("centralities.csv", "02_graph"),
                                        ("table2.csv", "04_q1"), ("early_stopping.csv", "07_early_stopping")])
def test_a_missing_file_names_the_notebook_that_writes_it(results, name, step):
    with pytest.raises(FileNotFoundError, match=rf"{name}.*{step}"):
        files.read_table("p", name)


def test_every_table_is_an_output_of_a_declared_step():
    from paperlib.steps import STEPS

    outputs = {o for s in STEPS for o in s.outputs}
    assert {f"results/{{profile}}/{name}" for name in files.TABLES} <= outputs


def test_writer_refuses_a_frame_without_a_promised_column_and_writes_nothing(results):
    df = _runs().drop(columns="final_acc")
    with pytest.raises(ValueError, match=r"runs\.csv.*final_acc"):
        files.write_table("p", "runs.csv", df)
    assert not (results / "p" / "runs.csv").exists()


def test_writer_puts_the_promised_columns_in_order(results):
    df = _runs()
    df = df[list(reversed(df.columns))].assign(extra=1)
    files.write_table("p", "runs.csv", df)
    timed = ["train_seconds", "epoch_seconds"]
    assert list(pd.read_csv(results / "p" / "runs.csv").columns) == [c for c in files.RUN_COLUMNS if c not in timed]
    assert list(pd.read_csv(results / "p" / "timings" / "runs.csv").columns) == ["key", *timed]


def test_seconds_live_apart_and_a_rerun_with_other_timings_writes_the_same_table(results):
    df = _runs()
    files.write_table("p", "runs.csv", df)
    first = (results / "p" / "runs.csv").read_bytes()
    files.write_table("p", "runs.csv", df.assign(train_seconds=df["train_seconds"] * 7 + 1, epoch_seconds=3.25))
    assert (results / "p" / "runs.csv").read_bytes() == first, "seconds leaked into the table"
    back = files.read_table("p", "runs.csv")
    assert list(back.columns) == files.RUN_COLUMNS
    assert (back["epoch_seconds"] == 3.25).all() and back["key"].tolist() == df["key"].tolist()
    (results / "p" / "timings" / "runs.csv").unlink()  # a fresh table without timings: NaN, not an error
    assert files.read_table("p", "runs.csv")["train_seconds"].isna().all()


def test_centralities_move_every_measured_column(results):
    df = pd.DataFrame({"key": ["a", "b"], "arch": ["X", "X"], "n_snapshots": [3, 3], "rolled_seconds": [0.1, 0.2],
                       "unrolled_seconds": [0.3, 0.4], "rolled_nodes": [10, 10], "rolled_cached": [True, False],
                       "trace_seconds": [0.5, 0.0]})
    files.write_table("p", "centralities.csv", df)
    kept = pd.read_csv(results / "p" / "centralities.csv")
    assert list(kept.columns) == ["key", "arch", "n_snapshots", "rolled_nodes"]
    back = files.read_table("p", "centralities.csv")
    assert back["rolled_cached"].tolist() == [True, False] and back["trace_seconds"].tolist() == [0.5, 0.0]


def test_reader_refuses_a_file_without_a_promised_column(results):
    (results / "p").mkdir()
    _runs().drop(columns="status").to_csv(results / "p" / "runs.csv", index=False)
    with pytest.raises(ValueError, match=r"runs\.csv.*status.*01_train"):
        files.read_runs("p")


def test_a_truncated_table_is_a_corrupt_file_not_an_empty_result(results):
    (results / "p").mkdir()
    (results / "p" / "q1.csv").write_bytes(b"")
    with pytest.raises(files.CorruptFileError, match=r"q1\.csv.*04_q1"):
        files.read_table("p", "q1.csv")


def test_booleans_and_texts_have_one_parser(results):
    t2 = pd.DataFrame({c: [1.0, 2.0] for c in files.TABLE2_COLUMNS})
    t2["best"] = [True, False]
    t2["same_dataset"] = [False, False]
    t2["paper_note"] = ["OOM", ""]
    t2["paper_dataset"] = ["", "CIFAR-10"]
    files.write_table("p", "table2.csv", t2)
    back = files.read_table("p", "table2.csv")
    assert back["best"].tolist() == [True, False] and back["best"].dtype == bool
    assert back["paper_note"].tolist() == ["OOM", ""] and back["paper_dataset"].tolist() == ["", "CIFAR-10"]


def test_writes_are_atomic_and_group_readable(results, monkeypatch):
    files.write_table("p", "runs.csv", _runs())
    path = results / "p" / "runs.csv"
    before = path.read_bytes()
    old = os.umask(0o022)
    try:
        files.atomic_write_text(results / "p" / "x.txt", "x")
        assert stat.S_IMODE((results / "p" / "x.txt").stat().st_mode) == 0o644
    finally:
        os.umask(old)

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        files.write_table("p", "runs.csv", _runs(3))
    assert path.read_bytes() == before  # the old file is whole
    assert sorted(p.name for p in (results / "p").iterdir()) == ["runs.csv", "timings", "x.txt"]  # no temporary left
    assert [p.name for p in (results / "p" / "timings").iterdir()] == ["runs.csv"]


def test_features_round_trip_and_refuse_an_older_format(tmp_path):
    fields = {k: np.array(1) for k in files.FEATURES_FORMAT_KEYS}
    fields["keys"] = np.array(["a", "b"])
    w32 = np.array([[0.5, 0.25]], dtype=np.float32).astype(np.float64)  # exactly float32: stored as float32
    w64 = np.array([[0.1, 1 / 3]])
    files.write_features(tmp_path / "f.npz", fields, {"B_Wl": w32, "deg": w64})
    back, arrays = files.read_features(tmp_path / "f.npz")
    assert back["keys"].tolist() == ["a", "b"]
    assert arrays["B_Wl"].dtype == np.float64 and np.array_equal(arrays["B_Wl"], w32)
    assert np.array_equal(arrays["deg"], w64)
    files.save_npz(tmp_path / "old.npz", keys=np.array(["a"]))
    with pytest.raises(ValueError, match=r"old\.npz.*older version.*03_features"):
        files.read_features(tmp_path / "old.npz")
    with pytest.raises(FileNotFoundError, match="03_features"):
        files.read_features(tmp_path / "none.npz")


def test_no_other_module_parses_or_writes_the_files_between_steps():
    """The files of :data:`paperlib.files.TABLES` are named in code only by ``files`` (and the
    pipeline's declaration of outputs); CSVs are read and written nowhere else."""
    pkg = Path(paperlib.__file__).parent
    offenders = []
    for py in sorted(pkg.rglob("*.py")):
        if py.relative_to(pkg).parts[0] in {"files.py", "files", "pipeline", "steps.py"}:
            continue
        tree = ast.parse(py.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"to_csv", "read_csv", "savez", "savez_compressed"}:
                offenders.append(f"{py.relative_to(pkg)}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in {"write_text", "write_bytes"}:
                offenders.append(f"{py.relative_to(pkg)}:{node.lineno} .{node.func.attr}")
    assert offenders == []
