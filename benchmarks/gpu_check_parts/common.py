"""What every part of the GPU check shares: the constants, small utilities (JSON, hashes, the
environment, the card), and the record a part writes as it goes (:class:`PartRecord`).

Importing it puts the repository, ``benchmarks/`` and ``tests/`` on ``sys.path`` and imports
``paperlib`` first, which pins the CPU kernels before numpy and torch load (``paperlib.kernels``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

CODE = Path(__file__).resolve().parents[2]
#: the script every part's process runs (``--part NAME``)
SCRIPT = CODE / "benchmarks" / "gpu_check.py"
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

