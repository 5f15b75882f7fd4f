"""Temporal graphs (S1 + S2 over training): node centralities of every snapshot of every run.

For a run and a graph kind (``"rolled"`` or ``"unrolled"``), the snapshots ``0..T`` with
``T = min(t_max, epochs_trained)`` become graphs on the same nodes (same architecture), so the
centralities are node-aligned across epochs: row ``i`` of ``deg``/``evec`` is epoch
``epochs[i]``. They are cached next to the run as ``<run_dir>/rolled.npz`` and
``<run_dir>/unrolled.npz``::

    epochs         int   (n_epochs,)
    deg, evec      float (n_epochs, n_nodes)   weighted degree, eigenvector centrality
    finite         bool  (n_epochs,)           False where the snapshot has NaN/inf parameters
                                               (its evec row is NaN, its deg row may be)
    s1_seconds, deg_seconds, evec_seconds      float (n_epochs,) cost per snapshot
    trace_seconds  float ()                    tracing the architecture (0 when reused)
    fingerprint    str   ()                    what the cache was computed from

A cache is reused only while its fingerprint matches: :data:`CODE_VERSION`, the graph kind,
the input shape, and the epoch, size and modification time of every snapshot file used.

The snapshots of a run are processed together: their graphs are stacked and the products of
the eigensolver (:func:`paperlib.graph.centrality.eigenvector_centrality_batch`) run as one batch;
the per-snapshot seconds are the batch's seconds divided by the number of snapshots.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import files, paths
from ..files import load_npz, save_npz
from ..profile_types import Profile
from ..train.store import Run

__all__ = ["CODE_VERSION", "KINDS", "compute_profile", "compute_run", "load_centralities", "fingerprint"]

#: bump when a change to paperlib.graph / paperlib.graph.centrality changes the cached values
CODE_VERSION = 2
KINDS = ("rolled", "unrolled")
#: memory for the Lanczos basis of one batch of unrolled graphs (snapshots are split to fit)
BATCH_BYTES = 512 * 2**20
_NCV = 20


def fingerprint(run: Run, epochs: list[int], kind: str, input_shape: tuple[int, ...]) -> str:
    """Hash of the code version, graph kind, input shape and the snapshots' epoch/size/mtime."""
    h = hashlib.sha256(f"{CODE_VERSION}|{kind}|{tuple(input_shape)}".encode())
    for e in epochs:
        st = run.snapshot_path(e).stat()
        h.update(f"|{e}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def load_centralities(run: Run, kind: str = "rolled") -> dict[str, np.ndarray]:
    """The cached centralities of ``run``: ``epochs``, ``deg``, ``evec``, ``finite`` (and timings).

    Raises
    ------
    FileNotFoundError
        when :func:`compute_profile` has not computed this kind for this run.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = run.cache_path(kind)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no {kind} centralities; run notebook 02_graph "
                                "(temporal.compute_profile) first")
    return load_npz(path)


def _finite(model) -> bool:
    import torch

    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), max(1, size))]


def compute_run(run: Run, epochs: list[int], kinds: tuple[str, ...], input_shape: tuple[int, ...],
                plans: dict | None = None, force: bool = False) -> dict[str, Any]:
    """Centralities of ``epochs`` of ``run`` for each graph kind, cached; returns timings.

    Parameters
    ----------
    run
        a run of the store; its models come from ``paperlib.train.trainer.load_model(run, epoch)``.
    epochs
        the snapshots to use.
    kinds
        ``("rolled",)`` or ``("rolled", "unrolled")``.
    input_shape
        one input without the batch axis (the unrolled graph depends on it).
    plans
        cache of traced architectures (``graph.GraphPlan``) shared between calls.
    force
        recompute even when the cache's fingerprint matches.

    Returns
    -------
    dict
        per kind: ``<kind>_s1_seconds``, ``_deg_seconds``, ``_evec_seconds`` (mean per
        snapshot), ``<kind>_nodes``, ``<kind>_cached`` (True when read from the cache), and
        ``trace_seconds``, ``load_seconds``.
    """
    from . import centrality
    from .. import graph
    from ..train.trainer import load_model

    plans = {} if plans is None else plans
    out: dict[str, Any] = {"n_snapshots": len(epochs), "trace_seconds": 0.0, "load_seconds": 0.0}
    todo = []
    for kind in kinds:
        fp = fingerprint(run, epochs, kind, input_shape)
        path = run.cache_path(kind)
        if not force and path.exists():
            try:
                cached = load_npz(path)
            except Exception:  # corrupt cache: recompute
                cached = None
            if cached is not None and str(cached.get("fingerprint")) == fp:
                out.update(_summary(kind, cached, cached=True))
                continue
        todo.append((kind, fp))
    if not todo:
        return out

    t0 = time.perf_counter()
    models = [load_model(run, e) for e in epochs]
    out["load_seconds"] = (time.perf_counter() - t0) / max(len(epochs), 1)
    finite = np.array([_finite(m) for m in models], dtype=bool)
    spec = run.spec
    # the modules themselves are part of the key: a hyperparameter may change them (the Model Zoos' CNN-s has
    # dropout modules, which shift its layer indices, only when its dropout is above 0); the dataset too: it
    # sets the number of classes (LeNet on CIFAR-10 and on Tiny-ImageNet at one input size)
    structure = tuple((name, type(m).__name__) for name, m in models[0].named_modules())
    arch_key = repr((spec.get("model"), sorted(spec.get("model_kwargs", {}).items()), spec.get("dataset"),
                     tuple(input_shape), structure))
    if arch_key not in plans:
        t0 = time.perf_counter()
        plans[arch_key] = graph.GraphPlan(models[0], input_shape)
        out["trace_seconds"] = time.perf_counter() - t0
    plan = plans[arch_key]
    ns = max(len(epochs), 1)
    for kind, fp in todo:
        if kind == "rolled":
            t0 = time.perf_counter()
            graphs = [plan.rolled(m) for m in models]
            apply = graph.stack_rolled(graphs)
            n = graphs[0].n
            t1 = time.perf_counter()
            deg = apply(np.ones((len(models), n)))
            t2 = time.perf_counter()
            evec = centrality.eigenvector_centrality_batch(apply, n, len(models), ncv=_NCV)
            t3 = time.perf_counter()
            s1, sd, se = t1 - t0, t2 - t1, t3 - t2
        else:
            n = sum(layer.positions for layer in plan.layers)
            size = max(1, int(BATCH_BYTES // (8 * (_NCV + 1) * n)))
            deg_parts, evec_parts, s1 = [], [], 0.0
            sd = se = 0.0
            for chunk in _chunks(list(range(len(models))), size):
                t0 = time.perf_counter()
                u = plan.unrolled([models[i] for i in chunk])
                t1 = time.perf_counter()
                deg_parts.append(u.apply(np.ones((len(chunk), n))))
                t2 = time.perf_counter()
                evec_parts.append(centrality.eigenvector_centrality_batch(u.apply, n, len(chunk), ncv=_NCV))
                t3 = time.perf_counter()
                s1, sd, se = s1 + t1 - t0, sd + t2 - t1, se + t3 - t2
            deg, evec = np.concatenate(deg_parts), np.concatenate(evec_parts)
        result = {
            "epochs": np.asarray(epochs, dtype=np.int64), "deg": deg.reshape(len(epochs), n),
            "evec": evec.reshape(len(epochs), n), "finite": finite,
            "s1_seconds": np.full(len(epochs), s1 / ns), "deg_seconds": np.full(len(epochs), sd / ns),
            "evec_seconds": np.full(len(epochs), se / ns), "trace_seconds": np.float64(out["trace_seconds"]),
            "fingerprint": np.array(fp), "code_version": np.int64(CODE_VERSION),
        }
        save_npz(run.cache_path(kind), **result)
        out.update(_summary(kind, result, cached=False))
    return out


def _summary(kind: str, c: dict[str, np.ndarray], cached: bool) -> dict[str, Any]:
    parts = {k: float(np.mean(c[f"{k}_seconds"])) if len(c[f"{k}_seconds"]) else np.nan
             for k in ("s1", "deg", "evec")}
    out = {f"{kind}_{k}_seconds": v for k, v in parts.items()}
    out[f"{kind}_seconds"] = float(sum(parts.values()))
    out[f"{kind}_nodes"] = int(np.asarray(c["deg"]).shape[1]) if np.asarray(c["deg"]).ndim == 2 else 0
    out[f"{kind}_cached"] = bool(cached)
    out[f"{kind}_nonfinite"] = int((~np.asarray(c["finite"], dtype=bool)).sum())
    return out


def _task(run_dir: str, epochs: list[int], kinds: tuple[str, ...], input_shape: tuple[int, ...],
          force: bool) -> dict[str, Any]:
    return compute_run(Run(Path(run_dir)), epochs, kinds, input_shape, plans=_WORKER_PLANS, force=force)


_WORKER_PLANS: dict = {}


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def compute_profile(profile: Profile, unrolled: bool = True, workers: int | None = None,
                    force: bool = False, progress: bool = True) -> pd.DataFrame:
    """Centralities of every snapshot the predictors read, ``1..min(t_max, epochs_trained)`` (and the
    initialisation, epoch 0, when the profile's signatures include it), of every run of ``profile``.

    Reads the runs from ``results/<profile>/runs.csv`` and the snapshots from the run store,
    computes (or reuses the cached) rolled and, with ``unrolled=True``, unrolled centralities
    (matrix-free) of every run, and writes one row per run to
    ``results/<profile>/centralities.csv``.

    Parameters
    ----------
    profile
        the profile whose runs are processed.
    unrolled
        also compute the unrolled graph's centralities.
    workers
        processes (default ``profile.workers``); 1 runs in this process.
    force
        ignore the caches.
    progress
        show a progress bar (:class:`paperlib.progress.Progress`: ``tqdm.auto``, off when
        ``PAPERLIB_QUIET=1``; lines on the runner's terminal under the runner).

    Returns
    -------
    pandas.DataFrame
        key, arch, n_snapshots, rolled_seconds, unrolled_seconds (mean per snapshot, S1 + S2),
        rolled/unrolled ``_s1_seconds``, ``_deg_seconds``, ``_evec_seconds``, ``_nodes``,
        ``_cached``, ``_nonfinite`` (snapshots with NaN/inf weights), trace_seconds, load_seconds.
    """
    from ..train import data

    runs = files.read_runs(profile.name)
    kinds = ("rolled", "unrolled") if unrolled else ("rolled",)
    root = paths.runs_dir(profile.name)
    tasks, meta = [], []
    for row in runs.itertuples(index=False):
        pop = profile.population(row.arch)
        run = Run(root / row.key)
        trained = int(row.epochs_trained) if pd.notna(row.epochs_trained) else 0
        last = min(pop.t_max, trained)
        first = 0 if profile.include_epoch0 else 1  # nothing reads epoch 0 otherwise
        epochs = [e for e in run.snapshot_epochs() if first <= e <= last]
        if not epochs:
            continue
        side = profile.image_size[pop.dataset]
        shape = (int(data.DATASETS[pop.dataset].in_channels), side, side)
        tasks.append((str(run.dir), epochs, kinds, shape, force))
        meta.append({"key": row.key, "arch": row.arch})
    n_workers = profile.workers if workers is None else workers
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    from ..progress import Progress

    per_arch = {a: sum(1 for m in meta if m["arch"] == a) for a in dict.fromkeys(m["arch"] for m in meta)}
    bar = Progress("centralities", per_arch, unit="runs", show=progress)
    # runs of one architecture together, so that a worker reuses its traced plan
    order = sorted(range(len(tasks)), key=lambda i: meta[i]["arch"])
    if n_workers <= 1 or len(tasks) <= 1:
        import torch

        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for i in order:
                results[i] = _task(*tasks[i])
                bar.update(meta[i]["arch"])
        finally:
            torch.set_num_threads(prev)
    else:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        with cf.ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_worker_init) as pool:
            futures = {pool.submit(_task, *tasks[i]): i for i in order}
            for fut in cf.as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update(meta[futures[fut]]["arch"])
    bar.close()
    rows = [{**m, **r} for m, r in zip(meta, results)]
    df = pd.DataFrame(rows)
    for kind in KINDS:
        if f"{kind}_seconds" not in df:
            df[f"{kind}_seconds"] = np.nan
    first = ["key", "arch", "n_snapshots", "rolled_seconds", "unrolled_seconds"]
    df = df[first + [c for c in df.columns if c not in first]]
    files.write_table(profile, "centralities.csv", df)
    return df
