"""The one import path: an imported profile's populations into the run store and ``runs.csv``.

:func:`import_profile` reads every population of an imported profile (its profile file, see
:mod:`paperlib.profile_files`) network by network and writes what ``01_train`` writes: one
run directory per network in the profile's run store (``spec.json``, ``meta.json``,
``snap_XXX.pt``) and ``results/<profile>/runs.csv``, so that steps 02-07 run on it unchanged.
Beside them, ``import_skipped.csv`` lists every network (or population) that could not be read and
why, and ``imported.csv`` what each imported network's horizon holds.

What is read, and the information horizon. The weights of epochs ``0..t_max`` only (0 where the
source has it), one state_dict at a time, each checked against the population's model
(:func:`paperlib.sources.core.check_state_dict`) and written as a snapshot; accuracies of every
epoch. Walking epochs ``1..t_max`` in order:

* a missing checkpoint or accuracy at epoch ``e`` (a ragged trajectory) ends the run's horizon:
  ``epochs_trained = e - 1``, so the run is *decided* at every ``t >= e`` (left out and counted,
  ``n_decided``), never filled in; its label is still its final accuracy;
* a non-finite checkpoint or accuracy at ``e`` marks the run ``diverged`` at ``e`` exactly as
  training does (``status``, ``diverged_epoch``; its history ends there, it is labelled low);
* a non-finite accuracy after ``t_max`` marks it diverged at that epoch (labelled low, alive before).

The final accuracy is the source's test accuracy at its last epoch (``early_stop_epoch``), in
percent. Runs are keyed by a hash of their specification (source, the source's run name,
dataset, model and hyperparameters); a run already in the store whose files have not changed
(sizes and modification times) is not rewritten, so cached centralities stay valid.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import files, paths
from ..train.store import RunStore
from . import own, raytune, smallcnnzoo
from .core import IMPORT_VERSION, OptionError, RunRecord, RunRef, SourceError, check_state_dict, configuration, \
    finite, standard_hparams
from ..profile_files import ImportedPopulation, ImportPlan, plan_of

SOURCES = {"runs": own, "raytune": raytune, "smallcnnzoo": smallcnnzoo}
SKIPPED_COLUMNS = files.IMPORT_SKIPPED_COLUMNS
IMPORTED_COLUMNS = files.IMPORTED_COLUMNS


@dataclass
class ImportResult:
    runs: pd.DataFrame  # runs.csv
    skipped: pd.DataFrame  # import_skipped.csv
    imported: pd.DataFrame  # imported.csv
    seconds: float
    warnings: tuple[str, ...] = ()  # t_max or epochs beyond what a population's networks hold (horizon_warnings)


def _matches(hparams: dict[str, Any], where: dict[str, Any]) -> bool:
    for k, want in where.items():
        have = hparams.get(k)
        options = want if isinstance(want, list) else [want]
        if not any(have == w or str(have) == str(w) for w in options):
            return False
    return True


def select(refs: list[RunRef], ip: ImportedPopulation, networks: int = 0) -> list[RunRef]:
    """The networks to import: those matching ``where``, then at most ``limit`` (or ``networks``),
    evenly spread over the sorted list (``numpy.linspace``, as ``paperlib.train.trainer.profile_specs``)."""
    refs = [r for r in refs if _matches(r.hparams, ip.where)]
    n = networks or ip.limit
    if n and n < len(refs):
        refs = [refs[int(i)] for i in np.unique(np.linspace(0, len(refs) - 1, n).round())]
    return refs


def _fingerprint(ref: RunRef) -> str:
    h = hashlib.sha256(f"{IMPORT_VERSION}|{ref.name}".encode())
    for f in ref.files:
        st = f.stat()
        h.update(f"|{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    if not isinstance(ref.location, Path):
        h.update(np.asarray(ref.location).tobytes())
    return h.hexdigest()[:32]


def _spec(ip: ImportedPopulation, rec: RunRecord) -> dict[str, Any]:
    hp = standard_hparams(rec.hparams)
    return {
        "source": ip.source, "source_run": rec.name, "source_config": rec.hparams,
        "dataset": ip.dataset, "image_size": ip.image_size, "train_limit": None,
        "model": ip.model, "model_kwargs": dict(ip.model_kwargs),
        "lr": hp["lr"], "dropout": hp["dropout"], "seed": hp["seed"],
        "optimizer": configuration(rec.hparams, rec.name if ip.group == "run" else None),
        "epochs": int(rec.final_epoch), "device": "unknown", "precision": "float32", "isa": "unknown",
        "import_version": IMPORT_VERSION,
    }


def _ok(v: float | None) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def write_run(store: RunStore, ip: ImportedPopulation, ref: RunRef, rec: RunRecord, models: dict) -> dict[str, Any]:
    """Check and write one network; return its ``meta.json`` with ``key``. Raises SourceError (nothing of the
    run is kept as finished then)."""
    from ..train.models import build_model

    spec = _spec(ip, rec)
    run = store.run(spec)
    fp = _fingerprint(ref)
    meta = run.meta()
    if meta.get("status") in ("finished", "diverged") and meta.get("source_fingerprint") == fp:
        return {**meta, "key": run.key, "reused": True}
    if run.meta_path.exists():
        run.meta_path.unlink()  # not finished until the new meta is written
    dropout = spec["dropout"] if math.isfinite(spec["dropout"]) else 0.0
    if dropout not in models:
        models[dropout] = build_model(ip.model, ip.num_classes, ip.in_channels, ip.image_size, dropout=dropout,
                                      **ip.model_kwargs)
    model = models[dropout]
    snapshots, status, div_epoch, end = {}, "finished", None, min(ip.t_max, rec.final_epoch)
    horizon_end = end
    for e in range(0, end + 1):
        if e not in rec.weights or (e > 0 and e not in rec.accuracy):
            if e == 0:
                continue  # the initialisation is optional
            horizon_end = e - 1
            break
        state = check_state_dict(model, rec.weights[e](), rec.weight_files[e], rec.name, e)
        snapshots[str(e)] = run.save_snapshot(e, state)
        if e > 0 and (not finite(state) or not _ok(rec.accuracy.get(e))):
            status, div_epoch, horizon_end = "diverged", e, e
            break
    for e in run.snapshot_epochs():  # from an earlier import of other files: not part of this run any more
        if str(e) not in snapshots:
            run.snapshot_path(e).unlink()
    if status == "finished":
        bad = [e for e in sorted(rec.accuracy) if e > horizon_end and not _ok(rec.accuracy[e])]
        if bad:
            status, div_epoch = "diverged", bad[0]
    last = div_epoch if status == "diverged" else rec.final_epoch
    if status == "diverged" and div_epoch <= end:
        trained = div_epoch  # as training: the epoch it diverged at
    elif horizon_end < end:
        trained = horizon_end  # ragged: decided from the first missing epoch on
    else:
        trained = last
    history = [{"epoch": e, "test_acc": rec.accuracy[e] if _ok(rec.accuracy[e]) else None,
                "train_loss": rec.loss[e] if _ok(rec.loss.get(e)) else None, "seconds": rec.seconds.get(e)}
               for e in sorted(rec.accuracy) if e <= last]
    accs = [(h["test_acc"], h["epoch"]) for h in history if h["test_acc"] is not None and h["epoch"] > 0]
    best = max(accs, key=lambda a: (a[0], -a[1])) if accs else (float("nan"), None)
    final = rec.accuracy.get(last, float("nan"))
    secs = [h["seconds"] for h in history if h["epoch"] > 0 and _ok(h["seconds"])]
    meta = {
        "status": status, "history": history, "snapshots": snapshots,
        "epochs_trained": int(trained),
        "early_stop_epoch": int(last), "final_acc": float(final) if _ok(final) else float("nan"),
        "best_acc": best[0], "best_epoch": best[1], "diverged_epoch": div_epoch,
        "train_seconds": float(sum(secs)) if secs else float("nan"),
        "epoch_seconds": float(np.mean(secs)) if secs else float("nan"),
        "device": "unknown", "precision": "float32", "source_fingerprint": fp,
        "horizon_end": int(horizon_end), "imported": {"source": ip.source, "run": rec.name,
                                                       "accuracy_file": paths.relative(rec.accuracy_file)
                                                       if rec.accuracy_file else ""},
    }
    run.write_meta(meta)
    return {**meta, "key": run.key, "reused": False}


def _row(arch: str, spec_like: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    from ..train.populations import _row as train_row

    return train_row(arch, spec_like, meta, meta["key"])


def import_profile(profile: Any, networks: int = 0, progress: bool = True) -> ImportResult:
    """Import every population of an imported profile; write ``runs.csv``, ``import_skipped.csv``,
    ``imported.csv`` and the ``import`` section of ``metrics.json``.

    ``networks`` (0: the profile file's ``limit``) caps the networks per population. A bad network
    is skipped and listed; a population that cannot be listed at all (a missing folder, a layout
    that does not fit its rows) is listed with run ``*``. Raises SourceError when nothing at all
    could be imported.
    """
    from tqdm.auto import tqdm

    from ..train.trainer import quiet

    name = profile if isinstance(profile, str) else profile.name
    plan: ImportPlan | None = plan_of(name)
    if plan is None:
        raise KeyError(f"profile {name!r} is not an imported profile (no profile file defines it)")
    _check_datasets(plan)
    store = RunStore(paths.runs_dir(name))
    t0 = time.perf_counter()
    rows, skipped, imported = [], [], []
    for ip in plan.populations:
        src = SOURCES[ip.source]
        try:
            refs = select(src.list_runs(ip), ip, networks)
        except SourceError as exc:
            skipped.append({"arch": ip.arch, "source": ip.source, "run": "*", "file": paths.relative(exc.file),
                            "epoch": exc.epoch, "error": type(exc).__name__, "reason": str(exc)})
            continue
        models: dict = {}
        for ref in tqdm(refs, desc=f"{name}: import {ip.arch}", disable=quiet() or not progress):
            t1 = time.perf_counter()
            try:
                rec = src.read_run(ref, ip)
                meta = write_run(store, ip, ref, rec, models)
            except OptionError:
                raise  # the profile file is wrong for every network: stop, naming it
            except SourceError as exc:
                skipped.append({"arch": ip.arch, "source": ip.source, "run": ref.name,
                                "file": paths.relative(exc.file), "epoch": exc.epoch, "error": type(exc).__name__,
                                "reason": str(exc)})
                continue
            spec = _spec(ip, rec)
            rows.append(_row(ip.arch, spec, meta))
            imported.append({"key": meta["key"], "arch": ip.arch, "source": ip.source, "run": ref.name,
                             "epochs_in_horizon": len([e for e in meta["snapshots"] if int(e) > 0]),
                             "horizon_end": meta["horizon_end"], "status": meta["status"],
                             "final_epoch": meta["early_stop_epoch"], "final_acc": meta["final_acc"],
                             "seconds": time.perf_counter() - t1})
    seconds = time.perf_counter() - t0
    skipped_df = pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)
    files.write_table(name, "import_skipped.csv", skipped_df)
    if not rows:
        first = skipped[0]["reason"] if skipped else "no networks matched"
        raise SourceError(plan.file, None, f"nothing imported ({len(skipped)} skipped; first: {first})")
    runs = pd.DataFrame(rows, columns=files.RUN_COLUMNS)
    imported_df = pd.DataFrame(imported, columns=IMPORTED_COLUMNS)
    notes = horizon_warnings(plan, imported_df, plan.file)
    files.write_table(name, "imported.csv", imported_df)
    files.write_table(name, "runs.csv", runs)
    files.update_metrics(name, "import", {
        "n_imported": int(len(runs)), "n_skipped": int(len(skipped_df)), "seconds": round(seconds, 2),
        "seconds_per_network": round(seconds / max(len(runs), 1), 4),
        "by_arch": {a: int(n) for a, n in runs["arch"].value_counts().sort_index().items()},
        "warnings": list(notes)})
    return ImportResult(runs, skipped_df, imported_df, seconds, notes)


def horizon_warnings(plan: ImportPlan, imported: pd.DataFrame, file: Path | str) -> tuple[str, ...]:
    """Per population, a warning when networks hold fewer epochs than ``t_max`` (or than ``epochs``).

    A warning, not a refusal: such networks are imported correctly and are *decided* from the
    first epoch they lack (left out of every later ``t``, as a ragged trajectory), so nothing is
    wrong in what is written; but every ``t`` beyond the epochs all networks hold evaluates no
    network, which a lower ``t_max`` says plainly. The runner prints these after 01_import.
    """
    out = []
    for ip in plan.populations:
        rows = imported[imported["arch"] == ip.arch]
        if rows.empty:
            continue
        final = rows["final_epoch"].astype(int)
        short = int((final < ip.t_max).sum())
        if short:
            out.append(f"{file}: population {ip.arch}: {short} of {len(rows)} networks hold fewer epochs than "
                       f"t_max = {ip.t_max} (their last epoch: {int(final.min())}..{int(final.max())}); they are "
                       f"decided from the first epoch they lack, and no network is evaluated at t > "
                       f"{int(final.min()) if short == len(rows) else int(final.max())}. Set t_max <= "
                       f"{int(final.min())} for population {ip.arch} to use every network at every t")
        if ip.epochs > max(int(final.max()), ip.t_max):  # epochs = t_max: said by the warning above
            out.append(f"{file}: population {ip.arch}: epochs = {ip.epochs} (from the profile file, or its default "
                       f"for source {ip.source!r}), but its networks end at epoch {int(final.max())}; set "
                       f"epochs = {int(final.max())} for population {ip.arch} (the profile records it as the "
                       "population's training length)")
    return tuple(out)


def _check_datasets(plan: ImportPlan) -> None:
    from ..train import data

    for ip in plan.populations:
        info = dict.get(data.DATASETS, ip.dataset)
        if info is not None and (info.in_channels, info.num_classes) != (ip.in_channels, ip.num_classes):
            raise SourceError(plan.file, None, f"dataset {ip.dataset!r} is paperlib's own, with {info.in_channels} "
                              f"channels and {info.num_classes} classes; name the imported data otherwise")
