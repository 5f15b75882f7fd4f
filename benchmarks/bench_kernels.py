"""What pinning the CPU kernels costs: training and evaluation, pinned against the libraries' own choice.

Each measurement runs in a fresh interpreter, once with the pin (``paperlib.kernels``, the
default) and once with ``PAPERLIB_KERNELS=native`` (the kernels the libraries pick for this
CPU, AVX-512 where there is AVX-512), and prints seconds and the ratio pinned / native:

* training: a few networks of the default profile per architecture, a few epochs each, one
  intra-op thread (as every run trains);
* evaluation: repeated nested cross-validation of the SVM and the MLP on a random feature
  matrix of the default populations' size (one BLAS thread, as every fit runs).

    python benchmarks/bench_kernels.py [--epochs 3] [--networks 2] [--repeats 3]

On a CPU without AVX-512 both sides run AVX2 kernels and the ratio is about 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CODE = Path(__file__).resolve().parents[1]

_TRAIN = r"""
import json, sys, tempfile, time
from pathlib import Path
from paperlib import kernels, profiles
from paperlib.train import trainer as train
epochs, networks = int(sys.argv[1]), int(sys.argv[2])
P = profiles.get_profile("default")
out = {"isa": kernels.isa_class()}
for arch, spec in train.profile_specs(P, networks=networks):
    spec = dict(spec, epochs=epochs)
    root = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    train.train_run(root, spec)
    out[arch] = out.get(arch, 0.0) + time.perf_counter() - t0
out["torch"] = kernels.state().get("torch")
print(json.dumps(out))
"""

_EVAL = r"""
import json, sys, time
from paperlib.evaluate import evaluation
from paperlib import kernels  # first: the pin precedes numpy
import numpy as np
repeats = int(sys.argv[1])
rng = np.random.default_rng(0)
n, d = 64, 45
Z = rng.normal(size=(n, d)); y = (Z[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
groups = np.arange(n) // 2; acc = rng.uniform(0, 100, n)
out = {"isa": kernels.isa_class()}
with evaluation.single_thread():
    for clf in ("svm", "mlp"):
        t0 = time.perf_counter()
        for seed in range(repeats):
            evaluation.nested_cv(Z, y, groups, acc, clf, seed, 5, evaluation.FitCounter())
        out[clf] = time.perf_counter() - t0
out["openblas"] = kernels.state().get("openblas")
print(json.dumps(out))
"""


def _run(code: str, args: list[str], native: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PAPERLIB_KERNELS"}
    if native:
        env["PAPERLIB_KERNELS"] = "native"
    env["PYTHONPATH"] = os.pathsep.join([str(CODE), env.get("PYTHONPATH", "")])
    env["PAPERLIB_QUIET"] = "1"
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python benchmarks/bench_kernels.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="What pinning the CPU kernels costs: times training (a few networks of the default profile per\n"
                    "architecture) and evaluation (repeated nested cross-validation of the SVM and the MLP), each\n"
                    "in a fresh interpreter, once with the pin (paperlib.kernels) and once with\n"
                    "PAPERLIB_KERNELS=native, and prints seconds and the ratio pinned / native.",
        epilog="example:\n"
               "  python benchmarks/bench_kernels.py --epochs 2 --networks 1 --repeats 2")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--networks", type=int, default=2, help="networks per architecture")
    ap.add_argument("--repeats", type=int, default=3, help="fold seeds of the evaluation")
    a = ap.parse_args()
    for what, code, args in (("training", _TRAIN, [str(a.epochs), str(a.networks)]),
                             ("evaluation", _EVAL, [str(a.repeats)])):
        pinned, native = _run(code, args, False), _run(code, args, True)
        print(f"{what}: pinned {pinned.pop('isa')} ({pinned.pop('torch', None) or pinned.pop('openblas', None)}) "
              f"vs native {native.pop('isa')} ({native.pop('torch', None) or native.pop('openblas', None)})")
        for k in pinned:
            print(f"  {k:<12} pinned {pinned[k]:7.2f} s   native {native[k]:7.2f} s   ratio {pinned[k] / native[k]:.2f}")
        total_p, total_n = sum(pinned.values()), sum(native.values())
        print(f"  {'all':<12} pinned {total_p:7.2f} s   native {total_n:7.2f} s   ratio {total_p / total_n:.2f}")


if __name__ == "__main__":
    main()
