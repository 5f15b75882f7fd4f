"""Q3: what the graph features cost next to training, measured on this machine.

Per architecture of a profile, :func:`run_q3` sets side by side

* the average wall time of training a network to its early-stopping epoch:
  ``epoch_seconds x early_stop_epoch`` from ``runs.csv`` (as recorded while training), averaged
  over the networks that finished (diverged ones are left out);
* the time of tracing the network once (``trace_seconds``) plus, for each of the snapshots the
  predictor needs, building its graph (S1) and computing its weighted degree and eigenvector
  centrality (S2): ``*_total_seconds = trace_seconds + n_snapshots x *_snapshot_seconds``, for
  the rolled graph, the unrolled graph as a matrix-free operator, and the unrolled graph as an
  explicit sparse matrix (``materialize()``, where it can be built; otherwise the cell is empty
  and ``unrolled_explicit_note`` says why).

The overhead of the rolled features, ``rolled_overhead_per_epoch``, is the per-snapshot cost
(S1 + S2, the trace amortised over a run) as a fraction of one training epoch.

The per-snapshot times are re-measured here, ``repeats`` times on one real snapshot per
architecture (the median is kept: the machine may be shared; a measurement that already took
``max_seconds`` is not repeated), not taken from the pipeline's
own log; the means that ``02_graph`` recorded over every snapshot (``centralities.csv``) are
carried beside them as ``pipeline_*`` columns for a cross-check.

The epochs the predictor needs (``t_needed``): with ``t_rule="best"`` (the paper's reading,
"the number of epochs needed to achieve the highest accuracy"), the smallest t at which the
best mean Q1 accuracy of a rolled graph signature (over ``deg``/``evec``, modes and
classifiers, mean over fold seeds) reaches its maximum over t; with ``t_rule="last"``, the
largest t of the profile. Without ``q1.csv`` the rule falls back to ``"last"``; the column
``t_rule`` records which one was used. The predictor reads snapshots 1..t (plus 0 when the
profile includes the initialisation).

**The snapshot that is timed, committed.** Q3 times one snapshot per architecture, so a fresh
clone (no run store) can rerun it: :func:`export_q3_snapshot` copies that snapshot from the run
store to ``results/<profile>/q3_snapshots/<arch>.pt`` (the state dict in float32, as trained,
with the run's key, epoch and specification), rewriting the file only when its bytes change;
:func:`run_q3` always times the model rebuilt from that file. With a run store, the snapshot is
chosen as described above (the first finished run by key, its last snapshot at or before
``t_needed``) and exported first; without one, the committed file is used as it is, after
checking that it is a snapshot of the population's architecture (model, its arguments, dataset
and input size), and ``snapshot_run`` / ``snapshot_epoch`` say which snapshot it is.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .. import files, paths
from ..files import Q3_COLUMNS, update_metrics
from ..profile_types import Population, Profile
from ..profiles import as_profile
from ..train.store import RunStore
from .stats import aggregate_q1


def _is_diverged(runs: pd.DataFrame) -> pd.Series:
    return files.diverged(runs)


def training_cost(runs: pd.DataFrame) -> dict[str, float]:
    """Mean over finished runs of ``epoch_seconds x early_stop_epoch``, with its inputs.

    Examples
    --------
    >>> runs = pd.DataFrame({"status": ["finished", "finished", "diverged"], "diverged": [False, False, True],
    ...                      "epoch_seconds": [2.0, 4.0, 1.0], "early_stop_epoch": [3, 5, 1]})
    >>> training_cost(runs)["train_to_early_stop_seconds"]
    13.0
    """
    ok = runs[~_is_diverged(runs)]
    if not len(ok):
        ok = runs
    per_run = ok["epoch_seconds"].astype(float) * ok["early_stop_epoch"].astype(float)
    return {
        "n_runs": int(len(ok)),
        "epoch_seconds": float(ok["epoch_seconds"].astype(float).mean()),
        "early_stop_epoch_mean": float(ok["early_stop_epoch"].astype(float).mean()),
        "train_to_early_stop_seconds": float(per_run.mean()),
    }


def t_needed(q1: pd.DataFrame | None, dataset: str, arch: str, t_last: int, rule: str = "best") -> tuple[int, str]:
    """The number of epochs the predictor needs, and the rule that chose it (see the module docstring)."""
    if rule not in {"best", "last"}:
        raise ValueError(f"t_rule must be 'best' or 'last', not {rule!r}")
    if rule == "last" or q1 is None:
        why = "last t of the profile" + (" (no q1.csv)" if rule == "best" else "")
        return int(t_last), why
    sub = q1[(q1["dataset"] == dataset) & (q1["arch"] == arch) & q1["feature_set"].isin(["deg", "evec"])]
    if not len(sub):
        return int(t_last), "last t of the profile (no rolled signature in q1.csv)"
    curve = aggregate_q1(sub).groupby("t")["accuracy_mean"].max().sort_index()
    t = int(curve.index[curve >= curve.max() - 1e-12].min())
    return t, "smallest t reaching the best mean Q1 accuracy of deg/evec (any mode, classifier)"


def _median_times(steps: list[tuple[str, Callable[[Any], Any]]], repeats: int,
                  max_seconds: float = float("inf")) -> tuple[dict[str, float], list[Any]]:
    """Run a chain of steps up to ``repeats`` times; median seconds per step, and the last results.

    Each step after the first gets the first step's result. Repetition stops early once the
    chain has taken ``max_seconds`` in all (a slow measurement is then taken fewer times); the
    number of runs is returned as ``times["runs"]``.
    """
    times: dict[str, list[float]] = {name: [] for name, _ in steps}
    results: list[Any] = []
    spent = 0.0
    runs = 0
    for _ in range(max(1, repeats)):
        if runs and spent >= max_seconds:
            break
        runs += 1
        results = []
        base = None
        for k, (name, fn) in enumerate(steps):
            t0 = time.perf_counter()
            out = fn(base)
            times[name].append(time.perf_counter() - t0)
            spent += times[name][-1]
            if k == 0:
                base = out
            results.append(out)
    med = {name: statistics.median(v) for name, v in times.items()}
    med["runs"] = runs
    return med, results


def time_snapshot(model: Any, input_shape: tuple[int, ...], repeats: int = 3, explicit: bool = True,
                  max_seconds: float = 5.0, explicit_max_bytes: int | None = None) -> dict[str, Any]:
    """Median seconds of S1 + S2 on one model: rolled, unrolled matrix-free and unrolled explicit.

    ``trace_seconds`` is the one-off cost of tracing the network (``graph.GraphPlan``: data
    flow and shapes), shared by every snapshot of a run and by both graphs. Per snapshot, S1 is
    building the graph from the traced plan: the rolled adjacency, the unrolled operator, or
    the explicit unrolled matrix (``materialize()``, with ``explicit_max_bytes``, default: the
    graph module's own cap; a graph that does not fit leaves the explicit columns empty and
    says why in ``unrolled_explicit_note``). S2 is :func:`paperlib.graph.centrality.weighted_degree`
    plus :func:`paperlib.graph.centrality.eigenvector_centrality`. Each measurement is repeated up to
    ``repeats`` times, fewer once it has taken ``max_seconds`` (the ``*_runs`` columns count
    them), after one untimed warm-up of the rolled chain.
    """
    from ..graph import centrality
    from .. import graph

    deg, evec = centrality.weighted_degree, centrality.eigenvector_centrality
    warm = graph.GraphPlan(model, input_shape).rolled(model).adjacency  # imports, caches: not timed
    deg(warm), evec(warm)
    out: dict[str, Any] = {}
    t, res = _median_times([("trace", lambda _: graph.GraphPlan(model, input_shape))], repeats, max_seconds)
    plan = res[0]
    out["trace_seconds"] = t["trace"]
    t, res = _median_times([("s1", lambda _: plan.rolled(model).adjacency), ("deg", deg), ("evec", evec)],
                           repeats, max_seconds)
    A = res[0]
    out.update({"rolled_nodes": int(A.shape[0]), "rolled_edges": int(_nnz(A) // 2)})
    out.update({f"rolled_{k}_seconds": v for k, v in t.items() if k != "runs"})
    out["rolled_runs"] = t["runs"]
    t, res = _median_times([("s1", lambda _: plan.unrolled(model).operator), ("deg", deg), ("evec", evec)],
                           repeats, max_seconds)
    out["unrolled_nodes"] = int(res[0].shape[0])
    out.update({f"unrolled_matfree_{k}_seconds": v for k, v in t.items() if k != "runs"})
    out["unrolled_matfree_runs"] = t["runs"]
    out["unrolled_explicit_note"] = ""
    if explicit:
        try:
            t, res = _median_times([("s1", lambda _: plan.unrolled(model).materialize(explicit_max_bytes)),
                                    ("deg", deg), ("evec", evec)], repeats, max_seconds)
            out["unrolled_edges"] = int(_nnz(res[0]) // 2)
            out.update({f"unrolled_explicit_{k}_seconds": v for k, v in t.items() if k != "runs"})
            out["unrolled_explicit_runs"] = t["runs"]
        except MemoryError as exc:  # materialize() refuses a matrix that would not fit
            out["unrolled_explicit_note"] = f"not built: {exc}"[:300]
    else:
        out["unrolled_explicit_note"] = "not built (explicit=False)"
    for kind in ("rolled", "unrolled_matfree", "unrolled_explicit"):
        parts = [out.get(f"{kind}_{k}_seconds", np.nan) for k in ("s1", "deg", "evec")]
        out[f"{kind}_snapshot_seconds"] = float(np.sum(parts)) if np.all(np.isfinite(parts)) else np.nan
    return out


def _nnz(A: Any) -> int:
    return int(A.nnz) if hasattr(A, "nnz") else int(np.count_nonzero(A))


def _snapshot_run(p: Profile, runs: pd.DataFrame, epoch: int) -> tuple[Any, int]:
    """The first finished run (by key) of ``runs`` and the snapshot epoch to time (<= ``epoch``)."""
    store = RunStore(paths.runs_dir(p.name))
    ok = runs[~_is_diverged(runs)].sort_values("key")
    for key in list(ok["key"]) + list(runs.sort_values("key")["key"]):
        try:
            run = store.get(key)
        except FileNotFoundError:
            continue
        epochs = [e for e in run.snapshot_epochs() if e <= epoch]
        if epochs:
            return run, max(epochs)
    raise FileNotFoundError(f"no snapshot of {runs['arch'].iloc[0]} in {store.root}; run notebook 01_train first")


def _store_has_runs(profile: str, runs: pd.DataFrame) -> bool:
    root = paths.runs_dir(profile)
    return root.is_dir() and any((root / str(k) / "spec.json").exists() for k in runs["key"])


def export_q3_snapshot(p: Profile, pop: Population, runs: pd.DataFrame, epoch: int) -> Path:
    """Copy the snapshot Q3 times for ``pop`` from the run store to :func:`paperlib.files.q3_snapshot_path`.

    The run is the first finished one by key, the snapshot its last at or before ``epoch``. The
    file holds ``{"format", "arch", "key", "epoch", "spec" (JSON text), "state_dict"}``, readable
    with ``torch.load(weights_only=True)``; it is rewritten only when its bytes change, so
    re-running on the same store leaves a committed file untouched.
    """
    run, snap_epoch = _snapshot_run(p, runs, epoch)
    return files.write_q3_snapshot(files.q3_snapshot_path(p, pop.arch), pop.arch, run.key, snap_epoch, run.spec,
                                   run.load_snapshot(snap_epoch))


def load_q3_snapshot(p: Profile, pop: Population) -> tuple[Any, str, int]:
    """The model of the committed Q3 snapshot of ``pop`` (eval mode), its run key and epoch.

    Raises FileNotFoundError (naming the step that writes the file) when it is missing, and
    ValueError when it is not a snapshot of the population's architecture.
    """
    from ..train import trainer as train

    path = files.q3_snapshot_path(p, pop.arch)
    obj = files.read_q3_snapshot(path)
    spec = obj["spec"]
    want = {"model": pop.model, "model_kwargs": dict(pop.model_kwargs), "dataset": pop.dataset,
            "image_size": p.image_size[pop.dataset]}
    got = {k: spec.get(k) for k in want}
    if got != want:
        raise ValueError(f"{paths.relative(path)}: a snapshot of {got}, but population {pop.arch} of profile "
                         f"{p.name!r} is {want}; run 01_train and 06_q3 to replace it")
    model = train._make_model(spec)
    model.load_state_dict(obj["state_dict"])
    return model.eval(), str(obj["key"]), int(obj["epoch"])


def _input_shape(p: Profile, pop: Population) -> tuple[int, int, int]:
    from ..train import data

    side = p.image_size[pop.dataset]
    return (int(data.DATASETS[pop.dataset].in_channels), side, side)


def q3_row(p: Profile, pop: Population, runs: pd.DataFrame, q1: pd.DataFrame | None,
           cent: pd.DataFrame | None, repeats: int, t_rule: str = "best", explicit: bool = True,
           max_seconds: float = 5.0) -> dict[str, Any]:
    """One row of ``q3.csv`` (see the module docstring)."""
    row: dict[str, Any] = {"dataset": pop.dataset, "arch": pop.arch}
    row.update(training_cost(runs))
    t_last = int(q1.loc[q1["arch"] == pop.arch, "t"].max()) if q1 is not None and (q1["arch"] == pop.arch).any() \
        else pop.t_max
    t, why = t_needed(q1, pop.dataset, pop.arch, t_last, t_rule)
    row.update({"t_needed": t, "t_rule": why, "n_snapshots": t + int(p.include_epoch0), "repeats": int(repeats)})
    if _store_has_runs(p.name, runs):
        export_q3_snapshot(p, pop, runs, t)
    model, key, epoch = load_q3_snapshot(p, pop)
    row.update({"snapshot_run": key, "snapshot_epoch": epoch})
    row.update(time_snapshot(model, _input_shape(p, pop), repeats=repeats, explicit=explicit,
                             max_seconds=max_seconds))
    for kind in ("rolled", "unrolled_matfree", "unrolled_explicit"):
        row[f"{kind}_total_seconds"] = row["trace_seconds"] + row[f"{kind}_snapshot_seconds"] * row["n_snapshots"]
    row["rolled_overhead_per_epoch"] = row["rolled_snapshot_seconds"] / row["epoch_seconds"]
    row["rolled_speedup"] = row["train_to_early_stop_seconds"] / row["rolled_total_seconds"]
    row["unrolled_matfree_speedup"] = row["train_to_early_stop_seconds"] / row["unrolled_matfree_total_seconds"]
    if cent is not None and (cent["arch"] == pop.arch).any():
        c = cent[cent["arch"] == pop.arch]
        row["pipeline_rolled_snapshot_seconds"] = float(c["rolled_seconds"].mean())
        if "unrolled_seconds" in c:
            row["pipeline_unrolled_snapshot_seconds"] = float(c["unrolled_seconds"].mean())
    return row


def run_q3(profile: Profile | str, repeats: int = 3, t_rule: str = "best", explicit: bool = True,
           max_seconds: float = 5.0) -> pd.DataFrame:
    """Measure Q3 for every architecture of the profile; write ``results/<profile>/q3.csv``.

    Parameters
    ----------
    profile
        The profile (or its name); reads its ``runs.csv`` and, when present, ``q1.csv`` and
        ``centralities.csv``, and one snapshot per architecture: exported from the run store when
        there is one, else the committed ``q3_snapshots/<arch>.pt``.
    repeats
        Timing repetitions per measurement (the median is kept).
    t_rule
        ``"best"`` or ``"last"``: how the epochs the predictor needs are chosen.
    explicit
        Also build the explicit unrolled matrix (``materialize()``) where it fits.
    max_seconds
        A measurement that has taken this long in all is not repeated further.

    Returns
    -------
    pandas.DataFrame
        One row per architecture, columns :data:`Q3_COLUMNS`. Also records the headline
        numbers in ``metrics.json`` (section ``q3``).
    """
    p = as_profile(profile)
    runs = files.read_runs(p)
    q1 = files.read_table_or_none(p, "q1.csv")
    cent = files.read_table_or_none(p, "centralities.csv")
    rows = []
    for pop in p.populations:
        sub = runs[(runs["arch"] == pop.arch) & (runs["dataset"] == pop.dataset)]
        if len(sub):
            rows.append(q3_row(p, pop, sub, q1, cent, repeats, t_rule, explicit, max_seconds))
    q3 = pd.DataFrame(rows).reindex(columns=Q3_COLUMNS)
    files.write_table(p, "q3.csv", q3)
    update_metrics(p.name, "q3", q3_metrics(q3))
    return q3


def q3_metrics(q3: pd.DataFrame) -> dict[str, Any]:
    """Headline numbers of Q3 for ``metrics.json``."""
    def r(x: Any) -> float | None:
        x = float(x)
        return float(f"{x:.4g}") if np.isfinite(x) else None

    per_arch = {
        row["arch"]: {
            "t_needed": int(row["t_needed"]),
            "train_to_early_stop_seconds": r(row["train_to_early_stop_seconds"]),
            "rolled_total_seconds": r(row["rolled_total_seconds"]),
            "unrolled_matfree_total_seconds": r(row["unrolled_matfree_total_seconds"]),
            "unrolled_explicit_total_seconds": r(row["unrolled_explicit_total_seconds"]),
            "rolled_speedup": r(row["rolled_speedup"]),
            "rolled_overhead_per_epoch": r(row["rolled_overhead_per_epoch"]),
        }
        for _, row in q3.iterrows()
    }
    return {
        "per_arch": per_arch,
        "rolled_faster_than_training": int((q3["rolled_total_seconds"] < q3["train_to_early_stop_seconds"]).sum()),
        "unrolled_matfree_faster_than_training": int(
            (q3["unrolled_matfree_total_seconds"] < q3["train_to_early_stop_seconds"]).sum()),
        "n_archs": int(len(q3)),
        "max_rolled_overhead_per_epoch": r(q3["rolled_overhead_per_epoch"].max()) if len(q3) else None,
    }
