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

This file is the command line; the parts live in ``benchmarks/gpu_check_parts/``: ``common``
(constants, utilities, the part's record), ``training`` (parts 1 and 2), ``on_device`` (parts 3
and 4), ``report`` (one process per part, the JSON and Markdown reports).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: gpu_check_parts, bench_train
from gpu_check_parts.common import (  # noqa: E402  (first: imports paperlib, which pins the CPU kernels)
    BENCH_RESERVE_S,
    CODE,
    MIN_START_S,
    MIN_START_TINY_S,
    PARTS,
    TITLES,
    _now,
    balanced_threshold,
    compare_hashes,
    environment,
)
from gpu_check_parts.report import render_markdown, run_part, write_reports  # noqa: E402
from gpu_check_parts.report import _child  # noqa: E402

__all__ = ["PARTS", "TITLES", "balanced_threshold", "compare_hashes", "main", "parse_args", "render_markdown"]

EXAMPLES = """examples:
  python benchmarks/gpu_check.py --device cuda --out results/gpu          one GPU, budget 7.5 minutes
  python benchmarks/gpu_check.py --device cpu --tiny --out /tmp/gpu-dry   dry run of the same script on a CPU
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python benchmarks/gpu_check.py", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Checks this artifact on a GPU machine in one run and writes one report (gpu_check.json and\n"
                    "gpu_check.md in --out). Four parts, each in its own process: 1. the CUDA tests, 2. the\n"
                    "training benchmark and the projected wall time of the paper profile, 3. determinism on the\n"
                    "device (SHA-256 of every snapshot of three runs), 4. the shrunk paper profile end to end.\n"
                    "A part that fails does not stop the others; --budget-s bounds the whole run. Exit status 0\n"
                    "when every part passed.")
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
