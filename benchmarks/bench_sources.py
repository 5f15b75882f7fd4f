"""Cost of importing checkpoints: memory of reading a Small-CNN-Zoo-sized ``weights.npy``, and seconds
per network of the import and of steps 02-03 for each source.

    python benchmarks/bench_sources.py memory [--rows 270000] [--sample 100]
    python benchmarks/bench_sources.py steps  [--networks 6]

``memory`` writes, in a temporary folder, a ``weights.npy`` of the real shape (rows x 4,970
float32; ~5.4 GB with 270,000 rows, written sparsely: only the sampled networks' rows hold
values), a ``metrics.csv.gz`` of 30,000 networks x 9 checkpoints and the zoo's ``layout.csv``, then
imports ``--sample`` networks in a child process and prints its peak resident memory (ru_maxrss)
and the seconds per network; the folder is deleted afterwards. ``steps`` builds each source's
fixture population as the tests do (tiny networks trained on digits), runs ``01_import``,
``02_graph`` and ``03_features`` through the runner in a temporary root and prints the seconds per
network of each step from the manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CODE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CODE))
import paperlib  # noqa: E402,F401  first: it pins the CPU kernels before numpy and torch load
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
STEPS = [0, 1, 2, 3, 20, 40, 60, 80, 86]


def write_big(folder: Path, rows: int, sample: int) -> None:
    import torch

    from paperlib.sources import smallcnnzoo
    from paperlib.train.zoo import SmallCNN

    folder.mkdir(parents=True, exist_ok=True)
    n_nets = rows // len(STEPS)
    row, layout = smallcnnzoo.tf_row(SmallCNN().state_dict())
    w = np.lib.format.open_memmap(folder / "weights.npy", mode="w+", dtype=np.float32, shape=(rows, row.size))
    rng = np.random.default_rng(0)
    order = rng.permutation(rows)  # rows of a network scattered over the file
    picks = np.unique(np.linspace(0, n_nets - 1, sample).round().astype(int))
    torch.manual_seed(0)
    for net in picks:
        for j in range(len(STEPS)):
            w[order[net * len(STEPS) + j]] = smallcnnzoo.tf_row(SmallCNN().state_dict())[0]
    w.flush()
    del w
    net_of = np.repeat(np.arange(n_nets), len(STEPS))
    step = np.tile(STEPS, n_nets)
    inv = np.empty(rows, dtype=int)
    inv[order] = np.arange(rows)
    df = pd.DataFrame({"modeldir": [f"run_{i:05d}" for i in net_of], "step": step,
                       "test_accuracy": rng.uniform(0.1, 0.9, rows), "train_loss": rng.uniform(0, 2, rows),
                       "config.learning_rate": np.repeat(rng.uniform(1e-4, 1e-1, n_nets), len(STEPS)),
                       "config.dropout": 0.0, "config.optimizer": "adam", "config.activation": "relu"})
    df.iloc[inv].to_csv(folder / "metrics.csv.gz", index=False)
    pd.DataFrame(layout, columns=["varname", "start_idx", "end_idx", "shape"]).to_csv(folder / "layout.csv",
                                                                                    index=False)


def child_import(folder: Path, root: Path, sample: int) -> None:
    """Runs in a child process: import ``sample`` networks, print peak RSS and seconds."""
    os.environ["PAPERLIB_ROOT"] = str(root)
    (root / "profiles").mkdir(parents=True, exist_ok=True)
    (root / "profiles" / "big.toml").write_text(
        f'name = "big"\n[[populations]]\narch = "SmallCNN"\nsource = "smallcnnzoo"\npath = "{folder}"\n'
        f'dataset = "zoo-mnist"\nthreshold = 50.0\nlimit = {sample}\n')
    t0 = time.perf_counter()
    from paperlib.sources import importer

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t1 = time.perf_counter()
    res = importer.import_profile("big", progress=False)
    t2 = time.perf_counter()
    print(json.dumps({"networks": len(res.runs), "skipped": len(res.skipped),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "rss_after_imports_mib": before / 1024, "import_seconds": t2 - t1,
                      "seconds_per_network": (t2 - t1) / max(len(res.runs), 1), "startup_seconds": t1 - t0}))


def memory(rows: int, sample: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-sources-"))
    try:
        t0 = time.perf_counter()
        write_big(tmp / "zoo", rows, sample)
        size = (tmp / "zoo" / "weights.npy").stat().st_size
        print(f"wrote weights.npy {rows} x 4970 float32 ({size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.0f} s")
        out = subprocess.run([sys.executable, __file__, "_child", str(tmp / "zoo"), str(tmp / "root"), str(sample)],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp)


def steps(networks: int) -> None:
    sys.path.insert(0, str(CODE / "tests"))
    import test_sources as ts  # the fixtures' formats, written as the tests write them
    from conftest import make_root

    class Factory:
        def __init__(self, base: Path):
            self.base = base

        def mktemp(self, name: str) -> Path:
            p = self.base / name
            p.mkdir(parents=True, exist_ok=True)
            return p

    tmp = Path(tempfile.mkdtemp(prefix="bench-sources-"))
    try:
        ts.LRS = ts.LRS[:networks]
        for label, fixture, toml in (("runs", ts.own_runs, ts.OWN_TOML), ("raytune", ts.zoo_trials, ts.ZOO_TOML),
                                     ("smallcnnzoo", ts.small_zoo, ts.SMALL_TOML)):
            base, _, _ = next(fixture.__wrapped__(Factory(tmp / label)))  # the fixtures are generators (cleanup after)
            root = make_root(tmp / label / "root")
            ts._profile(root, toml.format(name=f"b-{label}", path=base), f"b-{label}")
            env = {**os.environ, "PAPERLIB_ROOT": str(root), "PYTHONPATH": str(CODE), "PAPERLIB_QUIET": "1"}
            subprocess.run([sys.executable, "-m", "paperlib.pipeline", "--profile", f"b-{label}", "--no-progress",
                            "--only", "01_import", "--only", "02_graph", "--only", "03_features"], cwd=CODE, env=env,
                           check=True, capture_output=True)
            res = root / "results" / f"b-{label}"
            man = json.loads((res / "manifest.json").read_text())
            n = len(pd.read_csv(res / "runs.csv"))
            # the measured seconds live apart from the results (results/<profile>/timings/)
            cent = pd.read_csv(res / "centralities.csv").merge(pd.read_csv(res / "timings" / "centralities.csv"),
                                                               on="key")
            feats = pd.read_csv(res / "timings" / "features.csv")
            inside = {  # measured inside the steps, per network (no kernel start-up)
                "import": json.loads((res / "metrics.json").read_text())["import"]["seconds_per_network"],
                "02 rolled": float((cent["n_snapshots"] * cent["rolled_seconds"]).mean()),
                "02 unrolled": float((cent["n_snapshots"] * cent["unrolled_seconds"]).mean()),
                "03": float(feats.groupby("arch")["seconds_per_network"].sum().mean()),
            }
            print(label, f"{n} networks, whole steps (with kernel start-up):",
                  ", ".join(f"{s['notebook']} {s['seconds']:.1f} s" for s in man["steps"]),
                  "| per network inside the steps:", ", ".join(f"{k} {v:.3f} s" for k, v in inside.items()))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    if sys.argv[1:2] == ["_child"]:
        child_import(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
        sys.exit(0)
    ap = argparse.ArgumentParser(
        prog="python benchmarks/bench_sources.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Cost of importing checkpoints. memory: writes a Small-CNN-Zoo-sized weights.npy (sparsely, in a\n"
                    "temporary folder, deleted afterwards), imports --sample networks in a child process and\n"
                    "prints its peak resident memory and the seconds per network. steps: builds each source's\n"
                    "test population (tiny networks trained on digits), runs 01_import, 02_graph and 03_features\n"
                    "through the runner in a temporary root and prints the seconds per network of each step.",
        epilog="examples:\n"
               "  python benchmarks/bench_sources.py memory --rows 270000 --sample 100\n"
               "  python benchmarks/bench_sources.py steps --networks 6")
    ap.add_argument("what", choices=["memory", "steps"])
    ap.add_argument("--rows", type=int, default=270_000)
    ap.add_argument("--sample", type=int, default=100)
    ap.add_argument("--networks", type=int, default=10)
    a = ap.parse_args()
    memory(a.rows, a.sample) if a.what == "memory" else steps(a.networks)
