"""Which CPU kernels the numeric libraries run: one instruction-set class on every x86-64 machine.

numpy, scipy (OpenBLAS), torch (ATen's vectorised kernels, oneDNN, MKL) each pick SIMD kernels
for the CPU they find: AVX-512 where there is AVX-512, AVX2 elsewhere. Kernels of different
widths add in different orders, so the same computation gives other last bits, and a trained
network or a tuned classifier that depends on them (every one does: SGD and L-BFGS amplify the
last bit) ends elsewhere. Measured on one AVX-512 machine: simulating an AVX2-only CPU moved 27
of 64 smoke-profile networks (up to 51 accuracy points), and another OpenBLAS kernel moved 51 of
3,000 Q1 rows.

**The pin.** On an x86-64 CPU with AVX2 and FMA (x86-64-v3: every Intel CPU since Haswell,
2013, every AMD CPU since Zen, 2017), :func:`pin` sets, before the libraries load,

==========================  ============  ===================================================
variable                    value         what it fixes
==========================  ============  ===================================================
``OPENBLAS_CORETYPE``       ``Haswell``   the OpenBLAS kernels of numpy and scipy
``OPENBLAS_L2_SIZE``        ``1048576``   OpenBLAS's cache-size dependent blocking
``NPY_ENABLE_CPU_FEATURES`` ``X86_V3``    numpy's own dispatched loops (exp, log, sums, ...)
``ATEN_CPU_CAPABILITY``     ``avx2``      torch's vectorised ATen kernels
``ONEDNN_MAX_CPU_ISA``      ``AVX2``      torch's oneDNN convolutions
``MKL_CBWR``                ``AVX2,STRICT`` torch's MKL (conditional numerical reproducibility)
==========================  ============  ===================================================

whatever the process's environment had (a reader's shell, a JupyterLab kernel, the runner),
so that the same inputs give the same bits on every such CPU. ``import paperlib`` calls it, so
it holds wherever ``paperlib`` is imported before numpy and torch compute anything: in the
notebooks (their first import), in the runner's kernels, in training and evaluation workers
(they inherit the environment). Thread counts are fixed where the work is done (one intra-op
thread per training run, one BLAS thread per fit).

**The check.** The libraries read these variables once, when they load (numpy, OpenBLAS) or on
their first operation (torch). A process that imported numpy or ran a torch operation before
``paperlib`` keeps the kernels it chose; :func:`check` finds that from the libraries themselves
(threadpoolctl reports OpenBLAS's kernel, numpy its dispatch table, torch its capability) and
raises :class:`KernelError`, which names what to do. Training and evaluation call it before
they compute; results from unpinned kernels are never written.

**The BLAS.** Pinning the instruction set is not enough for torch's convolutions and linear
layers: oneDNN and NNPACK choose their blocking from the CPU's cache sizes and model, and MKL
honours ``MKL_CBWR=AVX2`` only on Intel CPUs (on an AMD CPU it reports ``CNR:AUTO``, its own
choice). Measured: networks trained on an Intel Xeon came out different from epoch 1 on an AMD
EPYC with the same lock and pin, through MKL's GEMMs. Training therefore computes every
convolution, linear layer and dropout mask through :mod:`paperlib.blas` (all GEMMs on numpy's
OpenBLAS, pinned above; no oneDNN, NNPACK or MKL call), as the unrolled graph does, and the
evaluation's BLAS is the same OpenBLAS. ``MKL_CBWR`` stays pinned for anything else of torch's
that a reader computes. ``benchmarks/bench_gemm.py`` measures the speed against torch's own paths.

**The class** (:func:`isa_class`) is part of every run's specification and meta:
``x86-64-v3`` where the pin holds. Elsewhere nothing is pinned and the class names the machine
(``aarch64``, ``arm64``, ``x86_64-pre-v3``, or the platform's own name): numbers are then
reproducible on the same machine but not promised across machines, and such runs never share a
key with pinned ones. ``PAPERLIB_KERNELS=native`` opts out (class ``<machine>-native``).
``benchmarks/bench_kernels.py`` measures what the pin costs in speed.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

PINNED_CLASS = "x86-64-v3"
PIN = {
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_L2_SIZE": "1048576",
    "NPY_ENABLE_CPU_FEATURES": "X86_V3",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2,STRICT",
}
# numpy names its x86-64-v3 dispatch target X86_V3 from 2.4 on; older releases are not pinned.
_NUMPY_V3_FROM = (2, 4)


class KernelError(RuntimeError):
    """The numeric libraries run other kernels than the pin asks for."""


def _cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    """The CPU's vendor and model name (Linux ``/proc/cpuinfo``; the platform's processor string
    elsewhere), recorded in the manifest: numbers that differ between machines name the CPUs."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if not line.strip():
                    break
    except OSError:
        pass
    name = " ".join(v for v in (fields.get("vendor_id"), fields.get("model name")) if v)
    if name and fields.get("cpu family"):
        name += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    return name or platform.processor() or platform.machine()


def _version(dist: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in importlib.metadata.version(dist).split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return ()


def isa_class() -> str:
    """The instruction-set class the numbers of this machine belong to.

    ``"x86-64-v3"`` on an x86-64 CPU with AVX2 and FMA (Linux; numpy 2.4 or later): the pinned
    kernels. Otherwise the machine's own name (``"aarch64"``, ``"arm64"``, ``"x86_64-pre-v3"``,
    ...), with nothing pinned; ``PAPERLIB_KERNELS=native`` in the environment opts out of the
    pin (``"x86_64-native"``: the libraries' own choice, faster on AVX-512, numbers of this CPU).
    """
    machine = platform.machine().lower()
    if os.environ.get("PAPERLIB_KERNELS") == "native":
        return f"{machine or sys.platform}-native"
    if machine in {"x86_64", "amd64"}:
        flags = _cpu_flags()
        if {"avx2", "fma"} <= flags and _version("numpy") >= _NUMPY_V3_FROM:
            return PINNED_CLASS
        return "x86_64-pre-v3" if flags and not {"avx2", "fma"} <= flags else f"x86_64-{sys.platform}"
    return machine or sys.platform


def pin() -> dict[str, str]:
    """Set :data:`PIN` in ``os.environ`` where the class is ``x86-64-v3``; return what was set.

    Values the environment had are overwritten: the pin is part of what the numbers mean, not a
    preference. Libraries loaded before this call keep their kernels (:func:`check` finds them).
    """
    if isa_class() != PINNED_CLASS:
        return {}
    os.environ.update(PIN)
    return dict(PIN)


def state() -> dict[str, Any]:
    """The kernels the loaded libraries actually use (for checks and records)."""
    out: dict[str, Any] = {"isa": isa_class()}
    if "numpy" in sys.modules:
        try:
            from numpy._core._multiarray_umath import __cpu_features__ as feats
            out["numpy_x86_v4"] = bool(feats.get("X86_V4", False))
        except ImportError:  # numpy < 2
            out["numpy_x86_v4"] = None
        from threadpoolctl import threadpool_info
        out["openblas"] = sorted({i.get("architecture") or "?" for i in threadpool_info()
                                  if i.get("internal_api") == "openblas"})
    if "torch" in sys.modules:
        import torch
        out["torch"] = torch.backends.cpu.get_cpu_capability()
    return out


def check(where: str) -> dict[str, Any]:
    """Raise :class:`KernelError` unless the loaded libraries run the pinned kernels.

    ``where`` names the computation for the message. Returns :func:`state`. Nothing is checked
    off the pinned class.
    """
    now = state()
    if now["isa"] != PINNED_CLASS:
        return now
    wrong = []
    if now.get("numpy_x86_v4"):
        wrong.append("numpy dispatches AVX-512 loops")
    if any(a != PIN["OPENBLAS_CORETYPE"] for a in now.get("openblas", [])):
        wrong.append(f"OpenBLAS runs {now['openblas']} kernels")
    if now.get("torch") not in (None, "AVX2"):
        wrong.append(f"torch runs {now['torch']} kernels")
    if wrong:
        raise KernelError(
            f"{where}: {'; '.join(wrong)}, not the pinned x86-64-v3 (AVX2) kernels, so the numbers "
            "would depend on this CPU. numpy or torch computed something before paperlib was "
            "imported: import paperlib first (restart the kernel or interpreter), or start Python "
            "with the variables of paperlib.kernels.PIN set.")
    return now
