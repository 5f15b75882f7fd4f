"""The other files between steps: per-population feature arrays, Q3's snapshots, ``overrides.json``,
``metrics.json``, the runner's ``manifest.json``, and the paper's transcribed numbers.
"""

from __future__ import annotations

import io
import json
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import paths
from .atomic import CorruptFileError, atomic_write_bytes, atomic_write_json, load_npz, read_json, save_npz
from .tables import _profile_name


# --------------------------------------------------------------------------- per-population feature arrays
FEATURES_FORMAT_KEYS = ("keys", "final_acc", "diverged", "epochs_trained", "t_available", "threshold", "arch",
                        "dataset", "groups", "diverged_epoch", "missing_names", "missing_reasons")


def features_path(profile: Any, arch: str) -> Path:
    """``results/<profile>/features/<arch>.npz``."""
    return paths.features_dir(_profile_name(profile)) / f"{paths.safe_name(arch)}.npz"


def write_features(path: Path, fields: dict[str, np.ndarray], arrays: dict[str, np.ndarray]) -> None:
    """One population's features as a compressed ``.npz``: ``fields`` (:data:`FEATURES_FORMAT_KEYS`)
    and one array per feature set (``fs:<name>``).

    A float64 array that float32 holds exactly (raw float32 weights, ``B_Wl``) is stored as
    float32, half the size on disk, and read back as the same float64 values.
    """
    missing = [k for k in FEATURES_FORMAT_KEYS if k not in fields]
    if missing:
        raise ValueError(f"{paths.relative(path)}: refusing to write features without {missing}")
    stored = {}
    for k, v in arrays.items():
        v32 = v.astype(np.float32)
        stored[f"fs:{k}"] = v32 if np.array_equal(v32.astype(np.float64), v, equal_nan=True) else v
    save_npz(path, compressed=True, **{k: fields[k] for k in FEATURES_FORMAT_KEYS}, **stored)


def read_features(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(fields, arrays)`` of a file written by :func:`write_features` (arrays as float64)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no cached features; run the features notebook (03_features) first")
    z = load_npz(path)
    missing = [k for k in FEATURES_FORMAT_KEYS if k not in z]
    if missing:
        raise ValueError(f"{path}: written by an older version (no {missing}); re-run the features notebook "
                         "(03_features)")
    fields = {k: z[k] for k in FEATURES_FORMAT_KEYS}
    arrays = {k[3:]: v.astype(np.float64) for k, v in z.items() if k.startswith("fs:")}
    return fields, arrays


# --------------------------------------------------------------------------- the snapshots Q3 times
Q3_SNAPSHOT_FORMAT = 1


def q3_snapshot_path(profile: Any, arch: str) -> Path:
    """``results/<profile>/q3_snapshots/<arch>.pt``: the committed snapshot Q3 times for ``arch``."""
    return paths.q3_snapshots_dir(_profile_name(profile)) / f"{paths.safe_name(arch)}.pt"


def write_q3_snapshot(path: Path, arch: str, key: str, epoch: int, spec: dict[str, Any],
                      state_dict: dict[str, Any]) -> Path:
    """``{"format", "arch", "key", "epoch", "spec" (JSON text), "state_dict"}`` with ``torch.save``,
    readable with ``torch.load(weights_only=True)``; rewritten only when its bytes change, so the
    same snapshot leaves a committed file untouched."""
    import torch

    obj = {"format": Q3_SNAPSHOT_FORMAT, "arch": arch, "key": key, "epoch": int(epoch),
           "spec": json.dumps(spec, sort_keys=True),
           "state_dict": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}}
    buf = io.BytesIO()
    torch.save(obj, buf)
    blob = buf.getvalue()
    if not path.exists() or path.read_bytes() != blob:
        atomic_write_bytes(path, blob)
    return path


def read_q3_snapshot(path: Path) -> dict[str, Any]:
    """The contents of a Q3 snapshot with ``spec`` parsed; missing or corrupt files name the step to run."""
    import torch

    hint = "run 06_q3 with the run store of 01_train present (it exports the snapshot)"
    if not path.exists():
        raise FileNotFoundError(f"{paths.relative(path)}: no Q3 snapshot; {hint}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle errors differ by torch version
        raise CorruptFileError(f"{paths.relative(path)}: corrupt or truncated ({type(exc).__name__}); "
                               f"delete it and {hint}") from exc
    if not isinstance(obj, dict) or obj.get("format") != Q3_SNAPSHOT_FORMAT or "state_dict" not in obj:
        raise CorruptFileError(f"{paths.relative(path)}: not a Q3 snapshot (format {Q3_SNAPSHOT_FORMAT}); "
                               f"delete it and {hint}")
    return {**obj, "spec": json.loads(obj["spec"])}


# --------------------------------------------------------------------------- the profile's overrides
def write_overrides(profile: str, overrides: dict[str, Any]) -> Path:
    """``results/<profile>/overrides.json``: the profile overrides the training notebook ran with."""
    path = paths.overrides_path(profile)
    atomic_write_json(path, overrides)
    return path


def read_overrides(profile: str) -> dict[str, Any]:
    """The recorded overrides of ``profile`` (``{}`` when none were recorded); a corrupt file is an error."""
    path = paths.overrides_path(profile)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: corrupt overrides file ({exc}); delete it and re-run 01_train") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of profile overrides")
    return data


# --------------------------------------------------------------------------- headline numbers
def read_metrics(profile: Any) -> dict[str, Any]:
    """``results/<profile>/metrics.json`` (``{}`` when there is none)."""
    path = paths.metrics_path(_profile_name(profile))
    return read_json(path) if path.exists() else {}


def update_metrics(profile: Any, section: str, values: dict[str, Any]) -> dict[str, Any]:
    """Replace ``section`` of the profile's ``metrics.json`` with ``values``; return the whole file.

    Each notebook writes its own section; the results pages quotes this file, never typed numbers.
    """
    metrics = read_metrics(profile)
    metrics[section] = values
    atomic_write_json(paths.metrics_path(_profile_name(profile)), metrics)
    return metrics


# --------------------------------------------------------------------------- the paper's numbers
def read_published(name: str) -> pd.DataFrame:
    """A transcribed table of the paper, ``results/published/<name>``: only empty cells are missing
    (a cell reading ``NA`` or ``OOM`` stays text)."""
    path = paths.PUBLISHED / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: the paper's transcribed numbers are missing (they are committed; "
                                "restore them with git)")
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def published_claims() -> pd.Series:
    """The paper's claims quoted beside ours, ``results/published/claims.csv``: text by claim id."""
    return read_published("claims.csv").set_index("claim")["text"]


# --------------------------------------------------------------------------- the runner's manifest
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_manifest(profile: str) -> dict[str, Any]:
    """The manifest of ``profile`` (``{}`` when there is none).

    A record that still says ``running`` although the runner that wrote it (same host, its
    ``pid``) is gone, killed too hard to write, is returned with status ``interrupted``.
    """
    path = paths.manifest_path(profile)
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        return {}
    if (manifest.get("status") == "running" and manifest.get("host") == socket.gethostname()
            and isinstance(manifest.get("pid"), int) and not _pid_alive(manifest["pid"])):
        manifest["status"] = "interrupted"
        manifest["note"] = "the runner's process ended without finishing the record (killed)"
    return manifest
