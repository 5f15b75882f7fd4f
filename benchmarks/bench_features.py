"""Benchmark of the feature step (S3): seconds per network to compute every feature set up to the
largest t, per architecture.

With a trained profile (``results/<profile>/runs.csv`` and the centralities cached by
``temporal.compute_profile``) it times :func:`paperlib.features.population.compute_population` on the real
run store, one feature set at a time (each reading its own source: the centralities, the
snapshots, or the run's history). Without one, it builds a synthetic store in a temporary folder:
freshly initialised networks of every population (so the last layers and rolled-graph sizes are
the real ones), a snapshot per epoch, and random centrality vectors of the rolled-graph size;
the output is then marked SYNTHETIC.

Usage::

    python benchmarks/bench_features.py                   # default profile
    python benchmarks/bench_features.py --profile smoke --networks 4
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import paperlib  # noqa: E402,F401  first: it pins the CPU kernels before numpy and torch load

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from paperlib import paths  # noqa: E402
from paperlib import features  # noqa: E402
from paperlib.profiles import Profile, get_profile  # noqa: E402
from paperlib.files import atomic_write_json
from paperlib.train.store import Run, save_tensors  # noqa: E402


def _has_real_store(profile: Profile) -> bool:
    runs_csv = paths.results_dir(profile.name) / "runs.csv"
    if not runs_csv.exists():
        return False
    key = pd.read_csv(runs_csv)["key"].iloc[0]
    return Run(paths.runs_dir(profile.name) / key).cache_path("rolled").exists()


def _synthetic_store(profile: Profile, root: Path, n_networks: int) -> tuple[pd.DataFrame, dict[str, int]]:
    import torch

    from paperlib.train import data, models
    from paperlib import graph

    rows, nodes = [], {}
    for pop in profile.populations:
        info = data.DATASETS[pop.dataset]
        size = profile.image_size[pop.dataset]
        for i in range(n_networks):
            torch.manual_seed(i)
            model = models.build_model(pop.model, info.num_classes, info.in_channels, size, **pop.model_kwargs)
            if pop.arch not in nodes:
                nodes[pop.arch] = graph.rolled_graph(model).adjacency.shape[0]
            run = Run(root / f"{pop.arch}-{i}")
            atomic_write_json(run.dir / "spec.json", {"arch": pop.arch, "i": i})
            for e in range(pop.t_max + 1):
                save_tensors(run.snapshot_path(e), model.state_dict())
            run.write_meta({"status": "finished", "final_acc": 50.0, "early_stop_epoch": pop.t_max,
                            "history": [{"epoch": e, "test_acc": 50.0} for e in range(pop.t_max + 1)]})
            rows.append({"key": run.key, "arch": pop.arch, "final_acc": 50.0, "diverged": False,
                         "epochs_trained": pop.t_max})
    return pd.DataFrame(rows), nodes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/bench_features.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Times the feature step (S3, 03_features): seconds per network to compute every feature set up\n"
                    "to the largest t, per architecture. With a trained profile (runs.csv and the cached\n"
                    "centralities) it times the real run store; without one, a synthetic store of freshly\n"
                    "initialised networks in a temporary folder (the output then says SYNTHETIC).",
        epilog="examples:\n"
               "  python benchmarks/bench_features.py                                 the default profile\n"
               "  python benchmarks/bench_features.py --profile smoke --networks 4    a quick run")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--networks", type=int, default=8, help="networks per population (synthetic store)")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    real = _has_real_store(profile)
    tmp = None
    if real:
        runs = features.read_runs(profile.name)
        root = paths.runs_dir(profile.name)
        centralities = None
    else:
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name)
        runs, nodes = _synthetic_store(profile, root, args.networks)
        rng = np.random.default_rng(0)

        def centralities(run: Run, kind: str) -> dict[str, np.ndarray]:
            n = nodes[run.key.rsplit("-", 1)[0]]
            t = len(run.snapshot_epochs())
            return {"epochs": np.arange(t), "deg": rng.gamma(2.0, size=(t, n)),
                    "evec": np.abs(rng.normal(size=(t, n))), "finite": np.ones(t, bool)}
    rows = []
    for pop in profile.populations:
        for name in profile.feature_sets:
            t0 = time.perf_counter()
            _, info = features.compute_population(pop, runs, root, (name,), centralities)
            seconds = time.perf_counter() - t0
            n = info[0]["n_networks"]
            rows.append({"arch": pop.arch, "feature_set": name, "status": info[0]["status"], "networks": n,
                         "t_max": info[0]["t_available"], "dim_per_epoch": info[0]["dim_per_epoch"],
                         "ms_per_network": 1e3 * seconds / max(n, 1)})
    df = pd.DataFrame(rows)
    print(f"profile {profile.name}: {'real run store' if real else 'SYNTHETIC store (no trained profile)'}; "
          f"cpu_count={os.cpu_count()}")
    print(df.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    total = df.groupby("arch", sort=False)["ms_per_network"].sum()
    print("\nall feature sets, ms per network up to t_max:")
    print(total.to_string(float_format=lambda x: f"{x:.1f}"))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
