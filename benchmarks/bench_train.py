"""Training throughput per architecture, and the projected wall time of every profile.

    python benchmarks/bench_train.py [--epochs 3] [--threads 1]

For every population of every profile (datasets that are not on disk are skipped), one network
(the middle learning rate of its grid, no dropout) is trained for ``--epochs`` epochs with
``--threads`` threads (what each of a profile's worker processes uses) in a temporary store.
The script prints epochs per second and projects the wall time of the profile as

    sum over populations of  networks x max epochs x seconds per epoch / workers

an upper bound: early stopping and divergence end many runs sooner (the measured time of a
profile is ``train_seconds`` summed over ``results/<profile>/runs.csv``, divided by workers).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paperlib import data, train  # noqa: E402
from paperlib.profiles import PROFILES  # noqa: E402


def epoch_seconds(profile, pop, epochs: int, threads: int) -> float:
    """Mean wall time of one training epoch (with its evaluation and snapshot) of one network."""
    spec = train.run_spec(profile, pop, pop.grid.lrs[len(pop.grid.lrs) // 2], 0.0, 0)
    spec["epochs"], spec["patience"] = epochs, epochs + 1  # no early stop: time exactly `epochs`
    with tempfile.TemporaryDirectory() as tmp:
        meta = train.train_run(tmp, spec, threads=threads)
    return meta["epoch_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per architecture")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads per network (0: cores / the profile's workers)")
    parser.add_argument("--profiles", nargs="*", default=list(PROFILES), help="profiles to project")
    args = parser.parse_args()
    os.environ.setdefault("PAPERLIB_QUIET", "1")
    cores = os.cpu_count() or 1
    print(f"{cores} cores, torch {torch.__version__}")
    for name in args.profiles:
        profile = PROFILES[name]
        threads = args.threads or max(1, cores // profile.workers)
        print(f"\nprofile {name}: {profile.workers} workers x {threads} thread(s)")
        print(f"  {'population':28s} {'nets':>5s} {'epochs':>6s} {'s/epoch':>8s} {'epochs/s':>9s} {'proj. min':>9s}")
        total = 0.0
        for pop in profile.populations:
            try:
                data.load_dataset(pop.dataset, profile.image_size[pop.dataset], profile.train_limit)
            except data.DatasetNotFoundError:
                print(f"  {pop.key:28s} (dataset not on disk: skipped)")
                total = float("nan")
                continue
            sec = epoch_seconds(profile, pop, args.epochs, threads)
            proj = pop.grid.size * pop.epochs * sec / profile.workers
            total += proj
            print(f"  {pop.key:28s} {pop.grid.size:5d} {pop.epochs:6d} {sec:8.3f} {1 / sec:9.2f} {proj / 60:9.1f}")
        print(f"  projected wall time of {name} (upper bound, no early stopping): {total / 60:.1f} min")


if __name__ == "__main__":
    main()
