"""Every file that passes between the steps of the pipeline, read and written here.

The steps (notebooks 01-07) hand each other files under ``results/<profile>/``. This module is
the only code that reads or writes them; the steps call it with data frames and arrays. It
keeps three promises:

* **Atomic writes.** Every file is written to a temporary file beside it and moved into place
  (``os.replace``), with the permissions of an ordinary ``open()`` (``0o644`` under the usual
  umask: a group sharing a results folder or a run store can read it). A killed process
  leaves the old file or the new one, never half of one.
* **Columns.** Each table promises its columns (:data:`TABLES`, in order). A writer refuses
  a frame that lacks one of them, a reader refuses a file that lacks one, and both name the
  file; a missing file is an error that names the notebook that writes it.
* **One parser per column.** Booleans (``diverged``, ``single_class``, ``best``, ...) are read by
  :func:`parse_bool`; whether a run diverged by :func:`diverged`; text columns that may be
  empty (``paper_note``, ``reason``, ...) come back as ``""``, never NaN.

=============================  ========  =================================================
file (under results/<p>/)      written   read by
=============================  ========  =================================================
``runs.csv``                   01        02, 03, 06, 07, Table 1
``snapshots.csv``              01        ``make verify`` (:mod:`paperlib.verify`)
``import_skipped.csv``         01i       the import's summary (networks not imported, why)
``imported.csv``               01i       the import's summary (what each network's horizon holds)
``overrides.json``             01        every later step (:func:`read_overrides`)
``table1.csv``                 01        the README's report
``centralities.csv``           02        06 (cross-check of the timings)
``graph_sizes.csv``            02        the README
``features.csv``               03        04, 05 (which feature sets are there)
``features/<arch>.npz``        03        04, 05, 07 (:func:`write_features`)
``q1.csv``, ``q1_skipped.csv`` 04        Table 2, Fig. 3, 06 (t needed), readings
``table2.csv``                 04        readings, the README's report
``q2.csv``, ``q2_skipped.csv`` 05        Fig. 4, readings
``q3.csv``                     06        Fig. 5, readings
``q3_snapshots/<arch>.pt``     06        06 on a fresh clone (:func:`write_q3_snapshot`)
``early_stopping.csv``         07        the README's report
``metrics.json``               01-07     the README's report (:func:`update_metrics`)
``timings/<table>``            01-03     06, the README (:data:`Table.timings`)
=============================  ========  =================================================

**Numbers apart from seconds.** A table holds only what the computation decides, so that a rerun
that reproduces it writes the same bytes. Where a step also measures wall-clock time, the
seconds go to ``timings/<table>`` beside it, keyed by the table's key columns
(:attr:`Table.timings`, :attr:`Table.key`): :func:`write_table` splits the frame, and
:func:`read_table` joins the seconds back (NaN when the timings file is not there). Steps 04, 05
and 07 record no seconds but their duration in the manifest. ``q3.csv`` (and Fig. 5) *are* a
measurement of the machine that ran 06.

01i is ``01_import``, which makes ``runs.csv`` and the run store of an imported profile instead of
01 (:mod:`paperlib.sources`).

The run store (one directory per trained network: snapshots, checkpoints, cached
centralities) is :mod:`paperlib.train.store`; it writes with the same primitives. The paper's own
numbers, transcribed, are read by :func:`read_published`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import paths


class CorruptFileError(RuntimeError):
    """A file is truncated, corrupt or of the wrong kind."""


# --------------------------------------------------------------------------- atomic writes
_UMASK: int | None = None


def _file_mode() -> int:
    """``0o666`` less the process umask (read once; ``os.umask`` can only be read by setting it)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``; mode ``0o666 & ~umask``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON (indented, keys sorted, numpy scalars as numbers), written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, default=_json_default) + "\n").encode())


def read_json(path: Path) -> Any:
    """A JSON file; a corrupt one raises :class:`CorruptFileError` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{path}: corrupt JSON ({exc}); delete the file to recompute it") from exc


def save_npz(path: Path, compressed: bool = False, **arrays: np.ndarray) -> None:
    """Arrays as an ``.npz`` (compressed or not), written atomically."""
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (no pickles); a corrupt file raises :class:`CorruptFileError`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"{path}: corrupt or truncated file ({exc}); delete it to recompute") from exc


# --------------------------------------------------------------------------- parsers
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


def parse_text(col: pd.Series) -> pd.Series:
    """A text column whose empty cells read back as ``""`` (pandas reads them as NaN)."""
    return col.astype(object).where(col.notna(), "").astype(str)


# --------------------------------------------------------------------------- the tables
@dataclass(frozen=True)
class Table:
    """A CSV that passes between steps: its name, the columns it promises and how they are parsed.

    ``exact``: the file has exactly ``columns``, in that order (the writer reorders and refuses a
    missing one); otherwise ``columns`` come first and further columns may follow.
    """

    name: str
    columns: Sequence[str]
    bools: Sequence[str] = ()
    texts: Sequence[str] = ()
    float_format: str | None = None
    exact: bool = True
    #: measured columns (wall-clock seconds, cache hits), written to ``timings/<name>`` with the
    #: :attr:`key` columns; ``timing_suffixes`` names further ones by their ending
    timings: Sequence[str] = ()
    key: Sequence[str] = ()
    timing_suffixes: tuple[str, ...] = ()

    def measured(self, columns: Sequence[str]) -> list[str]:
        """The measured columns among ``columns``."""
        return [c for c in columns if c not in self.key and (
            c in self.timings or (self.timing_suffixes and c.endswith(self.timing_suffixes)))]


RUN_COLUMNS = [
    "key", "arch", "dataset", "model", "lr", "dropout", "seed", "optimizer", "status", "diverged",
    "epochs_trained", "early_stop_epoch", "final_acc", "best_acc", "best_epoch", "diverged_epoch",
    "max_epochs", "train_seconds", "epoch_seconds", "device", "precision", "isa",
]
#: the SHA-256 of every snapshot of every run (what ``make verify`` compares retrained snapshots with)
SNAPSHOT_COLUMNS = ["key", "arch", "epoch", "bytes", "sha256"]
CENTRALITY_COLUMNS = ["key", "arch", "n_snapshots", "rolled_seconds", "unrolled_seconds"]
GRAPH_SIZE_COLUMNS = ["arch", "model", "dataset", "image_size", "rolled_nodes", "rolled_edges", "rolled_bytes",
                      "unrolled_nodes", "unrolled_edges", "unrolled_bytes", "unrolled_over_rolled_edges"]
FEATURE_INDEX_COLUMNS = [
    "dataset", "arch", "feature_set", "status", "reason", "source", "temporal", "n_networks",
    "n_high", "n_configurations", "threshold", "dim_per_epoch", "n_epochs", "t_available",
    "n_alive_at_t", "n_diverged_by_t", "n_stopped_before_t", "n_nan_epochs", "seconds",
    "seconds_per_network",
]
Q1_COLUMNS = [
    "dataset", "arch", "feature_set", "mode", "classifier", "t", "fold_seed", "accuracy",
    "balanced_accuracy", "majority_accuracy", "single_class", "spearman", "threshold", "n_networks",
    "n_high", "n_decided", "n_configurations", "n_folds", "inner_folds", "params", "fold_accuracy",
    "fold_sizes", "n_fits", "n_not_converged",
]
Q2_COLUMNS = [
    "transfer", "train_archs", "test_arch", "feature_set", "mode", "classifier", "t", "seed",
    "accuracy", "balanced_accuracy", "majority_accuracy", "single_class", "spearman", "n_train",
    "n_high_train", "n_decided_train", "n_test", "n_high_test", "n_decided", "test_threshold", "params",
    "n_fits", "n_not_converged",
]
SKIP_COLUMNS = ["experiment", "dataset", "arch", "feature_set", "mode", "classifier", "t", "reason"]
Q3_COLUMNS = [
    "dataset", "arch", "n_runs", "epoch_seconds", "early_stop_epoch_mean", "train_to_early_stop_seconds",
    "t_needed", "t_rule", "n_snapshots", "snapshot_run", "snapshot_epoch", "repeats",
    "rolled_runs", "unrolled_matfree_runs", "unrolled_explicit_runs", "trace_seconds",
    "rolled_nodes", "rolled_edges",
    "rolled_s1_seconds", "rolled_deg_seconds", "rolled_evec_seconds", "rolled_snapshot_seconds",
    "rolled_total_seconds",
    "unrolled_nodes",
    "unrolled_matfree_s1_seconds", "unrolled_matfree_deg_seconds", "unrolled_matfree_evec_seconds",
    "unrolled_matfree_snapshot_seconds", "unrolled_matfree_total_seconds",
    "unrolled_edges",
    "unrolled_explicit_s1_seconds", "unrolled_explicit_deg_seconds", "unrolled_explicit_evec_seconds",
    "unrolled_explicit_snapshot_seconds", "unrolled_explicit_total_seconds", "unrolled_explicit_note",
    "rolled_overhead_per_epoch", "rolled_speedup", "unrolled_matfree_speedup",
    "pipeline_rolled_snapshot_seconds", "pipeline_unrolled_snapshot_seconds",
]
TABLE1_COLUMNS = [
    "dataset", "arch", "n_networks", "n_finished", "n_diverged", "n_high", "threshold",
    "early_stop_min", "early_stop_max", "acc_min", "acc_max",
    "paper_dataset", "same_dataset", "paper_early_stop_min", "paper_early_stop_max",
    "paper_acc_min", "paper_acc_max", "paper_threshold",
]
#: the baselines of Table 2's paired tests, by their short names
PAIRED_BASELINES = ("B_Wl", "B_What", "B_Wprime", "learning-curve")
TABLE2_COLUMNS = [
    "dataset", "arch", "t", "classifier", "feature_set", "label", "mode", "n_networks", "n_high",
    "accuracy_mean", "accuracy_std", "n_seeds", "best", "balanced_accuracy_mean", "majority_accuracy",
    "n_single_class", "n_decided",
    *[f"vs_{b}_{k}" for b in PAIRED_BASELINES for k in ("diff", "p")],
    "paper_dataset", "same_dataset", "paper_accuracy", "paper_note",
]

EARLY_STOPPING_COLUMNS = [
    "dataset", "arch", "pruner", "n_networks", "n_high", "n_trials", "n_repeats", "n_folds", "t_min",
    "t_max", "stop_below", "compute_mean", "compute_std", "saved_pct", "regret_mean", "regret_std",
    "regret_p90", "no_regret_share", "high_stopped_mean", "low_stopped_mean", "best_stopped_share",
    "epochs_mean", "epochs_none_mean", "best_none_mean",
]
#: written by 01_import (paperlib.sources): networks that could not be read, and what each imported network holds
IMPORT_SKIPPED_COLUMNS = ["arch", "source", "run", "file", "epoch", "error", "reason"]
IMPORTED_COLUMNS = ["key", "arch", "source", "run", "epochs_in_horizon", "horizon_end", "status", "final_epoch",
                    "final_acc", "seconds"]

TABLES: dict[str, Table] = {t.name: t for t in [
    Table("runs.csv", RUN_COLUMNS, bools=("diverged",), texts=("status",), float_format="%.6g",
          timings=("train_seconds", "epoch_seconds"), key=("key",)),
    Table("snapshots.csv", SNAPSHOT_COLUMNS),
    Table("centralities.csv", CENTRALITY_COLUMNS, exact=False, timings=("rolled_seconds", "unrolled_seconds"),
          key=("key",), timing_suffixes=("_seconds", "_cached")),
    Table("graph_sizes.csv", GRAPH_SIZE_COLUMNS),
    Table("features.csv", FEATURE_INDEX_COLUMNS, texts=("reason", "source"),
          timings=("seconds", "seconds_per_network"), key=("dataset", "arch", "feature_set")),
    Table("q1.csv", Q1_COLUMNS, bools=("single_class",), texts=("params", "fold_accuracy", "fold_sizes")),
    Table("q2.csv", Q2_COLUMNS, bools=("single_class",), texts=("params",)),
    Table("q1_skipped.csv", SKIP_COLUMNS, texts=("reason",)),
    Table("q2_skipped.csv", SKIP_COLUMNS, texts=("reason",)),
    Table("q3.csv", Q3_COLUMNS, texts=("t_rule", "unrolled_explicit_note"), float_format="%.6g"),
    Table("table1.csv", TABLE1_COLUMNS, bools=("same_dataset",), texts=("paper_dataset",), float_format="%.6g"),
    Table("table2.csv", TABLE2_COLUMNS, bools=("best", "same_dataset"), texts=("mode", "paper_dataset", "paper_note"),
          float_format="%.6g"),
    Table("early_stopping.csv", EARLY_STOPPING_COLUMNS, float_format="%.6g"),
    Table("import_skipped.csv", IMPORT_SKIPPED_COLUMNS, texts=("run", "file", "error", "reason")),
    Table("imported.csv", IMPORTED_COLUMNS, texts=("run", "status"), float_format="%.6g", timings=("seconds",),
          key=("key",)),
]}


def _profile_name(profile: Any) -> str:
    return profile if isinstance(profile, str) else profile.name


def result_path(profile: Any, name: str) -> Path:
    """``results/<profile>/<name>``."""
    return paths.results_dir(_profile_name(profile)) / name


def _writer_hint(name: str) -> str:
    from .pipeline.runner import STEPS

    writers = [s.name for s in STEPS if f"results/{{profile}}/{name}" in s.outputs]
    return f"; run notebook {writers[0]} first" if writers else ""


def _table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a file that passes between steps; known: {sorted(TABLES)}") from None


def write_table(profile: Any, name: str, df: pd.DataFrame) -> Path:
    """Write ``results/<profile>/<name>`` (one of :data:`TABLES`) atomically, with its promised columns.

    Raises ValueError, naming the file, when ``df`` lacks a promised column.
    """
    spec, path = _table(name), result_path(profile, name)
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise ValueError(f"{paths.relative(path)}: refusing to write a table without its columns {missing}")
    if spec.exact:
        df = df[list(spec.columns)]
    measured = spec.measured(df.columns)
    if measured:
        atomic_write_bytes(timings_path(profile, name), df[[*spec.key, *measured]].to_csv(
            index=False, float_format="%.6g", lineterminator="\n").encode())
        df = df.drop(columns=measured)
    atomic_write_bytes(path, df.to_csv(index=False, float_format=spec.float_format, lineterminator="\n").encode())
    return path


def timings_path(profile: Any, name: str) -> Path:
    """``results/<profile>/timings/<name>``: the measured seconds of table ``name`` (:attr:`Table.timings`)."""
    return result_path(profile, "timings") / name


def _join_timings(spec: Table, profile: Any, df: pd.DataFrame) -> pd.DataFrame:
    """The seconds of ``timings/<name>`` joined back on the key columns (NaN where not recorded)."""
    path = timings_path(profile, spec.name)
    if not path.exists():
        df = df.assign(**{c: np.nan for c in spec.timings})
        return df[[c for c in spec.columns] + [c for c in df.columns if c not in spec.columns]]
    timed = pd.read_csv(path)
    bad = [c for c in (*spec.key, *spec.timings) if c not in timed.columns]
    if bad:
        raise ValueError(f"{path}: columns {bad} missing{_writer_hint(spec.name).replace(' first', ' again')}")
    joined = df.merge(timed.drop_duplicates(list(spec.key), keep="last"), on=list(spec.key), how="left",
                      validate="many_to_one")
    order = [c for c in spec.columns if c in joined.columns]
    return joined[order + [c for c in joined.columns if c not in order]]


def read_table(profile: Any, name: str) -> pd.DataFrame:
    """``results/<profile>/<name>`` (one of :data:`TABLES`), its columns checked and parsed.

    A missing file raises FileNotFoundError naming the notebook that writes it; a file without
    a promised column raises ValueError naming the file and the columns.
    """
    spec, path = _table(name), result_path(profile, name)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist{_writer_hint(name)}")
    try:
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{path}: not a readable CSV ({exc}){_writer_hint(name).replace(' first', ' again')}"
                               ) from exc
    missing = [c for c in spec.columns if c not in df.columns and c not in spec.timings]
    if missing:
        raise ValueError(f"{path}: columns {missing} missing (written by an older version?)"
                         f"{_writer_hint(name).replace(' first', ' again')}")
    if spec.timings:
        df = _join_timings(spec, profile, df.drop(columns=spec.measured(df.columns)))
    for c in spec.bools:
        df[c] = parse_bool(df[c])
    for c in spec.texts:
        df[c] = parse_text(df[c])
    if name == "runs.csv":
        df["diverged"] = diverged(df)
    return df


def read_cells(path: Path) -> pd.DataFrame:
    """Any CSV with every cell as the text it holds (no parsing): what exact comparisons read."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def read_table_or_none(profile: Any, name: str) -> pd.DataFrame | None:
    """:func:`read_table`, or None when the file does not exist."""
    return read_table(profile, name) if result_path(profile, name).exists() else None


def read_source_csv(path: Path) -> pd.DataFrame:
    """A CSV (or ``.csv.gz``) that is an *input* of an import source (``paperlib.sources``), not a file
    between steps: read as it is, its columns checked by the source that reads it."""
    return pd.read_csv(path)


# --------------------------------------------------------------------------- the run table
def runs_path(profile: Any) -> Path:
    """``results/<profile>/runs.csv``."""
    return result_path(profile, "runs.csv")


def read_runs(profile: Any) -> pd.DataFrame:
    """``results/<profile>/runs.csv`` with its ``diverged`` column parsed (:func:`diverged`)."""
    path = runs_path(profile)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no runs table; run the training notebook (01_train) first")
    return read_table(profile, "runs.csv")


def skipped_reasons(profile: Any, experiment: str = "q1") -> dict[str, str]:
    """Per architecture, why the experiment skipped it (from ``<experiment>_skipped.csv``, if any)."""
    skipped = read_table_or_none(profile, f"{experiment}_skipped.csv")
    if skipped is None:
        return {}
    return {str(a): str(g["reason"].iloc[0]) for a, g in skipped.groupby("arch", sort=False)}


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

    Each notebook writes its own section; the README's report quotes this file, never typed numbers.
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
