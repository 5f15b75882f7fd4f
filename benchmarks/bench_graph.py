"""Benchmark of the graph step (S1 + S2), printed in one run.

1. Reference: the authors' approach on one snapshot of the CIFAR AlexNet (32x32 inputs): a
   ``networkx.Graph`` built edge by edge in Python loops (kernel-slice norms with numpy),
   ``networkx.eigenvector_centrality`` (default tolerance; ``max_iter`` raised from 100, which
   freshly initialised networks need) and the weighted degree; against ``paperlib``'s rolled
   graph + both centralities. Prints both times, their ratio and the largest absolute
   differences of the centralities.
2. torchvision's ResNet-50: rolled graph + both centralities per snapshot (the one-off trace
   of the architecture reported apart).
3. Unrolled graph, matrix-free, weighted degree + eigenvector centrality of the CIFAR VGG at
   32x32 and of ResNet-50 at 64x64, each in a fresh process: edges, bytes the explicit CSR
   matrix would need, and the peak resident memory (VmHWM) the process actually used.

Usage::

    python benchmarks/bench_graph.py            # full reference (a few minutes)
    python benchmarks/bench_graph.py --quick    # reference on a narrower AlexNet, extrapolated

``--quick`` times the reference on the AlexNet at width 1/4 and scales the time by the ratio
of edge counts; the printed ratio is then marked EXTRAPOLATED. No weights are downloaded: every
network is freshly initialised with a fixed seed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import paperlib  # noqa: E402,F401  first: it pins the CPU kernels before numpy and torch load

import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from paperlib import graph  # noqa: E402
from paperlib.graph import centrality  # noqa: E402
from paperlib.train import models  # noqa: E402


MAX_ITER = 10_000


def cifar_alexnet(width: float = 1.0) -> nn.Module:
    torch.manual_seed(0)
    return models.build_model("alexnet", num_classes=10, in_channels=3, image_size=32, width=width)


# --------------------------------------------------------------------------- 1. reference
def reference_networkx(model: nn.Module, side: int = 32) -> tuple[dict, dict, int, float, float]:
    """The authors' approach: layers in module order (a chain), one ``add_edge`` per pair.

    Returns (degree, eigenvector centrality, edges, seconds to build, seconds for centralities).
    """
    t0 = time.perf_counter()
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    G = nx.Graph()
    offset = 0
    prev_units = layers[0].in_channels
    spatial = None  # side of the last conv map, for the first linear layer
    size = side
    for layer in layers:
        w = layer.weight.detach().numpy()
        start = offset + prev_units
        if isinstance(layer, nn.Conv2d):
            for l in range(w.shape[0]):
                for k in range(w.shape[1]):
                    G.add_edge(offset + k, start + l, weight=float(np.linalg.norm(w[l, k])))
            units = w.shape[0]
        else:
            per = w.shape[1] // prev_units  # features per producer unit (H*W after a flatten)
            for l in range(w.shape[0]):
                for k in range(prev_units):
                    G.add_edge(offset + k, start + l, weight=float(np.linalg.norm(w[l, k * per:(k + 1) * per])))
            units = w.shape[0]
        offset, prev_units = start, units
    t1 = time.perf_counter()
    # networkx's defaults, but for max_iter: its power iteration on A + I needs more than 100
    # steps when the largest eigenvalue is small (freshly initialised weights)
    evec = nx.eigenvector_centrality(G, weight="weight", max_iter=MAX_ITER)
    deg = dict(G.degree(weight="weight"))
    t2 = time.perf_counter()
    return deg, evec, G.number_of_edges(), t1 - t0, t2 - t1


def ours(model: nn.Module, repeats: int = 7) -> tuple[np.ndarray, np.ndarray, graph.RolledGraph, float, float]:
    """Rolled graph + both centralities; median seconds over ``repeats`` (trace included)."""
    times, times_snap = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        plan = graph.GraphPlan(model, (3, 32, 32))
        t1 = time.perf_counter()
        g = plan.rolled(model)
        deg = centrality.weighted_degree(g.operator)
        evec = centrality.eigenvector_centrality(g.operator)
        t2 = time.perf_counter()
        times.append(t2 - t0)
        times_snap.append(t2 - t1)
    return deg, evec, g, statistics.median(times), statistics.median(times_snap)


def part1(quick: bool) -> None:
    print("== 1. CIFAR AlexNet (32x32), one snapshot: networkx reference vs rolled graph ==")
    model = cifar_alexnet()
    deg, evec, g, t_ours, t_snap = ours(model)
    print(f"rolled graph: {g.n_nodes} nodes, {g.n_edges} edges")
    print(f"ours: rolled graph + degree + eigenvector centrality: {t_ours * 1e3:.1f} ms "
          f"(median of 7; {t_snap * 1e3:.1f} ms per snapshot once the architecture is traced)")
    if quick:
        small = cifar_alexnet(0.25)
        _, _, e_small, tb, tc = reference_networkx(small)
        scale = g.n_edges / e_small
        t_ref = (tb + tc) * scale
        print(f"reference on the width-1/4 AlexNet ({e_small} edges): build {tb:.1f} s + centralities {tc:.1f} s; "
              f"x {scale:.1f} (edge ratio) = {t_ref:.1f} s EXTRAPOLATED")
        print(f"speed-up: {t_ref / t_ours:.0f}x (EXTRAPOLATED reference; trace included), "
              f"{t_ref / t_snap:.0f}x per traced snapshot")
        _, _, g_small, _, _ = ours(small, repeats=1)
        d_ref, e_ref, _, _, _ = reference_networkx(small)
        d_s = centrality.weighted_degree(g_small.operator)
        e_s = centrality.eigenvector_centrality(g_small.operator)
        print(f"max |difference| on the width-1/4 AlexNet: degree {np.abs(d_s - _vec(d_ref, g_small.n)).max():.2e}, "
              f"eigenvector {np.abs(e_s - _vec(e_ref, g_small.n)).max():.2e}")
        return
    d_ref, e_ref, n_edges, tb, tc = reference_networkx(model)
    t_ref = tb + tc
    print(f"reference (networkx, edge by edge): {n_edges} edges; build {tb:.1f} s + degree and "
          f"eigenvector centrality {tc:.1f} s = {t_ref:.1f} s (measured once)")
    print(f"speed-up: {t_ref / t_ours:.0f}x (trace included), {t_ref / t_snap:.0f}x per traced snapshot "
          "(target >= 2000x)")
    dd = np.abs(deg - _vec(d_ref, g.n)).max()
    de = np.abs(evec - _vec(e_ref, g.n)).max()
    exact = _exact_perron(g)
    print(f"max |difference| to networkx: degree {dd:.2e}, eigenvector {de:.2e} (target < 1e-6); "
          f"to a dense eigendecomposition: networkx {np.abs(_vec(e_ref, g.n) - exact).max():.2e}, "
          f"ours {np.abs(evec - exact).max():.2e}")


def _vec(d: dict, n: int) -> np.ndarray:
    return np.array([d[i] for i in range(n)])


def _exact_perron(g: graph.RolledGraph) -> np.ndarray:
    vals, vecs = np.linalg.eigh(g.adjacency.toarray())
    x = np.abs(vecs[:, -1])
    return x / np.linalg.norm(x)


# --------------------------------------------------------------------------- 2. ResNet-50 rolled
def part2() -> None:
    import torchvision

    print("\n== 2. torchvision ResNet-50: rolled graph + both centralities per snapshot ==")
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    t0 = time.perf_counter()
    plan = graph.GraphPlan(model, (3, 224, 224))
    t_trace = time.perf_counter() - t0
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        g = plan.rolled(model)
        t1 = time.perf_counter()
        centrality.weighted_degree(g.operator)
        t2 = time.perf_counter()
        centrality.eigenvector_centrality(g.operator)
        t3 = time.perf_counter()
        times.append((t1 - t0, t2 - t1, t3 - t2))
    s1, d, e = (statistics.median(x) for x in zip(*times))
    print(f"{g.n_nodes} nodes, {g.n_edges:,} edges (CSR would take {g.nbytes / 2**20:.0f} MiB; "
          "the blocks are shared at residual sums)")
    print(f"per snapshot (median of 5): graph {s1:.3f} s + degree {d:.3f} s + eigenvector {e:.3f} s "
          f"= {s1 + d + e:.3f} s (target < 1 s); one-off trace of the architecture {t_trace:.3f} s")


# --------------------------------------------------------------------------- 3. unrolled
def _peak_rss_kib() -> int:
    """Peak resident memory of this process (VmHWM; ``ru_maxrss`` where /proc is missing,
    which on Linux may include the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _unrolled_case(name: str, queue) -> None:
    import torchvision

    torch.manual_seed(0)
    if name == "vgg":
        model, shape = models.build_model("vgg", num_classes=10, in_channels=3, image_size=32), (3, 32, 32)
    else:
        model, shape = torchvision.models.resnet50(weights=None), (3, 64, 64)
    base = _peak_rss_kib()
    t0 = time.perf_counter()
    u = graph.unrolled_graph(model, shape)
    u.threads = None  # large convolutions: use torch's threads
    t1 = time.perf_counter()
    deg = centrality.weighted_degree(u.operator)
    t2 = time.perf_counter()
    evec = centrality.eigenvector_centrality(u.operator)
    t3 = time.perf_counter()
    peak = _peak_rss_kib()
    queue.put({"name": name, "shape": shape, "nodes": u.n_nodes, "edges": u.n_edges, "bytes": u.nbytes,
               "s1": t1 - t0, "deg": t2 - t1, "evec": t3 - t2, "base_kib": base, "peak_kib": peak,
               "finite": bool(np.isfinite(evec).all() and np.isfinite(deg).all())})


def part3() -> None:
    print("\n== 3. unrolled graph, matrix-free: weighted degree + eigenvector centrality ==")
    ctx = multiprocessing.get_context("spawn")
    for name, label in (("vgg", "CIFAR VGG-11 (BN), 32x32"), ("resnet50", "torchvision ResNet-50, 64x64")):
        q = ctx.Queue()
        p = ctx.Process(target=_unrolled_case, args=(name, q))
        p.start()
        r = q.get()
        p.join()
        print(f"{label}: {r['nodes']:,} nodes, {r['edges']:,} edges; explicit CSR would need "
              f"{r['bytes'] / 2**30:.2f} GiB; peak RSS {r['peak_kib'] / 2**20:.2f} GiB "
              f"({r['base_kib'] / 2**20:.2f} GiB before the graph); "
              f"time: graph {r['s1']:.2f} s, degree {r['deg']:.2f} s, eigenvector {r['evec']:.1f} s; "
              f"finite: {r['finite']}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python benchmarks/bench_graph.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Times the graph step (S1 + S2) and prints, in one run: 1. the rolled graph and both centralities\n"
                    "of one CIFAR AlexNet snapshot against the authors' approach (a networkx graph built edge by\n"
                    "edge, networkx.eigenvector_centrality), their ratio and the largest differences; 2. the same\n"
                    "per snapshot of torchvision's ResNet-50; 3. the matrix-free unrolled centralities of VGG\n"
                    "(32x32) and ResNet-50 (64x64) with the memory the explicit graph would need. Nothing is\n"
                    "downloaded: every network is freshly initialised with a fixed seed.",
        epilog="examples:\n"
               "  python benchmarks/bench_graph.py              full reference (a few minutes)\n"
               "  python benchmarks/bench_graph.py --quick      reference on a narrower AlexNet, extrapolated\n"
               "  python benchmarks/bench_graph.py --only 3     only the unrolled graphs")
    ap.add_argument("--quick", action="store_true", help="extrapolate the reference from a narrower AlexNet")
    ap.add_argument("--only", type=int, choices=(1, 2, 3), action="append", help="run only these parts")
    args = ap.parse_args(argv)
    parts = args.only or [1, 2, 3]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, networkx {nx.__version__}")
    if 1 in parts:
        part1(args.quick)
    if 2 in parts:
        part2()
    if 3 in parts:
        part3()


if __name__ == "__main__":
    main()
