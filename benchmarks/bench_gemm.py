"""Seconds per training epoch of every default architecture: the trainer's BLAS layers against
torch's portable and native convolutions, in one process, with the machine's sgemm as the yardstick.

Three paths train the same network on the same data (the ``default`` profile: digits at 16x16,
batch 128, one thread, SGD; each path from the same initial weights):

* ``blas``: the trainer's path (:mod:`paperlib.blas`: every GEMM on numpy's pinned OpenBLAS);
* ``portable``: torch's own layers with oneDNN and NNPACK off (ATen's im2col and MKL's GEMM:
  the trainer's path before ``TRAIN_VERSION`` 5, whose bits follow the CPU's vendor);
* ``native``: torch's own layers as torch chooses (oneDNN), under the process's pinned ISA.

Each path runs one warm-up epoch, then ``--epochs`` timed epochs (the median is printed). The
FLOPs of a training epoch (forward and backward) are counted by ``torch.utils.flop_counter`` and
divided by the ``blas`` seconds; the yardstick is numpy's 1-thread ``sgemm`` (OpenBLAS, pinned)
on three shapes, whose best GFLOP/s is printed beside it. Times are the process's CPU seconds
(one thread: the same as elapsed seconds on an idle machine, and robust to other load), or
elapsed seconds with ``--clock wall``. Example:

    python benchmarks/bench_gemm.py --epochs 3
    python benchmarks/bench_gemm.py --arch VGG ResNet-20 --profile-step ResNet-20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import paperlib  # noqa: E402,F401  first: it pins the CPU kernels before numpy and torch load
import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from paperlib import blas  # noqa: E402
from paperlib.profiles import PROFILES  # noqa: E402
from paperlib.train import data, device as dev, trainer as train  # noqa: E402

PATHS = ("blas", "portable", "native")
SGEMM_SHAPES = ((1024, 1024, 1024), (4096, 64, 576), (2304, 128, 1152))


def sgemm_gflops(repeats: int = 5) -> dict[str, float]:
    """Best GFLOP/s of numpy's 1-thread float32 matmul per shape (m x k @ k x n)."""
    out = {}
    rng = np.random.default_rng(0)
    with threadpool_limits(1, user_api="blas"):
        for m, n, k in SGEMM_SHAPES:
            a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
            c = np.empty((m, n), dtype=np.float32)
            best = min(_timed(lambda: np.matmul(a, b, out=c)) for _ in range(repeats))
            out[f"{m}x{n}x{k}"] = 2 * m * n * k / best / 1e9
    return out


CLOCK = time.process_time


def _timed(fn) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def _model(spec: dict, path: str) -> torch.nn.Module:
    torch.manual_seed(spec["seed"])
    model = dev.deterministic_pools(train._make_model(spec))
    return blas.portable_layers(model) if path == "blas" else model


def _flags(path: str):
    """oneDNN and NNPACK on for ``native``, off otherwise (the ``blas`` layers call neither)."""
    on = path == "native"
    torch.backends.mkldnn.enabled = on
    return torch.backends.nnpack.flags(enabled=on)


def epoch_seconds(spec: dict, tensors: data.TensorData, path: str, epochs: int) -> float:
    """Median seconds of one training epoch (no evaluation, no snapshot) after a warm-up epoch."""
    model = _model(spec, path)
    opt = train._make_optimizer(spec, model.parameters())
    gen = torch.Generator().manual_seed(spec["seed"])
    times = []
    with dev.run_context("cpu", spec["threads"]), _flags(path):
        for i in range(epochs + 1):
            t = _timed(lambda: train._train_epoch(model, opt, tensors, spec["batch_size"], gen, "float32"))
            if i:
                times.append(t)
    torch.backends.mkldnn.enabled = True
    return statistics.median(times)


def epoch_flops(spec: dict, tensors: data.TensorData) -> float:
    """FLOPs of one training epoch's forward and backward passes (torch's own layers counted)."""
    model = _model(spec, "portable")
    model.train()
    total = 0
    with FlopCounterMode(display=False) as counter:
        for x, y in tensors.train_batches(spec["batch_size"], torch.Generator().manual_seed(0)):
            torch.nn.functional.cross_entropy(model(x), y).backward()
    total = counter.get_total_flops()
    return float(total)


def profile_step(spec: dict, tensors: data.TensorData, rows: int = 15) -> str:
    """torch.profiler's table of one ``blas`` training epoch, by self CPU time."""
    model = _model(spec, "blas")
    opt = train._make_optimizer(spec, model.parameters())
    gen = torch.Generator().manual_seed(0)
    with dev.run_context("cpu", spec["threads"]):
        train._train_epoch(model, opt, tensors, spec["batch_size"], gen, "float32")
        with torch.profiler.profile() as prof:
            train._train_epoch(model, opt, tensors, spec["batch_size"], gen, "float32")
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python benchmarks/bench_gemm.py --epochs 3\n"
               "  python benchmarks/bench_gemm.py --arch VGG ResNet-20 --profile-step ResNet-20")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per path (median printed); default 3")
    ap.add_argument("--arch", nargs="*", help="architectures of the default profile (default: all)")
    ap.add_argument("--paths", nargs="*", default=list(PATHS), choices=PATHS)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="cpu: the process's CPU seconds (default; robust to other load on the machine), wall: elapsed")
    ap.add_argument("--profile-step", metavar="ARCH", help="also print where a blas epoch of ARCH spends its time")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter

    from paperlib import kernels
    profile = PROFILES["default"]
    print(f"CPU: {kernels.cpu_model()}; kernels: {kernels.isa_class()}; torch {torch.__version__}; 1 thread; "
          f"{args.clock} seconds")
    gemm = sgemm_gflops()
    ref = max(gemm.values())
    print("numpy sgemm, 1 thread (GFLOP/s): " + ", ".join(f"{k} {v:.1f}" for k, v in gemm.items()))
    head = f"{'architecture':<12}" + "".join(f"{p + ' s/epoch':>18}" for p in args.paths)
    head += f"{'portable/blas':>15}{'native/blas':>13}{'blas GFLOP/s':>14}{'of sgemm':>10}"
    print(head)
    for pop in profile.populations:
        if args.arch and pop.arch not in args.arch:
            continue
        spec = train.run_spec(profile, pop, 1e-2, 0.0, 0)
        tensors = data.load_tensors(spec["dataset"], spec["image_size"], spec["train_limit"])
        secs = {p: epoch_seconds(spec, tensors, p, args.epochs) for p in args.paths}
        flops = epoch_flops(spec, tensors)
        line = f"{pop.arch:<12}" + "".join(f"{secs[p]:>18.3f}" for p in args.paths)
        ratio = lambda p: f"{secs[p] / secs['blas']:.2f}x" if "blas" in secs and p in secs else "-"  # noqa: E731
        gf = flops / secs["blas"] / 1e9 if "blas" in secs else float("nan")
        line += f"{ratio('portable'):>15}{ratio('native'):>13}{gf:>14.1f}{gf / ref:>10.0%}"
        print(line, flush=True)
    if args.profile_step:
        pop = next(p for p in profile.populations if p.arch == args.profile_step)
        spec = train.run_spec(profile, pop, 1e-2, 0.0, 0)
        print(profile_step(spec, data.load_tensors(spec["dataset"], spec["image_size"], spec["train_limit"])))


if __name__ == "__main__":
    main()
