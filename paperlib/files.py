"""Reading the run table that passes between steps, with one rule per column.

``results/<profile>/runs.csv`` is written by the training step (:func:`paperlib.train.train_profile`)
and read by the graph, feature, table, timing and early-stopping steps. They all read it here, so
each column has one parser:

* ``diverged``: a run diverged when its ``diverged`` column is true (``True``/``1``, as CSV writes
  booleans) or its ``status`` is ``"diverged"``; :func:`diverged`.
* booleans written to CSV by any step are read by :func:`parse_bool`.

A missing table is an error that names the file and the step that makes it.
"""

from __future__ import annotations

import pandas as pd

from . import paths


def parse_bool(col: pd.Series) -> pd.Series:
    """A boolean column as written to CSV (``True``/``False``, ``1``/``0``) as booleans.

    Examples
    --------
    >>> parse_bool(pd.Series(["True", "false", "1", "0", "1.0"])).tolist()
    [True, False, True, False, True]
    """
    return col.astype(str).str.strip().str.lower().isin({"true", "1", "1.0"})


def diverged(runs: pd.DataFrame) -> pd.Series:
    """Whether each run diverged: its ``diverged`` flag or its ``status`` says so.

    Examples
    --------
    >>> diverged(pd.DataFrame({"status": ["finished", "diverged"], "diverged": ["False", "True"]})).tolist()
    [False, True]
    """
    flag = parse_bool(runs["diverged"]) if "diverged" in runs else pd.Series(False, index=runs.index)
    status = runs["status"] == "diverged" if "status" in runs else pd.Series(False, index=runs.index)
    return flag | status


def runs_path(profile: str):
    """``results/<profile>/runs.csv``."""
    return paths.results_dir(profile) / "runs.csv"


def read_runs(profile: str) -> pd.DataFrame:
    """``results/<profile>/runs.csv`` with its ``diverged`` column parsed (:func:`diverged`)."""
    path = runs_path(profile)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no runs table; run the training notebook (01_train) first")
    runs = pd.read_csv(path)
    runs["diverged"] = diverged(runs)
    return runs
