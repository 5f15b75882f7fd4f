"""Parts 1 and 2 of the GPU check: the CUDA tests (pytest on the device path) and the training
benchmark (the trainer beside the authors' loop, runs side by side, the projected wall time of
the ``paper`` profile)."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .common import (
    CODE,
    TEST_FILES,
    TEST_SELECTION,
    TINY_BENCH_ARCHS,
    _bench_train,
    _error_text,
    _tail,
    PartRecord,
)


# =========================================================================== part 1: tests
def part_cuda_tests(args: argparse.Namespace, rec: PartRecord) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    xml = work / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", f"--junitxml={xml}",
           *TEST_FILES, "-k", TEST_SELECTION]
    rec.details["command"] = " ".join(["python", *cmd[1:4], "-rs", *TEST_FILES, "-k", repr(TEST_SELECTION)])
    timeout = max(10.0, args.deadline - time.time()) if args.deadline else None
    proc = subprocess.run(cmd, cwd=CODE, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    lines = [ln.strip("= ").strip() for ln in out.splitlines()
             if re.search(r"\d+ (passed|failed|skipped|error|errors|deselected)", ln)]
    rec.details["summary"] = lines[-1] if lines else None
    rec.details["returncode"] = proc.returncode
    tests = []
    if xml.is_file():
        for case in ET.parse(xml).getroot().iter("testcase"):
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                el = case.find(tag)
                if el is not None:
                    outcome = {"failure": "failed"}.get(tag, tag)
                    message = (el.get("message") or "")[:500]
            tests.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                          "message": message, "seconds": float(case.get("time") or 0)})
    rec.details["tests"] = tests
    counts = {o: sum(t["outcome"] == o for t in tests) for o in ("passed", "failed", "error", "skipped")}
    rec.details["counts"] = counts
    if proc.returncode != 0:
        rec.details["output_tail"] = _tail(out, 6000)
    rec.save()
    if proc.returncode != 0:
        raise RuntimeError(f"pytest exited with status {proc.returncode}: {rec.details['summary']}")
    if not tests:
        raise RuntimeError("pytest ran no test")
    if args.device == "cuda":
        skipped = [t["test"] for t in tests if t["outcome"] == "skipped"]
        if skipped:
            raise RuntimeError(f"--device cuda but {len(skipped)} test(s) were skipped: {skipped}")


# =========================================================================== part 2: benchmark
_SETUP: dict[str, Any] = {}  # a sweep worker's model, optimiser and data of the architecture it timed last


def _timed_training(task: dict[str, Any], barrier: Any, device: str) -> dict[str, Any]:
    """Train ``task["batches"]`` batches of one paper architecture on synthetic data, starting
    together with the other processes of the measurement (``barrier``). The network, its
    optimiser and the data are built (and warmed up by one batch) the first time a worker times
    an architecture, and reused for its other values of k."""
    import torch

    bt = _bench_train()
    from paperlib.train import data, device as dev, trainer as train
    from paperlib.profiles import PROFILES

    profile = PROFILES["paper"]
    pop = profile.population(task["arch"])
    spec = bt._spec(profile, pop, device)
    bs = spec["batch_size"]
    n = bs * int(task["batches"])
    key = (task["arch"], n)
    with dev.run_context(device, spec["threads"]):
        if _SETUP.get("key") != key:
            _SETUP.clear()
            if device == "cuda":
                torch.cuda.empty_cache()
            tdev = dev.torch_device(device)
            x, y, xt, yt = bt.synthetic(pop.dataset, spec["image_size"], bs + n, 2, seed=int(task["seed"]))
            warm = data.TensorData(pop.dataset, x[:bs], y[:bs], xt, yt, spec["image_size"]).to(tdev)
            full = data.TensorData(pop.dataset, x[bs:], y[bs:], xt, yt, spec["image_size"]).to(tdev)
            torch.manual_seed(0)
            model = dev.deterministic_pools(train._make_model(spec)).to(tdev)
            opt = train._make_optimizer(spec, model.parameters())
            gen = torch.Generator(device=tdev).manual_seed(0)
            train._train_epoch(model, opt, warm, bs, gen, spec["precision"])  # warm-up; reads the loss: synchronises
            _SETUP.update(key=key, model=model, opt=opt, full=full, gen=gen)
        barrier.wait(timeout=300)
        t0 = time.time()
        train._train_epoch(_SETUP["model"], _SETUP["opt"], _SETUP["full"], bs, _SETUP["gen"], spec["precision"])
        t1 = time.time()
    return {"start": t0, "end": t1, "images": n}


def _sweep_worker(conn: Any, barriers: dict[int, Any], device: str) -> None:
    os.environ.setdefault("PAPERLIB_QUIET", "1")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    while True:
        task = conn.recv()
        if task is None:
            return
        try:
            conn.send(("ok", _timed_training(task, barriers[task["k"]], device)))
        except BaseException as exc:  # noqa: BLE001 - sent back to the parent
            with contextlib.suppress(Exception):
                barriers[task["k"]].abort()
            conn.send(("error", _error_text(exc)))


class SweepPool:
    """``max(ks)`` worker processes (spawned, so each has its own CUDA context, as the trainer's
    workers do); :meth:`measure` runs one architecture in ``k`` of them at once."""

    def __init__(self, device: str, ks: list[int]):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.barriers = {k: ctx.Barrier(k) for k in ks}
        self.conns, self.procs = [], []
        for _ in range(max(ks)):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_sweep_worker, args=(child, self.barriers, device), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def measure(self, arch: str, k: int, batches: int, timeout: float = 600) -> dict[str, Any]:
        for i in range(k):
            self.conns[i].send({"arch": arch, "k": k, "batches": batches, "seed": i})
        results, errors = [], []
        t_end = time.time() + timeout
        for i in range(k):
            if not self.conns[i].poll(max(1.0, t_end - time.time())):
                raise TimeoutError(f"worker {i} did not answer within {timeout:.0f} s")
            status, value = self.conns[i].recv()
            (results if status == "ok" else errors).append(value)
        if errors:
            with contextlib.suppress(Exception):
                self.barriers[k].reset()
            raise RuntimeError("; ".join(sorted(set(errors))))
        span = max(r["end"] for r in results) - min(r["start"] for r in results)
        images = sum(r["images"] for r in results)
        return {"k": k, "batches": batches, "seconds": round(span, 4), "images_per_s": images / span,
                "per_run_seconds": [round(r["end"] - r["start"], 4) for r in results]}

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(Exception):
                conn.send(None)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()


def _projection(pops: list[Any], rows: dict[str, dict[str, Any]], k: int | None) -> dict[str, Any]:
    """Sum over ``pops`` of networks x maximum epochs x seconds per epoch / speedup at ``k``
    (``k`` None or 1: one run at a time)."""
    total, missing = 0.0, []
    for pop in pops:
        row = rows.get(pop.arch)
        if row is None or row.get("ours_s_per_epoch") is None:
            missing.append(pop.arch)
            continue
        speedup = 1.0
        if k not in (None, 1):
            sp = row.get("speedup", {}).get(str(k))
            if sp is None:
                missing.append(pop.arch)
                continue
            speedup = sp
        total += pop.grid.size * pop.epochs * row["ours_s_per_epoch"] / speedup
    return {"runs_per_device": k or 1, "seconds": total, "hours": total / 3600, "days": total / 86400,
            "complete": not missing, "missing": missing}


def part_train_benchmark(args: argparse.Namespace, rec: PartRecord) -> None:
    import torch

    bt = _bench_train()
    from paperlib.train import device as dev
    from paperlib.profiles import PROFILES

    device = dev.resolve_device(args.device)
    profile = PROFILES["paper"]
    archs = args.bench_archs or (list(TINY_BENCH_ARCHS) if args.tiny else profile.archs)
    pops = [profile.population(a) for a in archs]
    batches = args.bench_batches or (2 if args.tiny else 16)
    ref_workers = args.ref_workers if args.ref_workers >= 0 else (0 if args.tiny else 2)
    ks = sorted(set(args.runs_per_device or ([1, 2] if args.tiny else [1, 2, 4, 8])) | {1})
    stop_at = args.deadline or float("inf")
    name = torch.cuda.get_device_name() if device == "cuda" else f"cpu ({os.cpu_count()} cores)"
    rec.details.update({"device": name, "profile": "paper", "batch_size": profile.batch_size,
                        "threads": profile.threads, "timed_batches": batches, "ref_workers": ref_workers,
                        "runs_per_device_tried": ks, "archs": archs,
                        "all_paper_archs": archs == profile.archs, "rows": {}})
    rows: dict[str, dict[str, Any]] = rec.details["rows"]
    cache: dict[Any, tuple[float, float]] = {}
    for pop in pops:
        row = {"population": pop.key, "networks": pop.grid.size, "epochs": pop.epochs, "dataset": pop.dataset}
        rows[pop.arch] = row
        if time.time() > stop_at:
            row["error"] = "not measured: the benchmark's share of --budget-s was spent"
            rec.save()
            continue
        key = (pop.model, tuple(sorted(pop.model_kwargs.items())), pop.dataset, profile.image_size[pop.dataset])
        try:
            if key not in cache:
                ours = bt.time_ours(profile, pop, device, batches)
                ref = bt.time_reference(profile, pop, device, batches, ref_workers)
                cache[key] = (ours, ref)
            ours, ref = cache[key]
            row.update({"ours_s_per_epoch": ours, "ours_epochs_per_s": 1 / ours, "ref_s_per_epoch": ref,
                        "ref_epochs_per_s": 1 / ref, "ratio": ref / ours})
        except Exception as exc:  # noqa: BLE001 - recorded per architecture
            row["error"] = _error_text(exc)
        rec.save()

    # runs side by side on one device
    measured = [a for a in archs if rows[a].get("ours_s_per_epoch") is not None]
    if measured and len(ks) > 1 and time.time() < stop_at:
        pool = SweepPool(device, ks)
        try:
            for arch in measured:
                row = rows[arch]
                bs = profile.batch_size
                n_full = bt.EPOCH_SIZES[row["dataset"]][0]
                per_batch = row["ours_s_per_epoch"] / max(1.0, n_full / bs)
                n_batches = batches if args.tiny else int(min(100, max(8, round(args.sweep_s / per_batch))))
                row["concurrency"], row["speedup"] = {}, {}
                for k in ks:
                    if time.time() > stop_at:
                        row["concurrency"][str(k)] = {"error": "not measured: budget spent"}
                        continue
                    try:
                        m = pool.measure(arch, k, n_batches)
                        row["concurrency"][str(k)] = m
                    except Exception as exc:  # noqa: BLE001
                        row["concurrency"][str(k)] = {"error": _error_text(exc)}
                    rec.save()
                base = row["concurrency"].get("1", {}).get("images_per_s")
                for k in ks:
                    rate = row["concurrency"].get(str(k), {}).get("images_per_s")
                    if base and rate:
                        row["speedup"][str(k)] = rate / base
                if row["speedup"]:
                    row["best_runs_per_device"] = int(max(row["speedup"], key=row["speedup"].get))
                rec.save()
        finally:
            pool.close()

    cifar = [p for p in pops if p.dataset == "cifar10"]
    proj: dict[str, Any] = {}
    for label, subset in (("cifar10", cifar), ("profile", pops)):
        per_k = {str(k): _projection(subset, rows, k) for k in ks}
        done = {k: v for k, v in per_k.items() if v["complete"]}
        best = min(done, key=lambda k: done[k]["seconds"]) if done else None
        proj[label] = {"populations": [p.arch for p in subset], "per_runs_per_device": per_k,
                       "runs_per_device_1": per_k["1"], "best": per_k[best] if best else None,
                       "covers_whole_part": len(subset) == len([p for p in profile.populations
                                                                if label == "profile" or p.dataset == "cifar10"])}
    rec.details["projection"] = proj
    rec.save()
    failed = [a for a in archs if rows[a].get("error")]
    conc_failed = [f"{a} k={k}" for a in archs for k, m in rows[a].get("concurrency", {}).items() if m.get("error")]
    if failed or conc_failed:
        raise RuntimeError("not measured: " + ", ".join(failed + conc_failed))

