"""Your own runs: one folder per run, per-epoch state_dicts, a table of test accuracies, the hyperparameters.

The layout (``source = "runs"`` in a profile file; docs/own-runs.md states it for users)::

    <path>/
      <run>/                    one folder per network, any name (sorted by name)
        run.json                {"model": "lenet" | "resnet18" | "package.module:function",
                                 "model_kwargs": {...},
                                 "hparams": {"lr": 0.01, "dropout": 0.0, "seed": 0, "optimizer": "sgd", ...}}
        metrics.csv             one row per epoch, columns below
        epoch_0.pt, epoch_1.pt  one PyTorch state_dict per epoch (torch.save(model.state_dict())),
        ...                     any zero-padding (epoch_007.pt); epoch 0 is the initialisation, optional

``metrics.csv`` columns (other columns are ignored):

=================== ========= ==============================================================
``epoch``           integer   0 is the untrained network (optional row), 1 the first trained epoch
``test_acc``        percent   test accuracy after that epoch (0-100, not a fraction)
``train_loss``      -         optional: mean training loss of that epoch
``seconds``         seconds   optional: wall time of that epoch alone (per epoch, not a running total)
``epoch_seconds``   seconds   the same, under a name that cannot be mistaken (not checked)
``elapsed_seconds`` seconds   optional, instead: time since training started, at the end of that epoch
                              (cumulative, as many loggers write); differenced into per-epoch seconds
=================== ========= ==============================================================

Q3 (06_q3) sums per-epoch seconds into a run's training time, so a running total under the name
``seconds`` would count early epochs many times over. Two time columns at once, and a ``seconds``
column that rises with every epoch like a running total (at least three trained epochs, strictly
increasing, the last at least ``0.75 * n`` times the first after ``n`` epochs) are refused with
an error naming the file; rename the column ``elapsed_seconds`` (running total) or
``epoch_seconds`` (per epoch) to say which it is.

Weights are read with ``torch.load(weights_only=True)``. ``model`` and ``model_kwargs`` of every run
must be those of the population (the profile's, or the first run's when the profile names none);
a run that differs is skipped with a message naming its ``run.json``. The last row of
``metrics.csv`` is the run's final epoch, and its ``test_acc`` the final accuracy.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .. import files
from .core import MissingAccuracyError, RunRecord, RunRef, SourceError, load_state_dict_file
from ..profile_files import ImportedPopulation

WEIGHTS = re.compile(r"^epoch_(\d+)\.pt$")


PER_EPOCH, CUMULATIVE = ("seconds", "epoch_seconds"), ("elapsed_seconds",)


def epoch_seconds(df: pd.DataFrame, epochs: pd.Series, table: Path, run: str) -> dict[int, float]:
    """Per-epoch wall time (seconds) by epoch from ``metrics.csv`` (see the module docstring); empty without
    a time column.

    Examples
    --------
    >>> df = pd.DataFrame({"epoch": [0, 1, 2, 3], "elapsed_seconds": [0.5, 4.5, 8.0, 12.5]})
    >>> epoch_seconds(df, df["epoch"], Path("metrics.csv"), "r")
    {0: 0.5, 1: 4.0, 2: 3.5, 3: 4.5}
    """
    cols = [c for c in (*PER_EPOCH, *CUMULATIVE) if c in df.columns]
    if not cols:
        return {}
    if len(cols) > 1:
        raise SourceError(table, run, f"has two time columns {cols}; keep one: seconds or epoch_seconds (each "
                          "epoch's own time) or elapsed_seconds (time since training started)")
    col = cols[0]
    order = np.argsort(epochs.to_numpy(), kind="stable")
    e = epochs.to_numpy()[order].astype(int)
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)[order]
    if col in CUMULATIVE:
        finite = np.isfinite(v)
        if (np.diff(v[finite]) < 0).any():
            raise SourceError(table, run, f"column {col} falls between epochs; expected the time since training "
                              "started, at the end of each epoch (non-decreasing)")
        prev, out = 0.0, {}
        for ei, vi in zip(e, v):
            if math.isfinite(vi):
                out[int(ei)], prev = float(vi - prev), float(vi)
        return out
    trained = v[(e > 0) & np.isfinite(v)]
    n = len(trained)
    if col == "seconds" and n >= 3 and (np.diff(trained) > 0).all() and trained[0] > 0 \
            and trained[-1] >= 0.75 * n * trained[0]:
        raise SourceError(table, run, f"column seconds rises with every epoch like a running total ({trained[0]:g} s "
                          f"after the first trained epoch, {trained[-1]:g} s after the last of {n}); seconds must be "
                          "each epoch's own time. Rename it elapsed_seconds if it is the time since training "
                          "started (the import differences it), or epoch_seconds if these are per-epoch times")
    return {int(ei): float(vi) for ei, vi in zip(e, v) if math.isfinite(vi)}


def list_runs(ip: ImportedPopulation) -> list[RunRef]:
    """Every run folder under ``ip.path`` that has a ``run.json``, sorted by name, with its hyperparameters."""
    if not ip.path.is_dir():
        raise SourceError(ip.path, None, "no such folder; expected one folder per run (docs/own-runs.md: Your own runs)")
    refs = []
    for folder in sorted(p for p in ip.path.iterdir() if p.is_dir()):
        meta_file = folder / "run.json"
        if not meta_file.is_file():
            continue
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            meta = {}
        wfiles = (meta_file, folder / "metrics.csv", *sorted(folder.glob("epoch_*.pt")))
        refs.append(RunRef(folder.name, folder, tuple(p for p in wfiles if p.exists()),
                           hparams=dict(meta.get("hparams", {})) if isinstance(meta, dict) else {}))
    return refs


def read_run(ref: RunRef, ip: ImportedPopulation) -> RunRecord:
    folder: Path = ref.location
    meta_file = folder / "run.json"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as exc:
        raise SourceError(meta_file, ref.name, f"not readable JSON ({exc}); expected "
                          '{"model": ..., "model_kwargs": {...}, "hparams": {...}}') from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("hparams", {}), dict):
        raise SourceError(meta_file, ref.name, 'expected an object {"model", "model_kwargs", "hparams"}')
    model, kwargs = meta.get("model", ip.model), dict(meta.get("model_kwargs", ip.model_kwargs))
    if (model, kwargs) != (ip.model, dict(ip.model_kwargs)):
        raise SourceError(meta_file, ref.name, f"model {model!r} {kwargs} differs from population {ip.arch!r}'s "
                          f"{ip.model!r} {ip.model_kwargs}; put runs of other architectures in another population")
    table = folder / "metrics.csv"
    try:
        df = files.read_source_csv(table)
    except (OSError, ValueError) as exc:
        raise MissingAccuracyError(table, ref.name, f"no readable table of test accuracies ({type(exc).__name__}); "
                                   "expected a CSV with columns epoch, test_acc (percent)") from exc
    for col in ("epoch", "test_acc"):
        if col not in df.columns:
            raise MissingAccuracyError(table, ref.name, f"has no column {col!r} (columns: {list(df.columns)}); "
                                       "expected epoch, test_acc (percent) and optionally train_loss and seconds "
                                       "(per epoch) or elapsed_seconds (running total)")
    if df.empty:
        raise MissingAccuracyError(table, ref.name, "has no rows; expected one row per epoch")
    epochs = pd.to_numeric(df["epoch"], errors="coerce")
    if epochs.isna().any() or epochs.duplicated().any():
        raise SourceError(table, ref.name, "column epoch must hold distinct integers")
    acc = {int(e): float(a) for e, a in zip(epochs, pd.to_numeric(df["test_acc"], errors="coerce"))}
    loss = ({int(e): float(v) for e, v in zip(epochs, pd.to_numeric(df["train_loss"], errors="coerce"))}
            if "train_loss" in df else {})
    secs = epoch_seconds(df, epochs, table, ref.name)
    weights, wfiles = {}, {}
    for path in sorted(folder.iterdir()):
        m = WEIGHTS.match(path.name)
        if m:
            e = int(m.group(1))
            if e in weights:
                raise SourceError(path, ref.name, f"a second weights file of epoch {e} ({wfiles[e]})", e)
            weights[e] = (lambda p=path, e=e: load_state_dict_file(p, ref.name, e))
            wfiles[e] = str(path)
    if not weights:
        raise SourceError(folder, ref.name, "holds no weights file; expected epoch_<e>.pt (one state_dict per epoch)")
    return RunRecord(name=ref.name, hparams=dict(meta.get("hparams", {})), accuracy=acc, weights=weights,
                     weight_files=wfiles, final_epoch=int(epochs.iloc[-1]), loss=loss, seconds=secs,
                     accuracy_file=str(table))
