"""Everything a GPU machine should check of this artifact, in one run, with one report.

    python benchmarks/gpu_check.py --device cuda --out results/gpu            # one GPU, budget 7.5 min
    python benchmarks/gpu_check.py --device cpu --tiny --out /tmp/gpu-dry     # dry run: ~70 s of CPU time

Four parts, each in its own process (a part that fails, hangs or crashes is recorded as failed,
with its error and the tail of its output, and the next part still runs):

``cuda_tests``
    pytest on the tests of the device path (``tests/test_device.py`` and every test of
    ``tests/test_train.py`` and ``tests/test_hooks.py`` whose name says ``cuda`` or ``gpu``);
    records the summary line and every test's outcome. With ``--device cuda`` a CUDA test that was
    skipped counts as a failure.
``train_benchmark``
    :func:`bench_train.time_ours` and :func:`bench_train.time_reference` for every architecture of
    the ``paper`` profile (seconds and epochs per second of the trainer beside a loop written the
    authors' way, and their ratio); then ``runs_per_device`` side by side: for every value of
    ``--runs-per-device`` (1 2 4 8), that many processes train the same architecture at once on the
    device and the aggregate throughput is measured (the speedup over one). The projected wall time
    of the profile's CIFAR-10 part and of the whole profile (networks x maximum epochs x seconds per
    epoch / speedup; an upper bound, as in ``bench_train.py``) is given with ``runs_per_device`` 1
    and with the measured best value.
``determinism``
    trains one small specification (the ``paper`` profile's ResNet-32 at full width, on CIFAR-10
    files written in their on-disk format) twice in this process and once more through the
    trainer's worker pool, and compares the SHA-256 of every snapshot; records the card, the driver,
    ``torch.version.cuda``, ``torch.backends.cudnn.version()`` and ``nvidia-smi``.
``paper_end_to_end``
    the shrunk ``paper`` profile of ``tests/test_paper_profile.py`` (its generated CIFAR-10 and
    Tiny-ImageNet files, its sizes and networks per population, imported from it), trained on the
    device (``--e2e-runs-per-device``, 4: through the trainer's GPU worker pool; retried with 1 if
    that fails, the part staying failed), then the library functions that notebooks 02-06 call, in their order (no notebook
    runner: papermill is not needed), each with the checks of that test and the pipeline's check
    of the step's declared outputs.

The report is ``gpu_check.json`` and ``gpu_check.md`` in ``--out``: per part its status
(``passed``, ``failed`` or ``skipped``, with the reason), wall time and details, the total wall
time, and the environment. The exit status is 0 when every part passed. ``--budget-s`` bounds the
whole run: a part is not started when too little time is left, a running part is stopped at the
end of the budget (and recorded with what it had done), and the benchmark stops measuring when its
share is spent. ``--tiny`` shrinks every part for a dry run on a CPU: the benchmark times the
CIFAR-10 LeNet on two batches with 1 and 2 runs side by side; the determinism part trains a LeNet
for one epoch on 64 images; the end-to-end part keeps two populations (CIFAR-10 LeNet and
Tiny-ImageNet LeNet, with one transfer between them), and 04-06 use one classifier, one signature
mode, four feature sets and, as two epochs on 256 images leave the paper's thresholds on one side,
high/low thresholds that split each small population evenly (all recorded in the report).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

CODE = Path(__file__).resolve().parents[1]
for _p in (CODE, CODE / "benchmarks", CODE / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
import paperlib  # noqa: E402,F401  first: it pins the CPU kernels before numpy and torch load (paperlib.kernels)

PARTS = ("cuda_tests", "train_benchmark", "determinism", "paper_end_to_end")
TITLES = {
    "cuda_tests": "1. CUDA tests (device path)",
    "train_benchmark": "2. Training benchmark and projected wall time of the paper profile",
    "determinism": "3. Determinism on the device",
    "paper_end_to_end": "4. Shrunk paper profile end to end on the device",
}
# a part is not started with less than this many seconds of the budget left
MIN_START_S = {"cuda_tests": 20, "train_benchmark": 30, "determinism": 15, "paper_end_to_end": 60}
MIN_START_TINY_S = {name: 3 for name in PARTS}
# seconds the benchmark leaves to the parts after it when it decides to stop measuring
BENCH_RESERVE_S = 260
TEST_FILES = ("tests/test_device.py", "tests/test_train.py", "tests/test_hooks.py")
TEST_SELECTION = "test_device or cuda or gpu"
OPTIONAL_MODULES = ("seaborn", "tabulate")  # figures and Markdown tables only
CHECKED_MODULES = ("torch", "torchvision", "numpy", "scipy", "networkx", "sklearn", "pandas", "matplotlib",
                   "PIL", "pytest", "tqdm", "threadpoolctl", "joblib", "seaborn", "tabulate", "papermill",
                   "dask", "optuna")
# outputs not expected when the call that makes them was skipped (its plotting or table module missing)
SKIPPED_OUTPUTS = {"figures.fig1": "figures/paper/fig1.", "figures.fig3": "figures/paper/fig3.",
                   "figures.fig4": "figures/paper/fig4.", "figures.fig5": "figures/paper/fig5.",
                   "tables.write_table1": "results/paper/table1.", "tables.write_table2": "results/paper/table2."}
TINY_BENCH_ARCHS = ("LeNet",)
TINY_E2E_ARCHS = ("LeNet", "LeNet-IN")  # one population per dataset, and a transfer between them
DET_ARCH, TINY_DET_ARCH = "ResNet-32", "LeNet"


# =========================================================================== utilities
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (numpy scalars, paths and tuples converted; NaN and inf as None)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        try:
            return _jsonable(obj.item())
        except (ValueError, TypeError):
            pass
    return str(obj)


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")
    os.replace(tmp, path)


def _tail(text: str, n: int = 3000) -> str:
    return text if len(text) <= n else "..." + text[-n:]


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _module_available(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _run_cmd(cmd: list[str], timeout: float = 30) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return (proc.stdout + proc.stderr).strip() if proc.returncode == 0 else None


def nvidia_smi() -> dict[str, Any]:
    """What ``nvidia-smi`` says (``present: False`` without it)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"present": False}
    out: dict[str, Any] = {"present": True}
    query = _run_cmd([exe, "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader"]) \
        or _run_cmd([exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    if query:
        out["query"] = query.splitlines()
        fields = [f.strip() for f in query.splitlines()[0].split(",")]
        out["driver"] = fields[1] if len(fields) > 1 else None
    out["text"] = _run_cmd([exe]) or ""
    return out


def device_info() -> dict[str, Any]:
    """Python, torch, CUDA, cuDNN and the card (initialises CUDA when there is a GPU)."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
        info["cuda_available"] = bool(torch.cuda.is_available())
        info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        if torch.cuda.is_available():
            info["gpu_count"] = torch.cuda.device_count()
            props = torch.cuda.get_device_properties(0)
            info["device_name"] = torch.cuda.get_device_name(0)
            info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
            info["memory_gib"] = round(props.total_memory / 2 ** 30, 1)
    except Exception as exc:  # noqa: BLE001 - recorded, never fatal
        info["torch_error"] = _error_text(exc)
    smi = nvidia_smi()
    info["nvidia_smi"] = smi
    info["driver"] = smi.get("driver")
    return info


def environment() -> dict[str, Any]:
    env = device_info()
    env["modules"] = {m: _module_available(m) for m in CHECKED_MODULES}
    env["git_commit"] = _run_cmd(["git", "-C", str(CODE), "rev-parse", "HEAD"])
    return env


def compare_hashes(lists: dict[str, list[str]]) -> dict[str, Any]:
    """Compare named lists of snapshot SHA-256 (one per epoch): identical when every list is
    non-empty, equally long and equal to the first, element by element."""
    names = list(lists)
    if not names:
        return {"identical": False, "differences": ["no hashes to compare"]}
    ref_name = names[0]
    ref = list(lists[ref_name])
    diffs = []
    for name in names:
        if not lists[name]:
            diffs.append(f"{name}: no snapshots")
    for name in names[1:]:
        other = list(lists[name])
        if len(other) != len(ref):
            diffs.append(f"{name}: {len(other)} snapshots, {ref_name}: {len(ref)}")
        diffs += [f"epoch {e}: {name} {b[:12]}... != {ref_name} {a[:12]}..."
                  for e, (a, b) in enumerate(zip(ref, other)) if a != b]
    return {"identical": not diffs, "differences": diffs}


def balanced_threshold(accs: list[float], diverged: list[bool]) -> float | None:
    """The cut between two distinct final accuracies of the finished networks that splits them most
    evenly into high (at or above) and low (below; diverged networks are low); None when there is none."""
    finite = sorted({float(a) for a, d in zip(accs, diverged) if not d and math.isfinite(float(a))})
    best, best_n = None, -1
    for lo, hi in zip(finite, finite[1:]):
        cut = (lo + hi) / 2
        n_high = sum(1 for a, d in zip(accs, diverged) if not d and float(a) >= cut)
        n = min(n_high, len(accs) - n_high)
        if n > best_n:
            best, best_n = cut, n
    return best


def _missing_optional(exc: ImportError) -> str | None:
    """The optional module (seaborn, tabulate) whose absence raised ``exc``, or None."""
    if exc.name in OPTIONAL_MODULES:
        return exc.name
    return next((m for m in OPTIONAL_MODULES if re.search(rf"\b{m}\b", str(exc))), None)


def _bench_train() -> Any:
    """``benchmarks/bench_train.py`` as the module ``bench_train`` (benchmarks/ is not a package)."""
    if "bench_train" not in sys.modules:
        import importlib.util

        spec = importlib.util.spec_from_file_location("bench_train", CODE / "benchmarks" / "bench_train.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["bench_train"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["bench_train"]


def _figures() -> Any:
    """``paperlib.report.figures`` (imports seaborn: a missing seaborn raises ModuleNotFoundError here)."""
    from paperlib.report import figures

    return figures


def _ensure_tqdm(notes: list[str]) -> None:
    """A no-op ``tqdm.auto.tqdm`` when tqdm is not installed (progress bars only; never results)."""
    try:
        import tqdm.auto  # noqa: F401
        return
    except ImportError:
        pass
    import types

    class _NoBar:
        def __init__(self, iterable=None, *args, **kwargs):
            self.iterable = iterable

        def __iter__(self):
            return iter(self.iterable if self.iterable is not None else ())

        def update(self, *args, **kwargs):
            pass

        def close(self):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    import importlib.machinery

    pkg, auto = types.ModuleType("tqdm"), types.ModuleType("tqdm.auto")
    for mod in (pkg, auto):  # a spec without origin: importlib.util.find_spec (torch._dynamo calls it) accepts it
        mod.__spec__ = importlib.machinery.ModuleSpec(mod.__name__, None)
    pkg.tqdm = auto.tqdm = _NoBar
    pkg.auto = auto
    sys.modules["tqdm"], sys.modules["tqdm.auto"] = pkg, auto
    notes.append("tqdm is not installed: its progress bars were replaced by a no-op")


# =========================================================================== part records
class PartRecord:
    """The record of one part, written to its JSON file after every change (a killed part
    leaves what it had done)."""

    def __init__(self, path: Path, name: str):
        self.path = path
        self.data: dict[str, Any] = {"part": name, "status": "running", "error": None, "notes": [],
                                     "steps": [], "details": {}, "started": _now()}
        self.save()

    @property
    def details(self) -> dict[str, Any]:
        return self.data["details"]

    def note(self, text: str) -> None:
        self.data["notes"].append(text)
        self.save()

    def save(self) -> None:
        _write_json(self.path, self.data)

    def step(self, name: str, fn: Callable[[dict[str, Any]], Any]) -> Any:
        """Run ``fn(step_record)`` as a sub-step; a failure is recorded and does not propagate."""
        rec: dict[str, Any] = {"name": name, "status": "running", "checks": []}
        self.data["steps"].append(rec)
        self.save()
        t0 = time.perf_counter()
        result = None
        try:
            result = fn(rec)
            bad = [c for c in rec["checks"] if c.get("required", True) and not c["ok"]]
            rec["status"] = "failed" if bad else "passed"
            if bad:
                rec["error"] = "check failed: " + "; ".join(c["check"] for c in bad)
        except Exception as exc:  # noqa: BLE001 - recorded
            rec["status"], rec["error"] = "failed", _error_text(exc)
            rec["traceback"] = _tail(traceback.format_exc(), 4000)
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        self.save()
        return result

    def finish(self, error: BaseException | None = None) -> None:
        if error is not None:
            self.data["error"] = _error_text(error)
            self.data["traceback"] = _tail("".join(traceback.format_exception(error)), 4000)
        failed = [s["name"] for s in self.data["steps"] if s["status"] == "failed"]
        if self.data["error"] is None and failed:
            self.data["error"] = "failed step(s): " + ", ".join(failed)
        self.data["status"] = "failed" if self.data["error"] else "passed"
        self.data["finished"] = _now()
        self.save()


def check(rec: dict[str, Any], text: str, ok: bool, required: bool = True, **values: Any) -> bool:
    rec["checks"].append({"check": text, "ok": bool(ok), "required": required, **values})
    return bool(ok)


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


# =========================================================================== the parent
PART_FUNCS = {"cuda_tests": part_cuda_tests, "train_benchmark": part_train_benchmark,
              "determinism": part_determinism, "paper_end_to_end": part_paper_end_to_end}


def _child(args: argparse.Namespace) -> int:
    os.environ.setdefault("PAPERLIB_QUIET", "1")
    rec = PartRecord(Path(args.part_json), args.part)
    try:
        PART_FUNCS[args.part](args, rec)
    except BaseException as exc:  # noqa: BLE001 - recorded
        rec.finish(exc)
        return 1
    rec.finish()
    return 0


def _part_env(name: str, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PAPERLIB_STORE", "PAPERLIB_ROOT"}}
    env["PYTHONPATH"] = os.pathsep.join([str(CODE), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env["PAPERLIB_QUIET"] = "1"
    env["TQDM_DISABLE"] = "1"
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if name == "paper_end_to_end":
        env["PAPERLIB_ROOT"] = str(work / "root")
        env["PAPERLIB_DATA"] = str(work / "data")
        env["PAPERLIB_VERIFY_DATA"] = "0"
    return env


def _kill(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(10)
            return
        except subprocess.TimeoutExpired:
            continue


def run_part(name: str, argv: list[str], work: Path, timeout: float, soft_deadline: float) -> dict[str, Any]:
    part_work = work / name
    part_work.mkdir(parents=True, exist_ok=True)
    part_json = work / "parts" / f"{name}.json"
    part_json.unlink(missing_ok=True)
    log = work / "parts" / f"{name}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--part", name, "--part-json", str(part_json),
           "--work", str(part_work), "--deadline", f"{soft_deadline:.1f}"]
    t0 = time.perf_counter()
    timed_out = False
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=CODE, env=_part_env(name, part_work), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
            rc = proc.returncode
    seconds = time.perf_counter() - t0
    try:
        rec = json.loads(part_json.read_text())
    except (OSError, ValueError):
        rec = {"part": name, "status": "failed", "error": None, "notes": [], "steps": [], "details": {}}
    output = log.read_bytes().decode(errors="replace")
    if timed_out:
        rec["status"] = "failed"
        rec["error"] = f"stopped at the end of the budget after {seconds:.0f} s (--budget-s)" + (
            f"; it was in step {rec['steps'][-1]['name']!r}" if rec.get("steps") else "")
        for s in rec.get("steps", []):
            if s.get("status") == "running":
                s["status"] = "failed"
                s["error"] = "stopped (budget)"
    elif rec.get("status") not in ("passed", "failed"):
        rec["status"] = "failed"
        rec["error"] = f"the part's process ended with status {rc} before finishing"
    if rec["status"] != "passed":
        rec["output_tail"] = _tail(output, 4000)
    rec["seconds"] = round(seconds, 1)
    rec["returncode"] = rc
    return rec


def _summary_line(name: str, rec: dict[str, Any]) -> str:
    d = rec.get("details", {})
    if rec.get("status") == "skipped":
        return rec.get("error") or ""
    if name == "cuda_tests":
        return d.get("summary") or ""
    if name == "train_benchmark":
        proj = d.get("projection", {}).get("profile", {})
        p1, best = proj.get("runs_per_device_1"), proj.get("best")
        if p1 and best:
            return (f"paper profile projected {p1['hours']:.1f} h at runs_per_device 1, {best['hours']:.1f} h at "
                    f"{best['runs_per_device']}" + ("" if p1["complete"] and d.get("all_paper_archs") else
                                                     " (measured populations only)"))
        return ""
    if name == "determinism":
        if "identical_all" in d:
            return (f"{d.get('n_snapshots', 0)} snapshots x 3 trainings: "
                    + ("bit-identical" if d["identical_all"] else "DIFFER"))
        return ""
    if name == "paper_end_to_end":
        steps = rec.get("steps", [])
        ok = sum(s["status"] == "passed" for s in steps)
        skipped = [c["call"] for s in steps for c in s.get("calls", []) if c["status"] == "skipped"]
        return f"{ok}/{len(steps)} steps passed" + (
            f"; skipped (module not installed): {', '.join(skipped)}" if skipped else "")
    return ""


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None:
        return "–"
    try:
        return format(float(v), spec)
    except (TypeError, ValueError):
        return str(v)


def render_markdown(report: dict[str, Any]) -> str:
    env = report.get("environment", {})
    lines = [f"# GPU check: {report['status'].upper()}", "",
             f"`{report['command']}`; started {report['started']}, {report['total_seconds']:.0f} s in all "
             f"(budget {report['budget_s']:.0f} s); device `{report['device']}`"
             + (" (tiny dry run)" if report["tiny"] else "") + f"; commit `{env.get('git_commit') or 'unknown'}`.",
             "", "| part | status | seconds | summary |", "|---|---|---|---|"]
    for name in PARTS:
        rec = report["parts"].get(name, {})
        lines.append(f"| {TITLES[name]} | **{rec.get('status', '?')}** | {_fmt(rec.get('seconds'), '.0f')} | "
                     f"{_summary_line(name, rec)} |")
    smi = env.get("nvidia_smi", {})
    mods = env.get("modules", {})
    lines += ["", "## Environment", "",
              f"- card: {env.get('device_name', 'none')} ({env.get('gpu_count', 0)} GPU(s), capability "
              f"{env.get('capability', '–')}, {env.get('memory_gib', '–')} GiB)",
              f"- driver: {env.get('driver') or '–'}; CUDA (torch.version.cuda): {env.get('torch_cuda') or '–'}; "
              f"cuDNN: {env.get('cudnn') or '–'}",
              f"- torch {env.get('torch')}, Python {env.get('python')}, {env.get('cpu_count')} CPU cores, "
              f"{env.get('platform')}",
              f"- modules not installed: {', '.join(m for m, ok in mods.items() if not ok) or 'none'} "
              f"(checked: {', '.join(mods)})"]
    for name in PARTS:
        rec = report["parts"].get(name)
        if rec is None:
            continue
        d = rec.get("details", {})
        lines += ["", f"## {TITLES[name]}", "", f"Status: **{rec['status']}**, {_fmt(rec.get('seconds'), '.1f')} s."]
        if rec.get("error"):
            lines += ["", f"Error: `{rec['error']}`"]
        for note in rec.get("notes", []):
            lines.append(f"- {note}")
        if name == "cuda_tests" and d:
            lines += ["", f"`{d.get('command', '')}`", "", f"Summary: `{d.get('summary')}`", ""]
            for t in d.get("tests", []):
                lines.append(f"- {t['outcome']}: `{t['test']}`" + (f" ({t['message']})" if t.get("message") else ""))
        if name == "train_benchmark" and d.get("rows"):
            ks = d.get("runs_per_device_tried", [1])
            lines += ["", f"{d.get('device')}; batch {d.get('batch_size')}, {d.get('timed_batches')} timed batches, "
                      f"reference loader workers {d.get('ref_workers')}. Seconds per epoch projected to the full "
                      "training and test sets (50,000 / 10,000 CIFAR-10, 50,000 / 5,000 Tiny-ImageNet); "
                      "ratio: the reference's seconds per epoch over ours; speedup: aggregate training "
                      "images/s of k runs side by side on the device over one run's.", "",
                      "| population | nets | epochs | s/epoch | epochs/s | ref s/epoch | ref epochs/s | ratio | "
                      + " | ".join(f"speedup k={k}" for k in ks) + " | best k |",
                      "|---|---|---|---|---|---|---|---|" + "---|" * len(ks) + "---|"]
            for arch, row in d["rows"].items():
                sp = row.get("speedup", {})
                lines.append(f"| {row['population']} | {row['networks']} | {row['epochs']} | "
                             f"{_fmt(row.get('ours_s_per_epoch'))} | {_fmt(row.get('ours_epochs_per_s'))} | "
                             f"{_fmt(row.get('ref_s_per_epoch'))} | {_fmt(row.get('ref_epochs_per_s'))} | "
                             f"{_fmt(row.get('ratio'), '.2f')} | "
                             + " | ".join(_fmt(sp.get(str(k)), ".2f") for k in ks)
                             + f" | {row.get('best_runs_per_device', '–')} |"
                             + (f" {row['error']}" if row.get("error") else ""))
            lines.append("")
            for label, title in (("cifar10", "CIFAR-10 part"), ("profile", "whole paper profile")):
                p = d.get("projection", {}).get(label)
                if not p:
                    continue
                p1, best = p["runs_per_device_1"], p["best"]
                partial = "" if p1["complete"] and p.get("covers_whole_part") else \
                    f" (measured populations only: {', '.join(a for a in p['populations'] if a not in p1['missing'])})"
                line = f"- projected wall time of the {title}{partial}: {p1['hours']:.2f} h at runs_per_device 1"
                if best:
                    line += f", {best['hours']:.2f} h at the best measured runs_per_device {best['runs_per_device']}"
                lines.append(line + " (upper bound: no early stopping, one device)")
        if name == "determinism" and d.get("sha256"):
            e = d.get("environment", {})
            lines += ["", f"Spec: {d['spec'].get('model')} {d['spec'].get('model_kwargs')} on "
                      f"{d['spec'].get('dataset')}, {d['spec'].get('train_limit')} images, batch "
                      f"{d['spec'].get('batch_size')}, {d['spec'].get('epochs')} epoch(s), device "
                      f"{d['spec'].get('device')} ({e.get('device_name', 'cpu')}; driver {e.get('driver') or '–'}, "
                      f"CUDA {e.get('torch_cuda') or '–'}, cuDNN {e.get('cudnn') or '–'}).", "",
                      "| epoch | " + " | ".join(d["sha256"]) + " |", "|---|" + "---|" * len(d["sha256"])]
            n = max(len(v) for v in d["sha256"].values())
            for i in range(n):
                lines.append(f"| {i} | " + " | ".join(f"`{v[i][:16]}`" if i < len(v) else "–"
                                                       for v in d["sha256"].values()) + " |")
            lines.append("")
            lines.append("Identical (A = B = pool): " + ("yes" if d.get("identical_all") else "NO"))
        if rec.get("steps"):
            lines += ["", "| step | status | seconds | notes |", "|---|---|---|---|"]
            for s in rec["steps"]:
                bits = [f"{c['call']}: {c['status']}" for c in s.get("calls", []) if c["status"] != "passed"]
                bits += [f"FAILED: {c['check']}" if c.get("required", True) else
                         f"not met (not required in a dry run): {c['check']}"
                         for c in s.get("checks", []) if not c["ok"]]
                if s.get("error"):
                    bits.append(s["error"])
                cell = " ".join("; ".join(bits).replace("|", "/").split())
                lines.append(f"| {s['name']} | {s['status']} | {_fmt(s.get('seconds'), '.1f')} | {_tail(cell, 600)} |")
        if rec.get("output_tail") and rec["status"] != "passed":
            lines += ["", "<details><summary>output (tail)</summary>", "", "```", rec["output_tail"], "```",
                      "", "</details>"]
    if smi.get("text"):
        lines += ["", "## nvidia-smi", "", "```", smi["text"], "```"]
    return "\n".join(lines) + "\n"


def write_reports(out: Path, report: dict[str, Any]) -> None:
    _write_json(out / "gpu_check.json", report)
    tmp = out / "gpu_check.md.tmp"
    tmp.write_text(render_markdown(_jsonable(report)))
    os.replace(tmp, out / "gpu_check.md")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--out", default=str(CODE / "results" / "gpu"), help="folder of gpu_check.json and gpu_check.md")
    p.add_argument("--tiny", action="store_true", help="dry run: very few images, epochs, networks and architectures")
    p.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget of the whole run (seconds)")
    p.add_argument("--parts", nargs="*", choices=PARTS, default=list(PARTS), help="parts to run (default: all)")
    p.add_argument("--work", default="", help="scratch folder (default: a temporary folder, removed at the end)")
    p.add_argument("--keep-work", action="store_true", help="keep the scratch folder (run store, logs)")
    g = p.add_argument_group("shrinking")
    g.add_argument("--bench-archs", nargs="*", default=None, help="paper architectures to benchmark (default: all)")
    g.add_argument("--bench-batches", type=int, default=0, help="timed batches per measurement (0: 16, 2 with --tiny)")
    g.add_argument("--ref-workers", type=int, default=-1,
                   help="DataLoader workers of the reference loop (default 2, 0 with --tiny)")
    g.add_argument("--runs-per-device", type=int, nargs="*", default=None,
                   help="values of runs_per_device to measure side by side (default 1 2 4 8; 1 2 with --tiny)")
    g.add_argument("--sweep-s", type=float, default=0.4, help="seconds one run trains per side-by-side measurement")
    g.add_argument("--e2e-archs", nargs="*", default=None, help="paper populations of the end-to-end run (default all)")
    g.add_argument("--e2e-networks", type=int, default=0, help="networks per population (0: as the test suite)")
    g.add_argument("--e2e-runs-per-device", type=int, default=4, help="runs_per_device of the end-to-end training")
    g.add_argument("--e2e-workers", type=int, default=0, help="CPU processes of steps 02-06 (0: half the cores, at most 8)")
    # internal: one part in a child process
    p.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    p.add_argument("--part-json", help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


_INTERNAL = ("--part", "--part-json", "--work", "--deadline", "--out", "--keep-work", "--parts", "--budget-s")


def _passthrough(argv: list[str]) -> list[str]:
    """The command line without the options the parent sets per part or handles itself."""
    out, dropping = [], False
    for a in argv:
        name = a.split("=", 1)[0]
        if a.startswith("--"):
            dropping = False
            if name in _INTERNAL:
                dropping = "=" not in a and name != "--keep-work"  # drop the values that follow
                continue
        elif dropping:
            continue
        out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.part:
        return _child(args)
    start = time.time()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="gpu_check-"))
    (work / "parts").mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": "python benchmarks/gpu_check.py " + " ".join(argv), "device": args.device, "tiny": args.tiny,
        "budget_s": args.budget_s, "started": _now(), "finished": None, "status": "running", "total_seconds": 0.0,
        "environment": environment(), "parts": {},
    }
    deadline = start + args.budget_s
    write_reports(out, report)
    passthrough = _passthrough(argv)
    mins = MIN_START_TINY_S if args.tiny else MIN_START_S
    try:
        for name in PARTS:
            left = deadline - time.time()
            if name not in args.parts:
                report["parts"][name] = {"part": name, "status": "skipped", "error": "not selected (--parts)",
                                         "seconds": 0.0, "steps": [], "details": {}, "notes": []}
            elif left < mins[name]:
                report["parts"][name] = {"part": name, "status": "skipped", "seconds": 0.0, "steps": [], "details": {},
                                         "notes": [], "error": f"not started: {max(left, 0):.0f} s of the budget "
                                                               f"left (--budget-s {args.budget_s:.0f}), it needs "
                                                               f"at least {mins[name]} s"}
            else:
                soft = deadline
                if name == "train_benchmark" and not args.tiny:
                    later = [n for n in PARTS[PARTS.index(name) + 1:] if n in args.parts]
                    soft = max(time.time() + mins[name], deadline - (BENCH_RESERVE_S if later else 0))
                print(f"[gpu_check] {name} ({left:.0f} s of the budget left)", flush=True)
                report["parts"][name] = run_part(name, passthrough, work, left, soft)
                print(f"[gpu_check] {name}: {report['parts'][name]['status']} in "
                      f"{report['parts'][name]['seconds']:.0f} s", flush=True)
            report["total_seconds"] = round(time.time() - start, 1)
            write_reports(out, report)
    finally:
        statuses = [report["parts"].get(n, {}).get("status") for n in PARTS if n in args.parts]
        report["status"] = "passed" if statuses and all(s == "passed" for s in statuses) else "failed"
        report["finished"] = _now()
        report["total_seconds"] = round(time.time() - start, 1)
        write_reports(out, report)
        if not args.keep_work and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"[gpu_check] {report['status']} in {report['total_seconds']:.0f} s: {out / 'gpu_check.md'}", flush=True)
    return 0 if report["status"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
