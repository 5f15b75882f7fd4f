"""The tables that pass between steps: the columns each promises (:data:`TABLES`), one parser per
column, and the one reader and writer of them all (:func:`read_table`, :func:`write_table`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .. import paths
from .atomic import CorruptFileError, atomic_write_bytes


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
    # across population replicates (paperlib.report.replicates): spread between replicates, sign agreement
    "replicate_std", "n_replicates", *[f"vs_{b}_agree" for b in PAIRED_BASELINES],
]

#: written by 04_q1 (paperlib.report.replicates.noise_floor): how far a cell moves between replicates
NOISE_FLOOR_COLUMNS = [
    "dataset", "arch", "n_replicates", "n_cell_differences", "cell_noise_median", "cell_noise_max",
    "diff_noise_median", "diff_noise_max", "n_marked", "marked_effect_min", "marked_effect_median",
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
    Table("table1_pooled.csv", TABLE1_COLUMNS, bools=("same_dataset",), texts=("paper_dataset",), float_format="%.6g"),
    Table("table2.csv", TABLE2_COLUMNS, bools=("best", "same_dataset", *[f"vs_{b}_agree" for b in PAIRED_BASELINES]),
          texts=("mode", "paper_dataset", "paper_note"), float_format="%.6g"),
    Table("noise_floor.csv", NOISE_FLOOR_COLUMNS, float_format="%.6g"),
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
    from ..steps import STEPS

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


def write_source_csv(path: Path, df: pd.DataFrame) -> Path:
    """The other way: a CSV (``.csv.gz`` compressed) in the layout of an import source, written for
    another tool (``paperlib.sources.zoo_export``), not a file between steps."""
    df.to_csv(path, index=False, compression="gzip" if str(path).endswith(".gz") else None)
    return path


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

