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
checked before the run starts) and every convolution, linear layer and dropout mask computed
through :mod:`paperlib.blas` (all GEMMs on the pinned OpenBLAS; :func:`paperlib.train.device.portable_layers`),
``torch.manual_seed(seed)`` before building the model (on the CPU, so the initial weights are
the same on every device), and a ``torch.Generator``
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

Populations of runs (a profile's, in parallel) are :mod:`paperlib.train.populations`.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

from .. import __version__, files, kernels, paths
from . import data, device as dev
from .models import build_model
from ..profile_types import Population, Profile
from .store import Run, RunStore, load_tensors, save_tensors

TRAIN_VERSION = 5  # bump when a change to this module changes what a run produces (3: pinned CPU kernels; 4: portable convolutions; 5: every GEMM on OpenBLAS)
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
    """Specifications of every run of a population (the grid's Cartesian product, or its own draws)."""
    g = pop.grid
    if hasattr(g, "run_fields"):  # hyperparameters drawn per network (paperlib.profiles_fmnist.ZooDraws)
        out = []
        for f in g.run_fields(profile):
            spec = run_spec(profile, pop, f["lr"], f["dropout"], f["seed"], f["optimizer"])
            spec["model_kwargs"] = {**spec["model_kwargs"], **f["model_kwargs"]}
            spec["train_limit"] = f["train_limit"]
            out.append(spec)
        return out
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
    model = dev.portable_layers(dev.deterministic_pools(_make_model(spec)).to(device), spec["device"],
                               spec["precision"])
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
