"""Training populations of networks into the run store, one snapshot per epoch.

A *run* is one network trained from one specification (:func:`run_spec`): dataset, image
size, model and its keyword arguments, learning rate, dropout, seed, optimizer, batch size,
maximum epochs, patience, burn-in, device, precision, threads, the CPU kernels' instruction-set
class (:func:`paperlib.kernels.isa_class`) and :data:`TRAIN_VERSION`. The
specification is profile-independent and hashed by :func:`paperlib.train.store.spec_key` into the
run's directory name, so the same network is never trained twice, and stores of several machines
merge by copying directories without mixing runs whose numbers could differ (device, precision
and kernel class are in the key; see :mod:`paperlib.train.device` and :mod:`paperlib.kernels`).

:func:`train_run` trains one network, deterministically and bit-identically whatever the machine:
inside the run, torch uses ``spec["threads"]`` intra-op threads (1 in every profile) whatever
the process had, deterministic algorithms, the pinned CPU kernels (:mod:`paperlib.kernels`;
checked before the run starts), ``torch.manual_seed(seed)`` before building the model
(on the CPU, so the initial weights are the same on every device), and a ``torch.Generator``
seeded with ``seed`` on the training device for the shuffling and the augmentation. The data are
one tensor per split on the device (:func:`paperlib.train.data.load_tensors`), augmented and normalised
there as in the authors' code (random crop with 4-pixel padding and horizontal flip for CIFAR-10
and Tiny-ImageNet; their normalisation ``(0.5, 0.5, 0.5), (0.5, 0.5, 0.5)``), with their optimiser
(SGD momentum 0.9, or Adam), batch size and schedule (constant learning rate). It writes

- ``snap_000.pt`` (initialisation) and ``snap_NNN.pt`` after every epoch;
- ``resume.pt``: optimizer state, RNG states and the epoch, after every epoch (removed once the
  run has finished: a finished run is never resumed);
- ``meta.json``: status, per-epoch history (test accuracy, training loss, seconds),
  early-stopping epoch, final accuracy, the size and SHA-256 of every snapshot, and the
  environment (torch and paperlib versions, device and its name, precision, threads).

All files are written atomically, so a run killed at any moment resumes from its last complete
epoch and ends with weights bit-identical to those of an uninterrupted run. Finished runs are
skipped after their snapshots are checked against the sizes and checksums in their meta
(:func:`check_run`): a run with a missing, truncated or altered snapshot is retrained from
scratch, which gives the same snapshots again.

Early stopping, as the authors' code (``EarlyStopping(mode="max", patience)`` on the test
accuracy, and a stop taken only when ``epoch > 10``): after epoch ``e`` (counted from 1) the run
stops when ``e > burn_in`` and the test accuracy has not exceeded the best accuracy of the
earlier trained epochs for ``patience`` consecutive epochs; otherwise at the maximum number of
epochs. The untrained network (epoch 0) does not count, as the authors evaluate only after
training epochs. Their loop counts epochs from 0, so their ``epoch > 10`` is our ``e > 11``; the
profiles' ``burn_in = 10`` states the rule in our 1-based count (a stop at ``e >= 11``). ``e`` is the
*early-stopping epoch*; the *final accuracy* is the test accuracy at epoch ``e`` (the weights of
the last snapshot). The best accuracy and its epoch are recorded beside it.

A run whose training loss (summed over the epoch on the device, so no per-batch
synchronisation) or weights become NaN or infinite stops at that epoch, is marked
``"diverged"`` with ``diverged_epoch``, and keeps its snapshots; its final accuracy is the
measured test accuracy of its last snapshot (NaN logits predict class 0, about chance level).

:func:`train_profile` trains every population of a profile through a
``concurrent.futures.Executor``, the one mechanism for parallel training (see :func:`executor`):
a local process pool (``engine="process"``) or Dask (``engine="dask"``). Its progress, runs done
per population, goes through :class:`paperlib.progress.Progress` (a ``tqdm.auto`` bar, off when
``PAPERLIB_QUIET=1`` or under pytest; lines on the terminal under the pipeline's runner).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import math
import multiprocessing
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .. import __version__, files, kernels, paths
from . import data, device as dev
from .models import build_model
from ..profile_types import Population, Profile
from ..files import RUN_COLUMNS
from .store import Run, RunStore, load_tensors, save_tensors

TRAIN_VERSION = 3  # bump when a change to this module changes what a run produces (3: pinned CPU kernels)
EVAL_BATCH = 512

SPEC_FIELDS = (
    "dataset", "image_size", "train_limit", "model", "model_kwargs", "lr", "dropout", "seed", "optimizer",
    "momentum", "batch_size", "epochs", "patience", "burn_in", "device", "precision", "threads", "isa", "version",
)


class RunInterrupted(RuntimeError):
    """Raised by a test or caller's ``on_epoch_end`` hook to stop a run between epochs."""


# --------------------------------------------------------------------------- specifications
def run_spec(profile: Profile, pop: Population, lr: float, dropout: float, seed: int,
             optimizer: str = "sgd") -> dict[str, Any]:
    """The full, profile-independent specification of one run (what its key hashes).

    ``device`` is resolved here (``"auto"`` becomes ``"cpu"`` or ``"cuda"`` on the machine that
    builds the specification): on a cluster whose client has no GPU, set ``device="cuda"``.
    """
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
        "burn_in": profile.burn_in,
        "device": dev.resolve_device(profile.device),
        "precision": dev.check_precision(profile.precision),
        "threads": int(profile.threads),
        "isa": kernels.isa_class(),
        "version": TRAIN_VERSION,
    }


def population_specs(profile: Profile, pop: Population) -> list[dict[str, Any]]:
    """Specifications of every run of a population (the grid's Cartesian product)."""
    g = pop.grid
    return [run_spec(profile, pop, lr, d, s, o)
            for o in g.optimizers for lr in g.lrs for d in g.dropouts for s in g.seeds]


def profile_specs(profile: Profile, networks: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """``(arch, spec)`` for every run of every population of a profile.

    ``networks`` keeps that many runs per population, evenly spaced over the grid's order
    (optimizer, learning rate, dropout, seed; ``numpy.linspace`` rounded), so a shrunk population
    still spans the grid's learning rates and dropouts. ``None`` keeps them all.
    """
    out = []
    for pop in profile.populations:
        specs = population_specs(profile, pop)
        if networks is not None and networks < len(specs):
            if networks < 1:
                raise ValueError(f"paperlib.train.trainer: networks={networks} must be >= 1")
            specs = [specs[int(i)] for i in np.unique(np.linspace(0, len(specs) - 1, networks).round())]
        out += [(pop.arch, spec) for spec in specs]
    return out


def check_spec(spec: dict[str, Any]) -> None:
    """Refuse a specification with missing or unknown fields, or an unresolved device."""
    missing = [f for f in SPEC_FIELDS if f not in spec]
    extra = sorted(set(spec) - set(SPEC_FIELDS))
    if missing or extra:
        raise ValueError(f"paperlib.train.trainer: run specification has missing fields {missing} / unknown fields "
                         f"{extra}; build it with paperlib.train.trainer.run_spec")
    if spec["device"] not in ("cpu", "cuda"):
        raise ValueError(f"paperlib.train.trainer: spec device={spec['device']!r} must be resolved to 'cpu' or "
                         "'cuda' (paperlib.train.device.resolve_device)")
    dev.check_precision(spec["precision"])
    if spec["isa"] != kernels.isa_class():
        raise ValueError(f"paperlib.train.trainer: spec isa={spec['isa']!r} but this machine's CPU kernels are "
                         f"{kernels.isa_class()!r} (paperlib.kernels): its snapshots would not be the ones "
                         "that key promises; train it on a machine of that class")
    if spec["version"] != TRAIN_VERSION:
        raise ValueError(f"paperlib.train.trainer: spec version {spec['version']} is not this trainer's {TRAIN_VERSION}")


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
    if spec["optimizer"] == "adam":  # the authors' --use_adam: Adam with weight decay 1e-4
        return torch.optim.Adam(params, lr=spec["lr"], weight_decay=1e-4)
    raise ValueError(f"unknown optimizer {spec['optimizer']!r}; use 'sgd' or 'adam'")


@torch.no_grad()
def evaluate(model: nn.Module, tensors: data.TensorData, precision: str = "float32") -> float:
    """Test accuracy in %. Non-finite logits are compared as ``torch.argmax`` does (NaN wins)."""
    model.eval()
    device = tensors.device
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for x, y in tensors.test_batches(EVAL_BATCH):
        with dev.autocast(device, precision):
            logits = model(x)
        correct += (logits.argmax(1) == y).sum()
    return 100.0 * int(correct) / max(len(tensors.y_test), 1)


def _finite(model: nn.Module) -> bool:
    flags = [torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def _train_epoch(model: nn.Module, opt: torch.optim.Optimizer, tensors: data.TensorData, batch_size: int,
                 gen: torch.Generator, precision: str) -> tuple[float, bool]:
    """One epoch; returns (mean training loss, diverged).

    The loss is summed on the device and read once at the end of the epoch (no per-batch
    synchronisation); the epoch has diverged when that sum or any weight is not finite.
    """
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    device = tensors.device
    total = torch.zeros((), dtype=torch.float32, device=device)
    n = 0
    for x, y in tensors.train_batches(batch_size, gen):
        with dev.autocast(device, precision):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach().float() * len(y)
        n += len(y)
    mean = float(total) / max(n, 1)
    return mean, not (math.isfinite(mean) and _finite(model))


def early_stop(history: list[dict[str, Any]], patience: int, burn_in: int = 0) -> bool:
    """True when the run stops after the last epoch of ``history`` (see the module docstring).

    ``history`` holds epochs ``0, 1, ..., e`` in order; epoch 0 (the initialisation) does not
    count. The run stops when ``e > burn_in`` and the last ``patience`` epochs did not beat the
    best accuracy of the trained epochs before them.
    """
    accs = [h["test_acc"] for h in history[1:]]
    epoch = history[-1].get("epoch", len(history) - 1) if history else 0
    if epoch <= burn_in or len(accs) <= patience:
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


def check_run(run: Run, checksums: bool = True) -> list[str]:
    """Problems of a finished run's snapshots against its meta (``[]``: intact or not finished).

    Needs the snapshot records (``meta["snapshots"]``) written by this trainer; every epoch
    ``0..early_stop_epoch`` must be recorded.
    """
    meta = run.meta()
    if meta.get("status") not in {"finished", "diverged"}:
        return []
    records = meta.get("snapshots") or {}
    problems = [f"{run.snapshot_path(e)}: not recorded in {run.meta_path}"
                for e in range(int(meta["early_stop_epoch"]) + 1) if str(e) not in records]
    return problems + run.check_snapshots(records, checksums=checksums)


def reset_run(run: Run) -> None:
    """Delete everything of a run but its ``spec.json`` (snapshots, resume point, meta, caches)."""
    for path in run.dir.iterdir():
        if path.name != "spec.json" and path.is_file():
            path.unlink()


def train_run(store_root: Path | str, spec: dict[str, Any], *, data_root: Path | str | None = None,
              progress: bool = False, checksums: bool = True, gpu: int | None = None,
              on_epoch_end: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train (or resume, or skip) the run of ``spec`` in the store at ``store_root``.

    Parameters
    ----------
    store_root
        directory of the run store (:class:`paperlib.train.store.RunStore`).
    spec
        the run's specification (:func:`run_spec`).
    data_root
        root of the datasets (default :func:`paperlib.paths.data_root`).
    progress
        show a progress bar over the epochs.
    checksums
        a finished run is checked against the sizes and (when ``True``) SHA-256 of its snapshots
        and retrained from scratch when one is missing or differs.
    gpu
        index of the GPU to use for a ``"cuda"`` run (default: the process's current GPU).
    on_epoch_end
        called with the epoch number after the epoch's files are written; an exception it
        raises stops the run there (used to test resuming).

    Returns
    -------
    dict
        the run's ``meta.json``: status, history, early_stop_epoch, final_acc, ... and ``key``.
    """
    check_spec(spec)
    run = RunStore(Path(store_root)).run(spec)
    meta = run.meta()
    if meta.get("status") in {"finished", "diverged"}:
        problems = check_run(run, checksums)
        if not problems:
            return {**meta, "key": run.key}
        warnings.warn(f"run {run.key}: retraining from scratch: {'; '.join(problems)}", stacklevel=2)
        reset_run(run)
    if spec["device"] == "cuda":
        dev.resolve_device("cuda")  # a clear error without a GPU
        if gpu is not None:
            torch.cuda.set_device(gpu)
    with dev.run_context(spec["device"], spec["threads"]):
        return _train(run, spec, data_root, progress, on_epoch_end)


def _train(run: Run, spec: dict[str, Any], data_root: Path | str | None, progress: bool,
           on_epoch_end: Callable[[int], None] | None) -> dict[str, Any]:
    device = dev.torch_device(spec["device"])
    precision = spec["precision"]
    tensors = data.load_tensors(spec["dataset"], spec["image_size"], spec["train_limit"], root=data_root,
                                device=device)
    torch.manual_seed(spec["seed"])
    model = dev.deterministic_pools(_make_model(spec)).to(device)
    opt = _make_optimizer(spec, model.parameters())
    gen = torch.Generator(device=device).manual_seed(spec["seed"])
    env = {**dev.environment(device), "paperlib": __version__, "device": spec["device"],
           "precision": precision, "threads": torch.get_num_threads(), "kernels": kernels.state()}

    resume_path = run.dir / "resume.pt"
    if resume_path.exists():
        state = load_tensors(resume_path)
        epoch = int(state["epoch"])
        model.load_state_dict(run.load_snapshot(epoch))
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        gen.set_state(state["generator"])
        history = list(state["history"])
        snapshots = dict(state["snapshots"])
    else:
        epoch = 0
        t0 = time.perf_counter()
        snapshots = {"0": run.save_snapshot(0, model.state_dict())}
        history = [{"epoch": 0, "test_acc": evaluate(model, tensors, precision), "train_loss": None,
                    "seconds": time.perf_counter() - t0}]
        _checkpoint(run, epoch, opt, gen, history, snapshots, env)

    status, diverged_epoch = "finished", None
    bar = None
    if progress and not quiet():
        from tqdm.auto import tqdm
        bar = tqdm(total=spec["epochs"], initial=epoch, desc=run.key, leave=False)
    try:
        while epoch < spec["epochs"] and not early_stop(history, spec["patience"], spec["burn_in"]):
            epoch += 1
            t0 = time.perf_counter()
            loss, diverged = _train_epoch(model, opt, tensors, spec["batch_size"], gen, precision)
            acc = evaluate(model, tensors, precision)
            snapshots[str(epoch)] = run.save_snapshot(epoch, model.state_dict())
            history.append({"epoch": epoch, "test_acc": acc,
                            "train_loss": loss if math.isfinite(loss) else None,
                            "seconds": time.perf_counter() - t0})
            if diverged:
                status, diverged_epoch = "diverged", epoch
                break
            _checkpoint(run, epoch, opt, gen, history, snapshots, env)
            if bar is not None:
                bar.update(1)
            if on_epoch_end is not None:
                on_epoch_end(epoch)
    finally:
        if bar is not None:
            bar.close()
    meta = {**_summary(history, status, diverged_epoch), "snapshots": snapshots, **env}
    run.write_meta(meta)
    resume_path.unlink(missing_ok=True)  # a finished run is never resumed: nothing reads it now
    return {**meta, "key": run.key}


def _checkpoint(run: Run, epoch: int, opt: torch.optim.Optimizer, gen: torch.Generator,
                history: list[dict[str, Any]], snapshots: dict[str, Any], env: dict[str, Any]) -> None:
    """Write ``resume.pt`` (the commit point of an epoch), then the running ``meta.json``."""
    state = {
        "epoch": epoch,
        "optimizer": opt.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "generator": gen.get_state(),
        "history": history,
        "snapshots": snapshots,
    }
    if gen.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(gen.device)
    save_tensors(run.dir / "resume.pt", state)
    run.write_meta({"status": "running", "history": history, "snapshots": snapshots, **env})


def load_model(run: Run, epoch: int) -> nn.Module:
    """The network of ``run`` with the weights of snapshot ``epoch``, in eval mode, on the CPU."""
    model = _make_model(run.spec)
    model.load_state_dict(run.load_snapshot(epoch))
    return model.eval()


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


if __name__ == "__main__":  # pragma: no cover - convenience: python -m paperlib.train.trainer <profile>
    from ..profiles import get_profile

    train_profile(get_profile(sys.argv[1] if len(sys.argv) > 1 else "default"))
