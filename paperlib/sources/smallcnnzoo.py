"""The Small CNN Zoo (Unterthiner et al., 2020): ``weights.npy``, ``metrics.csv.gz``, ``layout.csv``.

``source = "smallcnnzoo"`` in a profile file; ``path`` is the folder of one dataset's archive.

``weights.npy``
    one row of parameters per checkpoint (4,970 for the zoo's network). Several GB: it is opened
    memory-mapped (``np.load(mmap_mode="r")``) and only the rows of the network being imported are
    read, the epochs of the horizon only. Rows are never reshaped into (networks, epochs, ...):
    rows are missing where runs crashed.
``metrics.csv.gz``
    row i describes row i of ``weights.npy``: ``modeldir`` (one network), ``step`` (the epoch of the
    checkpoint: 0, 1, 2, 3, 20, 40, 60, 80, 86), ``test_accuracy`` (a fraction; ``test_acc`` is
    accepted too), ``train_loss`` where present and ``config.*`` hyperparameters. Rows are grouped by
    ``modeldir`` and sorted by ``step``; the last step is the final epoch.
``layout.csv``
    ``varname, start_idx, end_idx, shape``: where each variable lies in a row, in TensorFlow layouts
    (conv kernels HWIO, dense kernels (in, out)); in each layer the bias comes before the kernel. The
    ranges must tile the row exactly (else :class:`~paperlib.sources.core.LayoutError`). Kernels
    are mapped in order onto the convolutions and the dense layer of the model (``conv1``..``conv3``,
    ``dense`` of :class:`paperlib.train.zoo.SmallCNN`) and transposed to PyTorch's layouts
    (OIHW: ``(3, 2, 0, 1)``; linear: ``(out, in)``).

Hyperparameters: ``config.learning_rate``, ``config.dropout``, ``config.optimizer`` are lr, dropout and
optimizer; the zoo has no seed column (seed -1); every other ``config.*`` column (activation, w_init,
init_std, l2reg, ...) is part of the configuration. ``where`` filters on the column names as
written (``{"config.activation" = "relu"}``).
"""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import files
from .core import LayoutError, MissingAccuracyError, RunRecord, RunRef, SourceError
from ..profile_files import ImportedPopulation

FILES = ("weights.npy", "metrics.csv.gz", "layout.csv")
MAP = {"config.learning_rate": "lr", "config.dropout": "dropout", "config.optimizer": "optimizer"}
_CACHE: dict[Path, tuple[np.ndarray, pd.DataFrame, list[tuple[str, int, int, tuple[int, ...]]]]] = {}


def _shape(text: Any, file: Path) -> tuple[int, ...]:
    try:
        value = ast.literal_eval(str(text).strip())
    except (ValueError, SyntaxError):
        value = [int(v) for v in str(text).strip("()[] ").replace(",", " ").split()]
    value = (value,) if isinstance(value, int) else tuple(int(v) for v in value)
    if not value:
        raise LayoutError(file, None, f"shape {text!r} is not a tuple of integers")
    return value


def read_layout(path: Path, row_length: int) -> list[tuple[str, int, int, tuple[int, ...]]]:
    """``(varname, start, end, shape)`` sorted by start; the ranges must tile ``0..row_length`` exactly."""
    try:
        df = files.read_source_csv(path)
    except (OSError, ValueError) as exc:
        raise LayoutError(path, None, f"not a readable CSV ({exc})") from exc
    cols = ("varname", "start_idx", "end_idx", "shape")
    if any(c not in df.columns for c in cols):
        raise LayoutError(path, None, f"expected columns {list(cols)}, found {list(df.columns)}")
    rows = sorted(((str(r.varname), int(r.start_idx), int(r.end_idx), _shape(r.shape, path))
                   for r in df.itertuples(index=False)), key=lambda r: r[1])
    at = 0
    for name, start, end, shape in rows:
        if start != at:
            raise LayoutError(path, None, f"{name} starts at {start}, expected {at} (gaps or overlaps)")
        if end - start != int(np.prod(shape)):
            raise LayoutError(path, None, f"{name}: {end - start} values for shape {shape} ({int(np.prod(shape))})")
        at = end
    if at != row_length:
        raise LayoutError(path, None, f"the variables add up to {at} values, but each row of weights.npy has "
                          f"{row_length}; expected layout.csv of the same archive")
    return rows


def _open(folder: Path) -> tuple[np.ndarray, pd.DataFrame, list[tuple[str, int, int, tuple[int, ...]]]]:
    folder = Path(folder)
    if folder in _CACHE:
        return _CACHE[folder]
    for name in FILES:
        if not (folder / name).is_file():
            raise SourceError(folder / name, None, "missing; expected weights.npy, metrics.csv.gz and layout.csv "
                              "of one archive of the Small CNN Zoo")
    try:
        weights = np.load(folder / "weights.npy", mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise SourceError(folder / "weights.npy", None, f"not a readable .npy file ({exc})") from exc
    if weights.ndim != 2:
        raise LayoutError(folder / "weights.npy", None, f"shape {weights.shape}; expected (checkpoints, parameters)")
    metrics = files.read_source_csv(folder / "metrics.csv.gz")
    acc_col = "test_accuracy" if "test_accuracy" in metrics else "test_acc" if "test_acc" in metrics else None
    if acc_col is None:
        raise MissingAccuracyError(folder / "metrics.csv.gz", None, "has no column test_accuracy (or test_acc); "
                                   f"columns: {list(metrics.columns)[:10]}...")
    for col in ("modeldir", "step"):
        if col not in metrics:
            raise SourceError(folder / "metrics.csv.gz", None, f"has no column {col!r}")
    if len(metrics) != weights.shape[0]:
        raise LayoutError(folder / "metrics.csv.gz", None, f"{len(metrics)} rows, but weights.npy has "
                          f"{weights.shape[0]}: row i must describe row i")
    metrics = metrics.rename(columns={acc_col: "_acc"})
    layout = read_layout(folder / "layout.csv", weights.shape[1])
    _CACHE.clear()
    _CACHE[folder] = (weights, metrics, layout)
    return _CACHE[folder]


def _hparams(row: pd.Series) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if not str(k).startswith("config."):
            continue
        v = v.item() if hasattr(v, "item") else v
        if isinstance(v, float) and math.isnan(v):
            continue
        out[MAP.get(k, str(k)[len("config."):])] = v
    return out


def list_runs(ip: ImportedPopulation) -> list[RunRef]:
    """One :class:`RunRef` per ``modeldir``: its row numbers sorted by ``step``, its ``config.*`` values
    (one sort and one grouping of the whole table, so listing 30,000 networks takes seconds)."""
    weights, metrics, _ = _open(ip.path)
    wfiles = tuple(ip.path / f for f in FILES)
    config_cols = [c for c in metrics.columns if str(c).startswith("config.")]
    ordered = metrics.sort_values(["modeldir", "step"], kind="stable")
    rows_of = ordered.groupby("modeldir", sort=True).indices  # name -> positions in ``ordered``
    index = ordered.index.to_numpy()
    firsts = ordered.drop_duplicates("modeldir").set_index("modeldir")[config_cols]
    configs = firsts.astype(object).where(firsts.notna(), None).to_dict("index")
    return [RunRef(str(name), index[pos], wfiles, hparams=configs[name]) for name, pos in rows_of.items()]


def to_state_dict(row: np.ndarray, layout: list[tuple[str, int, int, tuple[int, ...]]], file: Path, run: str,
                  epoch: int) -> dict[str, torch.Tensor]:
    """One row as the state_dict of :class:`~paperlib.train.zoo.SmallCNN` (TensorFlow to PyTorch layouts)."""
    kernels = [(n, s, e, sh) for n, s, e, sh in layout if "bias" not in n.lower()]
    biases = [(n, s, e, sh) for n, s, e, sh in layout if "bias" in n.lower()]
    names = ["conv1", "conv2", "conv3", "dense"]
    if len(kernels) != len(names) or len(biases) != len(names):
        raise LayoutError(file, run, f"{len(kernels)} kernels and {len(biases)} biases; the network has "
                          f"{len(names)} layers with one of each", epoch)
    out: dict[str, torch.Tensor] = {}
    for name, (kn, ks, ke, ksh), (bn, bs, be, bsh) in zip(names, kernels, biases):
        k = np.asarray(row[ks:ke], dtype=np.float32).reshape(ksh)
        if len(ksh) == 4:
            k = k.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        elif len(ksh) == 2:
            k = k.T  # (in, out) -> (out, in)
        else:
            raise LayoutError(file, run, f"{kn}: kernel of shape {ksh}; expected 4-D (conv) or 2-D (dense)", epoch)
        out[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(k))
        out[f"{name}.bias"] = torch.from_numpy(np.asarray(row[bs:be], dtype=np.float32).reshape(bsh).copy())
    return out


def read_run(ref: RunRef, ip: ImportedPopulation) -> RunRecord:
    weights, metrics, layout = _open(ip.path)
    rows = metrics.loc[ref.location]
    steps = rows["step"].astype(int).to_numpy()
    metrics_file = ip.path / "metrics.csv.gz"
    if len(set(steps.tolist())) != len(steps):
        raise SourceError(metrics_file, ref.name, f"two rows of the same step among {sorted(steps.tolist())}")
    scale = float(ip.options.get("accuracy_scale", 100.0))
    acc = {int(s): float(a) * scale for s, a in zip(steps, rows["_acc"].astype(float))}
    loss = ({int(s): float(v) for s, v in zip(steps, rows["train_loss"].astype(float))}
            if "train_loss" in rows else {})
    file = ip.path / "weights.npy"
    fns, wfiles = {}, {}
    for s, i in zip(steps, ref.location):
        fns[int(s)] = (lambda i=int(i), s=int(s): to_state_dict(np.asarray(weights[i]), layout, file, ref.name, s))
        wfiles[int(s)] = f"{file} row {int(i)}"
    return RunRecord(name=ref.name, hparams=_hparams(rows.iloc[0]), accuracy=acc, weights=fns, weight_files=wfiles,
                     final_epoch=int(steps.max()), loss=loss, accuracy_file=str(metrics_file))


def tf_row(state: dict[str, torch.Tensor]) -> tuple[np.ndarray, list[tuple[str, int, int, tuple[int, ...]]]]:
    """A state_dict of :class:`SmallCNN` as one row in the zoo's layout (bias, then kernel, per layer, TensorFlow
    shapes) and its layout rows, for converters and for the tests."""
    parts, layout, at = [], [], 0
    for i, name in enumerate(["conv1", "conv2", "conv3", "dense"]):
        w = state[f"{name}.weight"].detach().numpy()
        k = w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T
        layer = f"sequential/{'conv2d' + (f'_{i}' if i else '') if w.ndim == 4 else 'dense'}"
        for var, arr in ((f"{layer}/bias:0", state[f"{name}.bias"].detach().numpy()), (f"{layer}/kernel:0", k)):
            flat = np.ascontiguousarray(arr, dtype=np.float32).ravel()
            layout.append((var, at, at + flat.size, tuple(arr.shape)))
            parts.append(flat)
            at += flat.size
    return np.concatenate(parts), layout
