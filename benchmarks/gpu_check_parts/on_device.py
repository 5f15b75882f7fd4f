"""Parts 3 and 4 of the GPU check: determinism on the device (the SHA-256 of every snapshot of
three runs of one specification) and the shrunk ``paper`` profile end to end."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any, Callable

from .common import (
    DET_ARCH,
    OPTIONAL_MODULES,
    SKIPPED_OUTPUTS,
    TINY_DET_ARCH,
    TINY_E2E_ARCHS,
    _ensure_tqdm,
    _error_text,
    _figures,
    _missing_optional,
    _module_available,
    _sha256,
    balanced_threshold,
    check,
    compare_hashes,
    device_info,
    environment,
    PartRecord,
)


# =========================================================================== part 3: determinism
def part_determinism(args: argparse.Namespace, rec: PartRecord) -> None:
    from paperlib.train import device as dev, populations, trainer as train
    from paperlib.profiles import get_profile
    from paperlib.train.store import RunStore
    from test_paper_profile import write_cifar10

    _ensure_tqdm(rec.data["notes"])
    device = dev.resolve_device(args.device)
    work = Path(args.work)
    data_root = work / "data"
    if not (data_root / "cifar-10-batches-py").is_dir():
        write_cifar10(data_root)
    os.environ["PAPERLIB_DATA"] = str(data_root)  # the pool's workers read the data root from here
    os.environ["PAPERLIB_VERIFY_DATA"] = "0"
    shrink = dict(train_limit=64, batch_size=32, epochs=1) if args.tiny else dict(train_limit=256, batch_size=32,
                                                                                    epochs=2)
    profile = get_profile("paper", burn_in=2, t_max=1, device=device, **shrink)
    arch = TINY_DET_ARCH if args.tiny else DET_ARCH
    spec = train.run_spec(profile, profile.population(arch), 0.01, 0.0, 0)
    rec.details["spec"] = spec
    rec.details["environment"] = device_info()
    rec.save()

    def hashes(store: Path) -> tuple[list[str], dict[str, Any]]:
        run = RunStore(store).run(spec)
        meta = run.meta()
        shas = [_sha256(run.snapshot_path(e)) for e in run.snapshot_epochs()]
        recorded = [meta.get("snapshots", {}).get(str(e), {}).get("sha256") for e in run.snapshot_epochs()]
        return shas, {"key": run.key, "status": meta.get("status"), "final_acc": meta.get("final_acc"),
                      "device_name": meta.get("device_name"), "train_seconds": meta.get("train_seconds"),
                      "recorded_sha256_match": shas == recorded}

    lists: dict[str, list[str]] = {}
    runs: dict[str, Any] = {}

    def in_process(name: str) -> Callable[[dict[str, Any]], None]:
        def fn(step: dict[str, Any]) -> None:
            train.train_run(work / name, spec, data_root=data_root)
            lists[name], runs[name] = hashes(work / name)
            check(step, "snapshots on disk match the SHA-256 in meta.json", runs[name]["recorded_sha256_match"])
            check(step, f"meta records device {device}", RunStore(work / name).run(spec).meta().get("device") == device)
        return fn

    def pooled(step: dict[str, Any]) -> None:
        df = populations.train_specs(work / "pool", [(arch, spec)], workers=2, runs_per_device=2)
        lists["pool"], runs["pool"] = hashes(work / "pool")
        step["workers"] = populations.effective_workers(device, 2, 2)
        check(step, "the run finished", set(df["status"]) <= {"finished", "diverged"})

    rec.step("train A (in this process)", in_process("a"))
    rec.step("train B (in this process, fresh store)", in_process("b"))
    rec.step("train C (trainer's worker pool, runs_per_device=2)", pooled)
    rec.details["sha256"] = lists
    rec.details["runs"] = runs
    cmp_ab = compare_hashes({k: lists.get(k, []) for k in ("a", "b")})
    cmp_all = compare_hashes({k: lists.get(k, []) for k in ("a", "b", "pool")})
    rec.details["identical_a_b"] = cmp_ab["identical"]
    rec.details["identical_all"] = cmp_all["identical"]
    rec.details["differences"] = cmp_all["differences"]
    rec.details["n_snapshots"] = len(lists.get("a", []))
    rec.save()
    if not cmp_all["identical"]:
        raise RuntimeError("snapshots differ: " + "; ".join(cmp_all["differences"][:5]))


# =========================================================================== part 4: end to end
def part_paper_end_to_end(args: argparse.Namespace, rec: PartRecord) -> None:
    """Environment (``PAPERLIB_ROOT``, ``PAPERLIB_DATA``) is set by the parent before paperlib is imported."""
    import dataclasses

    _ensure_tqdm(rec.data["notes"])
    import numpy as np
    import pandas as pd

    import test_paper_profile as tpp
    from conftest import make_root
    from paperlib import paths, profiles
    from paperlib.pipeline import inputs as pipeline
    from paperlib.report import tables
    from paperlib.train import device as dev, populations

    device = dev.resolve_device(args.device)
    root = paths.ROOT
    data_root = paths.data_root()
    make_root(root)
    rec.details.update({"device": device, "networks": args.e2e_networks or tpp.NETWORKS})

    paper = profiles.PROFILES["paper"]
    archs = args.e2e_archs or (list(TINY_E2E_ARCHS) if args.tiny else None)
    if archs:  # a subset of the populations; the transfers kept where their archs are
        keep = set(archs)
        transfers = tuple(dataclasses.replace(t, train=tuple(a for a in t.train if a in keep))
                          for t in paper.transfers if t.test in keep and any(a in keep for a in t.train))
        if not transfers and len(archs) > 1:  # Q2 still runs: one transfer between the kept populations
            transfers = (profiles.Transfer("subset", (archs[0],), archs[-1]),)
        profiles.PROFILES["paper"] = dataclasses.replace(
            paper, populations=tuple(p for p in paper.populations if p.arch in keep), transfers=transfers)
        rec.note(f"populations restricted to {archs} (transfers: {[t.name for t in transfers]})")
    shrink = dict(tpp.SHRINK)
    if args.tiny:  # one classifier, one signature mode, four feature sets: 04-06 in seconds
        shrink.update(classifiers=["svm"], modes=["plain"], feature_sets=["deg", "unroll-evec", "B_Wl", "learning-curve"])
    workers = args.e2e_workers or (1 if args.tiny else max(1, min(8, (os.cpu_count() or 2) // 2)))
    shrink.update(device=device, runs_per_device=args.e2e_runs_per_device, workers=workers)
    rec.details["overrides"] = shrink
    rec.details["suite_settings"] = {"SHRINK": tpp.SHRINK, "NETWORKS": tpp.NETWORKS}
    rec.save()
    networks = rec.details["networks"]
    missing_optional = [m for m in OPTIONAL_MODULES if not _module_available(m)]
    if missing_optional:
        rec.note(f"not installed: {missing_optional}; the figures / Markdown tables that need them are skipped")

    def outputs(step: dict[str, Any], name: str) -> None:
        """The pipeline's own check of a step's declared outputs (less those of skipped calls)."""
        missing_outputs = getattr(pipeline, "_missing_outputs", None)
        if missing_outputs is None:
            check(step, "the pipeline's output check (paperlib.pipeline.inputs._missing_outputs) is available", False,
                  required=False)
            return
        missing = missing_outputs(name, "paper")
        skipped = [c["call"] for c in step.get("calls", []) if c["status"] == "skipped"]
        prefixes = tuple(SKIPPED_OUTPUTS[c] for c in skipped if c in SKIPPED_OUTPUTS)
        step["missing_outputs"] = [m for m in missing if not m.startswith(prefixes)] if prefixes else missing
        if prefixes:
            step["not_checked"] = [m for m in missing if m.startswith(prefixes)]
        check(step, "every declared output of the step exists and is not empty", not step["missing_outputs"])

    def call(step: dict[str, Any], label: str, fn: Callable[[], Any], optional: bool = False) -> Any:
        """One library call of a notebook; a figure whose plotting module is missing is skipped."""
        t0 = time.perf_counter()
        entry = {"call": label, "status": "passed"}
        step.setdefault("calls", []).append(entry)
        try:
            return fn()
        except ImportError as exc:  # pandas raises a plain ImportError naming tabulate
            missing = _missing_optional(exc)
            if optional and missing:
                entry.update(status="skipped", error=f"{missing} is not installed")
                return None
            entry.update(status="failed", error=_error_text(exc))
            raise
        except Exception as exc:
            entry.update(status="failed", error=_error_text(exc))
            raise
        finally:
            entry["seconds"] = round(time.perf_counter() - t0, 2)

    def data_step(step: dict[str, Any]) -> None:
        if not (data_root / "cifar-10-batches-py").is_dir():
            tpp.write_cifar10(data_root)
        if not (data_root / "tiny-imagenet-200").is_dir():
            tpp.write_tiny_imagenet(data_root)
        step["data_root"] = "generated CIFAR-10 (cifar-10-batches-py) and Tiny-ImageNet (tiny-imagenet-200 JPEGs)"

    def s01(step: dict[str, Any]) -> None:
        overrides = call(step, "profiles.save_overrides", lambda: profiles.save_overrides("paper", shrink))
        P = profiles.get_profile("paper", **overrides)
        t0 = time.perf_counter()
        runs = call(step, f"populations.train_profile(P, networks={networks})", lambda: populations.train_profile(P, networks=networks))
        step["train_seconds"] = round(time.perf_counter() - t0, 2)
        call(step, "tables.write_table1", lambda: tables.write_table1(P, runs), optional=True)
        call(step, "tables.write_table1_pooled", lambda: tables.write_table1_pooled(P), optional=True)
        step["runs"] = len(runs)
        step["accuracy_by_arch"] = {a: [float(g.min()), float(g.max())] for a, g in runs.groupby("arch")["final_acc"]}
        step["epoch_seconds_by_arch"] = {a: float(g.mean()) for a, g in runs.groupby("arch")["epoch_seconds"]}
        check(step, "populations in the profile's order", list(runs.groupby("arch", sort=False).size().index) == P.archs)
        check(step, f"{networks} networks per population", bool((runs.groupby("arch").size() == networks).all()))
        check(step, "every run finished or diverged", set(runs["status"]) <= {"finished", "diverged"})
        check(step, f"every run trained on {device}", set(runs["device"]) == {device}, devices=sorted(set(runs["device"])))
        cifar = runs[runs.dataset == "cifar10"]
        if len(cifar):
            check(step, "CIFAR-10 test images read from the generated files (whole percents)",
                  bool(np.allclose(cifar["final_acc"] % 1, 0)))
            check(step, "CIFAR-10 populations are not all at chance (max final accuracy > 40%)",
                  float(cifar["final_acc"].max()) > 40, required=not args.tiny,
                  max_acc=float(cifar["final_acc"].max()))
        outputs(step, "01_train")

    def s02(step: dict[str, Any]) -> None:
        from paperlib import graph
        from paperlib.graph import temporal

        pipeline.require_inputs("02_graph", "paper")
        P = profiles.effective_profile("paper")
        call(step, "figures.fig1", lambda: _figures().fig1(P), optional=True)
        call(step, "graph.write_size_table", lambda: graph.write_size_table(P))
        cent = call(step, "temporal.compute_profile(P, unrolled=True)", lambda: temporal.compute_profile(P, unrolled=True))
        check(step, "centralities of every architecture", set(cent["arch"]) == set(P.archs))
        check(step, "rolled and unrolled centralities timed for every run",
              bool(cent["rolled_seconds"].notna().all() and cent["unrolled_seconds"].notna().all()))
        step["mean_seconds_per_snapshot"] = {a: {"rolled": float(g["rolled_seconds"].mean()),
                                                 "unrolled": float(g["unrolled_seconds"].mean())}
                                             for a, g in cent.groupby("arch")}
        outputs(step, "02_graph")

    def s03(step: dict[str, Any]) -> None:
        from paperlib import features

        pipeline.require_inputs("03_features", "paper")
        P = profiles.effective_profile("paper")
        call(step, "features.build_profile_features", lambda: features.build_profile_features(P))
        outputs(step, "03_features")

    def s04(step: dict[str, Any]) -> None:
        from paperlib.evaluate import experiments
        from paperlib.report import readings

        pipeline.require_inputs("04_q1", "paper")
        P = profiles.effective_profile("paper")
        q1 = call(step, "experiments.run_q1(P, full=False)", lambda: experiments.run_q1(P, full=False))
        call(step, "tables.write_table2", lambda: tables.write_table2(P), optional=True)
        call(step, "figures.fig3", lambda: _figures().fig3(P), optional=True)
        call(step, "readings.q1_reading", lambda: readings.q1_reading(P))
        call(step, "readings.describe_agreement", lambda: readings.describe_agreement(P))
        step["q1_rows"] = len(q1)
        check(step, "q1 rows for at least one architecture of the profile",
              set(q1["arch"]) <= set(P.archs) and len(set(q1["arch"])) >= 1)
        outputs(step, "04_q1")

    def s05(step: dict[str, Any]) -> None:
        from paperlib.evaluate import experiments
        from paperlib.report import readings

        pipeline.require_inputs("05_q2", "paper")
        P = profiles.effective_profile("paper")
        q2 = call(step, "experiments.run_q2(P, full=False)", lambda: experiments.run_q2(P, full=False))
        call(step, "figures.fig4", lambda: _figures().fig4(P), optional=True)
        call(step, "readings.q2_reading", lambda: readings.q2_reading(P))
        step["q2_rows"] = len(q2)
        outputs(step, "05_q2")

    def s06(step: dict[str, Any]) -> None:
        from paperlib.evaluate import timing
        from paperlib.report import readings

        pipeline.require_inputs("06_q3", "paper")
        P = profiles.effective_profile("paper")
        q3 = call(step, "timing.run_q3(P, repeats=1)", lambda: timing.run_q3(P, repeats=1))
        call(step, "figures.fig5", lambda: _figures().fig5(P), optional=True)
        call(step, "readings.describe_q3", lambda: readings.describe_q3(P))
        step["q3"] = q3[[c for c in ("arch", "t_needed", "rolled_total_seconds", "rolled_overhead_per_epoch")
                         if c in q3.columns]].to_dict("records")
        outputs(step, "06_q3")

    def tiny_thresholds(step: dict[str, Any]) -> None:
        """Dry run only: a handful of networks trained for two epochs may all end on one side of the
        paper's thresholds, and 04-06 need both classes; split each population where it is most even."""
        runs = pd.read_csv(paths.results_dir("paper") / "runs.csv")
        cuts = {a: balanced_threshold(g["final_acc"].tolist(), g["diverged"].tolist()) for a, g in runs.groupby("arch")}
        pops = tuple(dataclasses.replace(p, threshold=cuts.get(p.arch) or p.threshold)
                     for p in profiles.PROFILES["paper"].populations)
        profiles.PROFILES["paper"] = dataclasses.replace(profiles.PROFILES["paper"], populations=pops)
        step["thresholds"] = {p.arch: p.threshold for p in pops}
        rec.note(f"dry run: high/low thresholds set to {step['thresholds']} (the paper's are for full training)")

    steps = [("generate CIFAR-10 and Tiny-ImageNet files", data_step), ("01_train", s01), ("02_graph", s02),
             ("03_features", s03), ("04_q1", s04), ("05_q2", s05), ("06_q3", s06)]
    if args.tiny:
        steps.insert(2, ("dry run: thresholds", tiny_thresholds))
    for name, fn in steps:
        rec.step(name, fn)
        if name == "01_train" and rec.data["steps"][-1]["status"] == "failed" and args.e2e_runs_per_device > 1 \
                and device == "cuda":
            # the worker pool failed: train once more in this process, so steps 02-06 are still checked
            rec.note("01_train failed with runs_per_device > 1; retried with runs_per_device=1 "
                     "(the part stays failed)")
            shrink["runs_per_device"] = 1
            rec.step("01_train (retry, runs_per_device=1)", s01)
    store = paths.store_dir("paper")
    rec.details["store_bytes"] = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) if store.is_dir() else 0
    rec.save()

