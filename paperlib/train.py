"""Training populations of networks into the run store, one snapshot per epoch.

A *run* is one network trained from one specification (:func:`run_spec`): dataset, image
size, model and its keyword arguments, learning rate, dropout, seed, optimizer, batch size,
maximum epochs, patience and :data:`TRAIN_VERSION`. The specification is profile-independent
and hashed by :func:`paperlib.store.spec_key` into the run's directory name, so the same
network is never trained twice and stores of several machines merge by copying directories.

:func:`train_run` trains one network on the CPU, deterministically: ``torch.manual_seed(seed)``
before building the model, a ``torch.Generator`` seeded with ``seed`` for the shuffling,
no loader worker processes and a fixed number of threads. It writes

- ``snap_000.pt`` (initialisation) and ``snap_NNN.pt`` after every epoch;
- ``resume.pt``: optimizer state, RNG states and the epoch, after every epoch;
- ``meta.json``: status, per-epoch history (test accuracy, training loss, seconds),
  early-stopping epoch, final accuracy.

All files are written atomically, so a run killed at any moment resumes from its last complete
epoch and ends with weights bit-identical to those of an uninterrupted run. Finished runs are
skipped.

Early stopping (patience 5 on test accuracy, as the authors' code): training stops after the
first epoch ``e`` at which the test accuracy has not exceeded the best accuracy of the earlier
epochs for ``patience`` consecutive epochs, or at the maximum number of epochs. ``e`` is the
*early-stopping epoch*; the *final accuracy* is the test accuracy of the network at epoch ``e``
(the weights of the last snapshot). The best accuracy and its epoch are recorded beside it.

A run whose training loss or weights become NaN or infinite stops at that epoch, is marked
``"diverged"`` (``diverged_epoch``) and keeps its snapshots; its final accuracy is the measured
test accuracy of its last snapshot (NaN logits predict class 0, i.e. about chance level).

:func:`train_profile` trains every population of a profile through a
``concurrent.futures.Executor``: a local process pool (``engine="process"``) or a Dask cluster
(``engine="dask"``, ``Client(scheduler).get_executor()``, or a ``LocalCluster`` when no scheduler
address is given). Progress bars (``tqdm.auto``) are off when ``PAPERLIB_QUIET=1`` or under pytest.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from . import data, paths
from .models import build_model
from .profiles import Population, Profile
from .store import Run, RunStore, atomic_write_bytes, load_tensors, save_tensors

TRAIN_VERSION = 1  # bump when a change to this module changes what a run produces
EVAL_BATCH = 512

RUN_COLUMNS = [
    "key", "arch", "dataset", "model", "lr", "dropout", "seed", "optimizer", "status", "diverged",
    "epochs_trained", "early_stop_epoch", "final_acc", "best_acc", "best_epoch", "diverged_epoch",
    "max_epochs", "train_seconds", "epoch_seconds",
]


class RunInterrupted(RuntimeError):
    """Raised by a test or caller's ``on_epoch_end`` hook to stop a run between epochs."""


# --------------------------------------------------------------------------- specifications
def run_spec(profile: Profile, pop: Population, lr: float, dropout: float, seed: int,
             optimizer: str = "sgd") -> dict[str, Any]:
    """The full, profile-independent specification of one run (what its key hashes)."""
    return {
        "dataset": pop.dataset,
        "image_size": profile.image_size[pop.dataset],
        "train_limit": profile.train_limit,
        "model": pop.model,
        "model_kwargs": dict(pop.model_kwargs),
        "lr": float(lr),
        "dropout": float(dropout),
        "seed": int(seed),
        "optimizer": optimizer,
        "momentum": 0.9,
        "batch_size": profile.batch_size,
        "epochs": pop.epochs,
        "patience": profile.patience,
        "version": TRAIN_VERSION,
    }


def population_specs(profile: Profile, pop: Population) -> list[dict[str, Any]]:
    """Specifications of every run of a population (the grid's Cartesian product)."""
    g = pop.grid
    return [run_spec(profile, pop, lr, d, s, o)
            for o in g.optimizers for lr in g.lrs for d in g.dropouts for s in g.seeds]


def profile_specs(profile: Profile) -> list[tuple[str, dict[str, Any]]]:
    """``(arch, spec)`` for every run of every population of a profile."""
    return [(pop.arch, spec) for pop in profile.populations for spec in population_specs(profile, pop)]


# --------------------------------------------------------------------------- one run
def quiet() -> bool:
    """Progress bars off: ``PAPERLIB_QUIET=1`` or running under pytest."""
    return os.environ.get("PAPERLIB_QUIET", "") not in {"", "0"} or "PYTEST_CURRENT_TEST" in os.environ


def _make_model(spec: dict[str, Any]) -> nn.Module:
    info = data.DATASETS[spec["dataset"]]
    return build_model(spec["model"], info.num_classes, info.in_channels, spec["image_size"],
                       dropout=spec["dropout"], **spec["model_kwargs"])


def _make_optimizer(spec: dict[str, Any], params: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
    if spec["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=spec["lr"], momentum=spec["momentum"])
    if spec["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=spec["lr"])
    raise ValueError(f"unknown optimizer {spec['optimizer']!r}; use 'sgd' or 'adam'")


def _batches(ds: Dataset, batch_size: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled training batches; in-memory tensors are indexed directly (no per-item collation).

    A last batch of a single example is merged into the previous one (batch norm needs two).
    """
    if isinstance(ds, TensorDataset):
        perm = torch.randperm(len(ds), generator=gen)
        chunks = list(perm.split(batch_size))
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            chunks[-2] = torch.cat([chunks[-2], chunks.pop()])
        for idx in chunks:
            yield ds[idx]
    else:
        yield from DataLoader(ds, batch_size=batch_size, shuffle=True, generator=gen, num_workers=0)


@torch.no_grad()
def evaluate(model: nn.Module, ds: Dataset) -> float:
    """Test accuracy in %. Non-finite logits are compared as ``torch.argmax`` does (NaN wins)."""
    model.eval()
    correct = total = 0
    if isinstance(ds, TensorDataset):
        x_all, y_all = ds.tensors
        loader = zip(x_all.split(EVAL_BATCH), y_all.split(EVAL_BATCH))
    else:
        loader = DataLoader(ds, batch_size=EVAL_BATCH, shuffle=False, num_workers=0)
    for x, y in loader:
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return 100.0 * correct / max(total, 1)


def _finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def _train_epoch(model: nn.Module, opt: torch.optim.Optimizer, ds: Dataset, batch_size: int,
                 gen: torch.Generator) -> tuple[float, bool]:
    """One epoch; returns (mean training loss, diverged). Stops at the first non-finite loss."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    total, n = 0.0, 0
    for x, y in _batches(ds, batch_size, gen):
        loss = loss_fn(model(x), y)
        if not torch.isfinite(loss):
            return float(loss.item()), True
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.item()) * len(y)
        n += len(y)
    return total / max(n, 1), not _finite(model)


def early_stop(history: list[dict[str, Any]], patience: int) -> bool:
    """True when the last ``patience`` epochs did not beat the best accuracy before them.

    ``history[0]`` is the initialisation (epoch 0) and counts as the first best.
    """
    accs = [h["test_acc"] for h in history]
    if len(accs) <= patience:
        return False
    return max(accs[-patience:]) <= max(accs[:-patience])


def _summary(history: list[dict[str, Any]], status: str, diverged_epoch: int | None) -> dict[str, Any]:
    last = history[-1]
    best = max(history, key=lambda h: h["test_acc"])  # first epoch of the best accuracy
    trained = [h["seconds"] for h in history[1:]]
    return {
        "status": status,
        "history": history,
        "epochs_trained": last["epoch"],
        "early_stop_epoch": last["epoch"],
        "final_acc": last["test_acc"],
        "best_acc": best["test_acc"],
        "best_epoch": best["epoch"],
        "diverged_epoch": diverged_epoch,
        "train_seconds": float(sum(h["seconds"] for h in history)),
        "epoch_seconds": float(sum(trained) / len(trained)) if trained else float("nan"),
    }


def _threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)


def train_run(store_root: Path | str, spec: dict[str, Any], *, threads: int | None = 1,
              data_root: Path | str | None = None, progress: bool = False,
              on_epoch_end: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train (or resume, or skip) the run of ``spec`` in the store at ``store_root``.

    Parameters
    ----------
    store_root
        directory of the run store (:class:`paperlib.store.RunStore`).
    spec
        the run's specification (:func:`run_spec`).
    threads
        ``torch.set_num_threads`` for this process; ``None`` leaves it unchanged.
    data_root
        root of the datasets (default :func:`paperlib.paths.data_root`).
    progress
        show a progress bar over the epochs.
    on_epoch_end
        called with the epoch number after the epoch's files are written; an exception it
        raises stops the run there (used to test resuming).

    Returns
    -------
    dict
        the run's ``meta.json``: status, history, early_stop_epoch, final_acc, ... and ``key``.
    """
    run = RunStore(Path(store_root)).run(spec)
    meta = run.meta()
    if meta.get("status") in {"finished", "diverged"}:
        return {**meta, "key": run.key}
    _threads(threads)
    train_ds, test_ds = data.load_dataset(spec["dataset"], spec["image_size"], spec["train_limit"],
                                          root=data_root)
    torch.manual_seed(spec["seed"])
    model = _make_model(spec)
    opt = _make_optimizer(spec, model.parameters())
    gen = torch.Generator().manual_seed(spec["seed"])

    resume_path = run.dir / "resume.pt"
    if resume_path.exists():
        state = load_tensors(resume_path)
        epoch = int(state["epoch"])
        model.load_state_dict(run.load_snapshot(epoch))
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        gen.set_state(state["generator"])
        history = list(state["history"])
    else:
        epoch = 0
        t0 = time.perf_counter()
        run.save_snapshot(0, model.state_dict())
        history = [{"epoch": 0, "test_acc": evaluate(model, test_ds), "train_loss": None,
                    "seconds": time.perf_counter() - t0}]
        _checkpoint(run, epoch, opt, gen, history)

    status, diverged_epoch = "finished", None
    bar = None
    if progress and not quiet():
        from tqdm.auto import tqdm
        bar = tqdm(total=spec["epochs"], initial=epoch, desc=run.key, leave=False)
    try:
        while epoch < spec["epochs"] and not early_stop(history, spec["patience"]):
            epoch += 1
            t0 = time.perf_counter()
            loss, diverged = _train_epoch(model, opt, train_ds, spec["batch_size"], gen)
            acc = evaluate(model, test_ds)
            run.save_snapshot(epoch, model.state_dict())
            history.append({"epoch": epoch, "test_acc": acc,
                            "train_loss": loss if math.isfinite(loss) else None,
                            "seconds": time.perf_counter() - t0})
            if diverged:
                status, diverged_epoch = "diverged", epoch
                break
            _checkpoint(run, epoch, opt, gen, history)
            if bar is not None:
                bar.update(1)
            if on_epoch_end is not None:
                on_epoch_end(epoch)
    finally:
        if bar is not None:
            bar.close()
    meta = _summary(history, status, diverged_epoch)
    run.write_meta(meta)
    return {**meta, "key": run.key}


def _checkpoint(run: Run, epoch: int, opt: torch.optim.Optimizer, gen: torch.Generator,
                history: list[dict[str, Any]]) -> None:
    """Write ``resume.pt`` (the commit point of an epoch), then the running ``meta.json``."""
    save_tensors(run.dir / "resume.pt", {
        "epoch": epoch,
        "optimizer": opt.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "generator": gen.get_state(),
        "history": history,
    })
    run.write_meta({"status": "running", "history": history})


def load_model(run: Run, epoch: int) -> nn.Module:
    """The network of ``run`` with the weights of snapshot ``epoch``, in eval mode."""
    model = _make_model(run.spec)
    model.load_state_dict(run.load_snapshot(epoch))
    return model.eval()


# --------------------------------------------------------------------------- populations
def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)
    os.environ.setdefault("PAPERLIB_QUIET", "1")


def _mp_context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


@contextlib.contextmanager
def executor(engine: str, workers: int, scheduler: str | None = None) -> Iterator[cf.Executor]:
    """A ``concurrent.futures.Executor`` for ``engine`` ("process" or "dask").

    ``"process"``: a ``ProcessPoolExecutor`` of ``workers`` processes (forkserver or spawn).
    ``"dask"``: ``dask.distributed.Client(scheduler).get_executor()``; without a scheduler
    address a ``LocalCluster`` of ``workers`` single-threaded worker processes is started.
    """
    if engine == "process":
        threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(),
                                    initializer=_worker_init, initargs=(threads,)) as pool:
            yield pool
    elif engine == "dask":
        from dask.distributed import Client, LocalCluster

        if scheduler:
            with Client(scheduler) as client:
                yield client.get_executor()
        else:
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                yield client.get_executor()
    else:
        raise ValueError(f"unknown engine {engine!r}; use 'process' or 'dask'")


def _row(arch: str, spec: dict[str, Any], meta: dict[str, Any], key: str) -> dict[str, Any]:
    return {
        "key": key, "arch": arch, "dataset": spec["dataset"], "model": spec["model"],
        "lr": spec["lr"], "dropout": spec["dropout"], "seed": spec["seed"], "optimizer": spec["optimizer"],
        "status": meta["status"], "diverged": meta["status"] == "diverged",
        "epochs_trained": meta["epochs_trained"], "early_stop_epoch": meta["early_stop_epoch"],
        "final_acc": meta["final_acc"], "best_acc": meta["best_acc"], "best_epoch": meta["best_epoch"],
        "diverged_epoch": meta["diverged_epoch"], "max_epochs": spec["epochs"],
        "train_seconds": meta["train_seconds"], "epoch_seconds": meta["epoch_seconds"],
    }


def train_specs(store_root: Path | str, specs: list[tuple[str, dict[str, Any]]], *, engine: str = "process",
                workers: int = 2, scheduler: str | None = None, desc: str = "networks") -> pd.DataFrame:
    """Train ``(arch, spec)`` pairs into one store; one row per run (order of ``specs``)."""
    from tqdm.auto import tqdm

    store = RunStore(Path(store_root))
    for dataset, size, limit in {(s["dataset"], s["image_size"], s["train_limit"]) for _, s in specs}:
        data.load_dataset(dataset, size, limit)  # a missing dataset fails here, before any work starts
    todo = [s for _, s in specs if not store.run(s).finished]
    bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc=desc, disable=quiet())
    if todo and engine == "process" and workers <= 1:
        for spec in todo:
            train_run(store_root, spec, threads=None, progress=True)
            bar.update(1)
    elif todo:
        threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
        with executor(engine, workers, scheduler) as ex:
            futures = [ex.submit(train_run, str(store_root), spec, threads=threads) for spec in todo]
            for fut in cf.as_completed(futures):
                fut.result()  # re-raises a worker's error
                bar.update(1)
    bar.close()
    rows = []
    for arch, spec in specs:
        run = store.run(spec)
        rows.append(_row(arch, spec, run.meta(), run.key))
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def train_profile(profile: Profile, engine: str = "process", scheduler: str | None = None) -> pd.DataFrame:
    """Train every population of ``profile`` (skipping finished runs); write ``runs.csv``.

    Parameters
    ----------
    profile
        the profile; ``profile.workers`` processes train in parallel.
    engine
        ``"process"`` (local process pool) or ``"dask"``.
    scheduler
        Dask scheduler address (``"tcp://host:8786"``); ``None`` starts a ``LocalCluster``.

    Returns
    -------
    pandas.DataFrame
        one row per run (columns :data:`RUN_COLUMNS`), also written to
        ``results/<profile>/runs.csv``. ``final_acc`` is the test accuracy (%) at the
        early-stopping epoch; seconds are wall-clock times.
    """
    df = train_specs(paths.runs_dir(profile.name), profile_specs(profile), engine=engine,
                     workers=profile.workers, scheduler=scheduler, desc=f"{profile.name}: networks")
    out = paths.ensure(paths.results_dir(profile.name)) / "runs.csv"
    atomic_write_bytes(out, df.to_csv(index=False, float_format="%.6g").encode())
    return df


if __name__ == "__main__":  # pragma: no cover - convenience: python -m paperlib.train <profile>
    from .profiles import get_profile

    train_profile(get_profile(sys.argv[1] if len(sys.argv) > 1 else "default"))
