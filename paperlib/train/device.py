"""Where and how a run computes: device, precision, threads and deterministic algorithms.

Every run trains through the same code on every device; what differs is only where the tensors
live. The choices a run's numbers depend on are fixed here and recorded:

``device``
    ``"auto"`` (a CUDA GPU when ``torch.cuda.is_available()``, else the CPU), ``"cpu"`` or
    ``"cuda"``. :func:`resolve_device` turns ``"auto"`` into ``"cpu"`` or ``"cuda"`` where the
    specification is built, and the resolved name is part of the run's key: CPU and GPU kernels
    round differently, so their runs never share a key. Which GPU of a machine a worker uses is
    not part of the key (same card model assumed within a machine); it is set per worker process
    by :func:`claim_gpu`. ``"cuda"`` without a GPU is an error naming the setting.
``precision``
    ``"float32"`` (default) or ``"bf16"``: ``torch.autocast`` with ``bfloat16`` around the forward
    pass and the loss (weights, gradients and the optimiser stay ``float32``). Opt-in and part of
    the key.
``threads``
    intra-op threads of a run (``torch.set_num_threads``), set by :func:`run_context` inside
    every run whatever the process had, and restored after it: CPU kernels split their sums
    across threads, so the thread count changes the bits of the result. With a fixed count the
    same specification gives bit-identical snapshots on any machine, with any
    ``OMP_NUM_THREADS``, any number of workers and either engine; parallelism comes only from
    running several runs at once.
deterministic algorithms
    ``torch.use_deterministic_algorithms(True)`` during every run, ``cudnn.benchmark`` off and
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (set before CUDA starts, as cuBLAS requires). PyTorch
    has no deterministic CUDA backward for ``nn.AdaptiveAvgPool2d``; the trainer computes the
    global average pools of the ResNets as a mean over the spatial axes instead
    (:func:`deterministic_pools`), the same function without learnable state, so snapshots load
    into the original model unchanged.
matrix products
    on the CPU of the pinned class (:mod:`paperlib.kernels`), every ``nn.Conv2d``, ``nn.Linear``
    and ``nn.Dropout`` of a ``float32`` training run computes through :mod:`paperlib.blas`
    (:func:`portable_layers`): all GEMMs on numpy's pinned OpenBLAS, with ``threads`` BLAS
    threads, so the bits do not depend on the CPU's vendor or model. oneDNN, NNPACK and MKL
    (which follows the vendor) do no arithmetic of a run. Elsewhere (a GPU,
    ``PAPERLIB_KERNELS=native``, a CPU outside the class) torch's own layers run.
freed memory
    glibc returns every freed block above 32 MB to the kernel (``mmap``), so a buffer of that size
    allocated once per batch (the patch matrix of a 28x28 layer at the evaluation's batch of 512:
    58 MB for 4 channels) is faulted in page by page, zeroed by the kernel, on every batch:
    measured, the faults cost 7x the copies that fill it. From its first :func:`run_context` on,
    a process keeps the memory it frees (:func:`keep_freed_memory`: no ``mmap``, a 1 GiB trim
    threshold). Only where memory comes from changes, not a number: the evaluation of a
    Fashion-MNIST ResNet ran about twice as fast.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import torch
import torch.nn as nn
from threadpoolctl import threadpool_limits

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("float32", "bf16")
CUBLAS_WORKSPACE = ":4096:8"


def resolve_device(device: str) -> str:
    """``"cpu"`` or ``"cuda"`` for a device setting; ``"cuda"`` without a GPU raises ``ValueError``."""
    if device not in DEVICES:
        raise ValueError(f"device={device!r}: choose one of {DEVICES} (profile field / 01_train parameter 'device')")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch.cuda.is_available() is False on this machine; "
                         "use device='auto' or 'cpu'")
    return device


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {PRECISIONS} (profile field 'precision')")
    return precision


def torch_device(device: str) -> torch.device:
    """The ``torch.device`` of a resolved device name: the process's current GPU for ``"cuda"``."""
    if device == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(device)


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class _GlobalMeanPool(nn.Module):
    """``AdaptiveAvgPool2d(1)`` as a mean over the spatial axes (deterministic backward on CUDA)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1), keepdim=True)


def deterministic_pools(model: nn.Module) -> nn.Module:
    """Replace every ``nn.AdaptiveAvgPool2d`` with output size 1 by a spatial mean, in place.

    Anything else without a deterministic CUDA kernel is left alone, and
    ``torch.use_deterministic_algorithms`` raises when it runs, naming the operation.
    """
    for name, child in list(model.named_children()):
        if isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size in (1, (1, 1)):
            setattr(model, name, _GlobalMeanPool())
        else:
            deterministic_pools(child)
    return model


def uses_blas(device: str, precision: str = "float32") -> bool:
    """Whether a run computes its layers through :mod:`paperlib.blas`: ``float32`` on the CPU of the
    pinned class (:data:`paperlib.kernels.PINNED_CLASS`). ``bf16`` runs torch's own layers under
    ``torch.autocast`` (which does not reach custom functions): their bits follow the CPU."""
    from .. import kernels

    return device == "cpu" and precision == "float32" and kernels.isa_class() == kernels.PINNED_CLASS


def portable_layers(model: nn.Module, device: str, precision: str = "float32") -> nn.Module:
    """:func:`paperlib.blas.portable_layers` where :func:`uses_blas`; the model unchanged elsewhere."""
    from .. import blas

    return blas.portable_layers(model) if uses_blas(device, precision) else model


def keep_freed_memory() -> bool:
    """From now on this process keeps the memory it frees (glibc's ``mallopt``: no ``mmap`` for large
    blocks, a trim threshold of 1 GiB); see the module docstring. Not undone: a process that trains
    keeps it. Returns False, changing nothing, where the C library is not glibc."""
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's malloc.h
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 1 << 30))


@contextlib.contextmanager
def run_context(device: str, threads: int) -> Iterator[None]:
    """Threads fixed to ``threads`` (torch's intra-op threads and, for :mod:`paperlib.blas`, the
    BLAS threads), deterministic algorithms on; all restored afterwards. On the CPU the process
    also keeps the memory it frees from then on (:func:`keep_freed_memory`).

    Refuses (:class:`paperlib.kernels.KernelError`) to run when torch or numpy already chose other
    CPU kernels than the pinned ones.
    """
    from .. import kernels

    kernels.check("training")
    if device == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_bench = torch.backends.cudnn.benchmark
    old_fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True)
    # deterministic mode fills every new empty tensor with NaN by default; every buffer of a run
    # is written before it is read, so that fill would only cost time (a quarter of a ResNet step)
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = False
    if device == "cpu":
        keep_freed_memory()
    try:
        with threadpool_limits(limits=int(threads), user_api="blas"):
            yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)
        torch.utils.deterministic.fill_uninitialized_memory = old_fill
        torch.backends.cudnn.benchmark = old_bench


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``bfloat16`` for ``"bf16"``; a no-op for ``"float32"``."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def environment(device: torch.device) -> dict[str, Any]:
    """What a run's meta records about the machine: torch version and the device's name."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"torch": torch.__version__, "device_name": name}


# --------------------------------------------------------------------------- GPU workers
_CLAIMED: int | None = None


def gpu_slots(runs_per_device: int) -> list[int]:
    """GPU index of every worker: each GPU ``runs_per_device`` times (GPU-major)."""
    return [g for g in range(gpu_count()) for _ in range(max(1, runs_per_device))]


def claim_gpu(queue: Any) -> None:
    """Worker initialiser: take one GPU index from ``queue`` and make it this process's GPU."""
    global _CLAIMED
    _CLAIMED = int(queue.get())
    torch.cuda.set_device(_CLAIMED)
