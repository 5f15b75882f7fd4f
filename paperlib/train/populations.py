"""Populations of runs: every run of a profile trained into the run store, in parallel.

:func:`train_profile` trains every population of a profile through a
``concurrent.futures.Executor``, the one mechanism for parallel training (see :func:`executor`):
a local process pool (``engine="process"``) or Dask (``engine="dask"``). Its progress, runs done
per population, goes through :class:`paperlib.progress.Progress` (a ``tqdm.auto`` bar, off when
``PAPERLIB_QUIET=1`` or under pytest; lines on the terminal under the pipeline's runner).

The runs themselves are trained by :func:`paperlib.train.trainer.train_run`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from .. import files, paths
from ..files import RUN_COLUMNS
from ..profile_types import Profile
from . import data, device as dev
from .store import RunStore
from .trainer import check_run, check_spec, profile_specs, reset_run, train_run


# --------------------------------------------------------------------------- populations
def _worker_init(gpu_queue: Any = None) -> None:
    os.environ.setdefault("PAPERLIB_QUIET", "1")
    if gpu_queue is not None:
        dev.claim_gpu(gpu_queue)


def _mp_context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def effective_workers(device: str, workers: int, runs_per_device: int = 1) -> int:
    """Runs training at once: ``workers`` on the CPU, ``runs_per_device`` per GPU on CUDA.

    On CUDA every GPU of the machine gets ``runs_per_device`` workers (one each by default); the
    profile's ``workers`` counts CPU processes and does not apply. Never below 1.
    """
    if device == "cuda":
        return max(1, dev.gpu_count()) * max(1, runs_per_device)
    return max(1, int(workers))


@contextlib.contextmanager
def executor(engine: str, workers: int, scheduler: str | None = None, *, device: str = "cpu",
             runs_per_device: int = 1) -> Iterator[cf.Executor]:
    """A ``concurrent.futures.Executor`` for ``engine`` ("process" or "dask"): the one mechanism
    by which populations train in parallel, on CPUs and GPUs alike.

    ``"process"``
        a ``ProcessPoolExecutor`` of ``workers`` processes (forkserver or spawn). On CUDA, each
        worker claims one GPU when it starts (:func:`paperlib.train.device.claim_gpu`): every GPU of the
        machine serves ``runs_per_device`` workers, so several small networks share a GPU.
    ``"dask"``
        ``dask.distributed.Client(scheduler).get_executor()``; without a scheduler address a
        ``LocalCluster`` of ``workers`` single-threaded worker processes (at least one). For a
        GPU cluster, start one Dask worker per GPU, each seeing only its GPU and declaring it as
        a resource, e.g. ``CUDA_VISIBLE_DEVICES=0 dask worker tcp://host:8786 --nthreads 1
        --resources GPU=1`` (``dask-cuda``'s ``dask cuda worker`` does the same per GPU). Every
        CUDA run is then submitted with ``resources={"GPU": 1 / runs_per_device}``, so Dask runs
        ``runs_per_device`` of them at once on each GPU and none on workers without a GPU.
    """
    if engine == "process":
        ctx = _mp_context()
        queue = None
        if device == "cuda":
            queue = ctx.Queue()
            slots = dev.gpu_slots(runs_per_device)
            for i in range(workers):
                queue.put(slots[i % len(slots)])
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                    initargs=(queue,)) as pool:
            yield pool
    elif engine == "dask":
        from dask.distributed import Client, LocalCluster

        resources = {"GPU": 1.0 / max(1, runs_per_device)} if device == "cuda" and scheduler else None
        if scheduler:
            with Client(scheduler) as client:
                yield client.get_executor(**({"resources": resources} if resources else {}))
        else:
            with LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                yield client.get_executor()
    else:
        raise ValueError(f"unknown engine {engine!r}; use 'process' or 'dask'")


def _verify(store: RunStore, specs: list[dict[str, Any]], checksums: bool, workers: int) -> list[str]:
    """Check the snapshots of every finished run (threads: hashing releases the GIL); reset the
    runs with problems so they are trained again. Returns the problems found."""
    runs = [store.run(s) for s in specs]
    with cf.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = list(pool.map(lambda r: check_run(r, checksums), runs))
    problems = []
    for run, probs in zip(runs, found):
        if probs:
            reset_run(run)
            problems += probs
    return problems


def _row(arch: str, spec: dict[str, Any], meta: dict[str, Any], key: str) -> dict[str, Any]:
    return {
        "key": key, "arch": arch, "dataset": spec["dataset"], "model": spec["model"],
        "lr": spec["lr"], "dropout": spec["dropout"], "seed": spec["seed"], "optimizer": spec["optimizer"],
        "status": meta["status"], "diverged": meta["status"] == "diverged",
        "epochs_trained": meta["epochs_trained"], "early_stop_epoch": meta["early_stop_epoch"],
        "final_acc": meta["final_acc"], "best_acc": meta["best_acc"], "best_epoch": meta["best_epoch"],
        "diverged_epoch": meta["diverged_epoch"], "max_epochs": spec["epochs"],
        "train_seconds": meta["train_seconds"], "epoch_seconds": meta["epoch_seconds"],
        "device": meta.get("device", spec["device"]), "precision": meta.get("precision", spec["precision"]),
        "isa": spec["isa"],
    }


def snapshot_index(store_root: Path | str, specs: list[tuple[str, dict[str, Any]]]) -> pd.DataFrame:
    """Size and SHA-256 of every snapshot of every run, as their metas record them (``snapshots.csv``)."""
    store = RunStore(Path(store_root))
    rows = []
    for arch, spec in specs:
        run = store.run(spec)
        for epoch, rec in sorted(run.meta().get("snapshots", {}).items(), key=lambda kv: int(kv[0])):
            rows.append({"key": run.key, "arch": arch, "epoch": int(epoch), "bytes": int(rec["bytes"]),
                         "sha256": rec["sha256"]})
    return pd.DataFrame(rows, columns=files.SNAPSHOT_COLUMNS)


def train_specs(store_root: Path | str, specs: list[tuple[str, dict[str, Any]]], *, engine: str = "process",
                workers: int = 2, scheduler: str | None = None, runs_per_device: int = 1,
                checksums: bool = True, desc: str = "networks") -> pd.DataFrame:
    """Train ``(arch, spec)`` pairs into one store; one row per run (order of ``specs``).

    Finished runs are checked first (:func:`check_run`; ``checksums=False`` compares sizes only)
    and those with a missing or altered snapshot are retrained from scratch. The number of
    parallel runs is :func:`effective_workers`; with one, runs train in this process through the
    same :func:`train_run` (threads fixed inside it, as in a worker).
    """
    from ..progress import Progress

    if engine not in ("process", "dask"):
        raise ValueError(f"unknown engine {engine!r}; use 'process' or 'dask'")
    store = RunStore(Path(store_root))
    for _, s in specs:
        check_spec(s)
    for dataset, size, limit in {(s["dataset"], s["image_size"], s["train_limit"]) for _, s in specs}:
        data.load_dataset(dataset, size, limit)  # a missing dataset fails here, before any work starts
    devices = {s["device"] for _, s in specs}
    if "cuda" in devices:
        dev.resolve_device("cuda")
    device = "cuda" if "cuda" in devices else "cpu"
    n = effective_workers(device, workers, runs_per_device)
    t_start = time.perf_counter()
    was_finished = {store.run(s).key for _, s in specs if store.run(s).finished}
    problems = _verify(store, [s for _, s in specs], checksums, n)
    for p in problems:
        warnings.warn(f"retraining: {p}", stacklevel=2)
    arch_of = {id(s): a for a, s in specs}
    todo = [s for _, s in specs if not store.run(s).finished]
    actions = {}  # what this call does to each run: the notebook's summary (df.attrs["training"])
    for _, s in specs:
        run = store.run(s)
        actions[run.key] = ("skipped" if run.finished else "retrained" if run.key in was_finished
                            else "resumed" if (run.dir / "resume.pt").exists() else "trained")
    per_arch = {a: sum(1 for b, _ in specs if b == a) for a in dict.fromkeys(a for a, _ in specs)}
    left = {a: sum(1 for s in todo if arch_of[id(s)] == a) for a in per_arch}
    bar = Progress(desc, per_arch, unit="runs", done={a: per_arch[a] - left[a] for a in per_arch})
    if todo and engine == "process" and n == 1:
        for spec in todo:
            train_run(store_root, spec, progress=True, checksums=checksums)
            bar.update(arch_of[id(spec)])
    elif todo:
        with executor(engine, n, scheduler, device=device, runs_per_device=runs_per_device) as ex:
            gpus = dev.gpu_count() if device == "cuda" and engine == "dask" and not scheduler else 0
            futures = {ex.submit(train_run, str(store_root), spec, checksums=checksums,
                                 gpu=(i % gpus) if gpus else None): arch_of[id(spec)]
                       for i, spec in enumerate(todo)}
            for fut in cf.as_completed(futures):
                fut.result()  # re-raises a worker's error
                bar.update(futures[fut])
    bar.close()
    rows = []
    for arch, spec in specs:
        run = store.run(spec)
        rows.append(_row(arch, spec, run.meta(), run.key))
    df = pd.DataFrame(rows, columns=RUN_COLUMNS)
    df.attrs["training"] = {"actions": actions, "wall_seconds": time.perf_counter() - t_start}
    return df


def train_profile(profile: Profile, engine: str = "process", scheduler: str | None = None,
                  checksums: bool = True, networks: int | None = None) -> pd.DataFrame:
    """Train every population of ``profile`` (skipping intact finished runs); write ``runs.csv``.

    Parameters
    ----------
    profile
        the profile; ``profile.workers`` processes train in parallel on the CPU, or
        ``profile.runs_per_device`` per GPU on CUDA (:func:`effective_workers`); every run uses
        ``profile.threads`` intra-op threads.
    engine
        ``"process"`` (local process pool) or ``"dask"``.
    scheduler
        Dask scheduler address (``"tcp://host:8786"``); ``None`` starts a ``LocalCluster``.
    checksums
        check finished runs' snapshots against their SHA-256 (``False``: sizes only).
    networks
        train only that many networks per population, spread over its grid
        (:func:`profile_specs`); ``None``: all. Used to run the ``paper`` profile's own
        architectures and grids at a shrunk size.

    Returns
    -------
    pandas.DataFrame
        one row per run (columns :data:`paperlib.files.RUN_COLUMNS`), also written to
        ``results/<profile>/runs.csv`` (its seconds to ``timings/runs.csv``), and the SHA-256 of every
        snapshot to ``snapshots.csv``. ``final_acc`` is the test accuracy (%) at the
        early-stopping epoch; seconds are wall-clock times.
    """
    specs = profile_specs(profile, networks)
    df = train_specs(paths.runs_dir(profile.name), specs, engine=engine,
                     workers=profile.workers, scheduler=scheduler, runs_per_device=profile.runs_per_device,
                     checksums=checksums, desc="networks")
    files.write_table(profile, "snapshots.csv", snapshot_index(paths.runs_dir(profile.name), specs))
    files.write_table(profile, "runs.csv", df)
    return df


if __name__ == "__main__":  # pragma: no cover - convenience: python -m paperlib.train.populations <profile>
    from ..profiles import get_profile

    train_profile(get_profile(sys.argv[1] if len(sys.argv) > 1 else "default"))
