"""Your own runs: one folder per run, per-epoch state_dicts, a table of test accuracies, the hyperparameters.

The layout (``source = "runs"`` in a profile file; docs/own-runs.md states it for users)::

    <path>/
      <run>/                    one folder per network, any name (sorted by name)
        run.json                {"model": "lenet" | "resnet18" | "package.module:function",
                                 "model_kwargs": {...},
                                 "hparams": {"lr": 0.01, "dropout": 0.0, "seed": 0, "optimizer": "sgd", ...}}
        metrics.csv             columns epoch, test_acc (percent), optional train_loss, seconds
        epoch_0.pt, epoch_1.pt  one PyTorch state_dict per epoch (torch.save(model.state_dict())),
        ...                     any zero-padding (epoch_007.pt); epoch 0 is the initialisation, optional

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

import pandas as pd

from .. import files
from .core import MissingAccuracyError, RunRecord, RunRef, SourceError, load_state_dict_file
from ..profile_files import ImportedPopulation

WEIGHTS = re.compile(r"^epoch_(\d+)\.pt$")


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
                                       "expected epoch, test_acc (percent) and optionally train_loss, seconds")
    if df.empty:
        raise MissingAccuracyError(table, ref.name, "has no rows; expected one row per epoch")
    epochs = pd.to_numeric(df["epoch"], errors="coerce")
    if epochs.isna().any() or epochs.duplicated().any():
        raise SourceError(table, ref.name, "column epoch must hold distinct integers")
    acc = {int(e): float(a) for e, a in zip(epochs, pd.to_numeric(df["test_acc"], errors="coerce"))}
    loss = ({int(e): float(v) for e, v in zip(epochs, pd.to_numeric(df["train_loss"], errors="coerce"))}
            if "train_loss" in df else {})
    secs = ({int(e): float(v) for e, v in zip(epochs, pd.to_numeric(df["seconds"], errors="coerce"))
             if math.isfinite(float(v))} if "seconds" in df else {})
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
