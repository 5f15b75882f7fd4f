"""The run table between steps: one parser per column, a missing table names the step that makes it."""

from __future__ import annotations

import doctest

import pandas as pd
import pytest

from paperlib import files, paths


def test_doctests():
    assert doctest.testmod(files).failed == 0


def test_diverged_is_read_one_way_everywhere(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "results_dir", lambda name: tmp_path / name)
    (tmp_path / "p").mkdir()
    pd.DataFrame({"key": ["a", "b", "c", "d"], "status": ["finished", "diverged", "finished", "finished"],
                  "diverged": [False, True, True, False]}).to_csv(tmp_path / "p" / "runs.csv", index=False)
    runs = files.read_runs("p")
    assert runs["diverged"].dtype == bool and runs["diverged"].tolist() == [False, True, True, False]
    from paperlib import features, tables, timing

    assert features._diverged_column(runs).tolist() == [False, True, True, False]
    assert timing._is_diverged(runs).tolist() == [False, True, True, False]
    assert tables.parse_bool is files.parse_bool


def test_missing_runs_table_names_01_train(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "results_dir", lambda name: tmp_path / name)
    with pytest.raises(FileNotFoundError, match=r"runs\.csv.*01_train"):
        files.read_runs("nothing-here")
