"""Coverage of the graph walker: every classification model of ``torchvision.models``.

For each model (freshly initialised, ``weights=None``, never downloaded) at the smallest of
the input sides 32, 64, 224 (3 channels) it runs on, the rolled graph (trace + graph) and
the unrolled graph (graph + one matrix-free product, the weighted degree) are built. A cell
says ``works`` with the seconds, nodes and edges, or ``refused`` with the reason the walker
gave (which names the module, the operation and the construct). Vision transformers are
built at their smallest image size (twice the patch) so that their refusal is quick.

Writes a Markdown table to ``results/graph_coverage.md`` and prints it with the total time.

Usage::

    python benchmarks/graph_coverage.py              # every model
    python benchmarks/graph_coverage.py resnet18 ... # some models
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import paperlib  # noqa: E402,F401  first: it pins the CPU kernels before numpy and torch load

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from paperlib import graph, paths  # noqa: E402

SIDES = (32, 64, 96, 128, 224)


def _build(name: str) -> torch.nn.Module:
    kw = {}
    if name.startswith("vit_"):
        patch = int(name.split("_")[-1])
        kw["image_size"] = 2 * patch
    if name in ("googlenet", "inception_v3"):
        kw["init_weights"] = False
    return torchvision.models.get_model(name, weights=None, **kw)


def _short(exc: BaseException, limit: int = 300) -> str:
    msg = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
    msg = msg.split(" Supported:")[0]
    return msg if len(msg) <= limit else msg[:limit] + "..."


def _edges(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n:,}"


def one(name: str) -> dict:
    torch.manual_seed(0)
    row = {"model": name}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = _build(name)
    side_err = None
    for side in SIDES:
        if name.startswith("vit_"):
            side = net.image_size
        shape = (3, side, side)
        t0 = time.perf_counter()
        try:
            plan = graph.GraphPlan(net, shape)
        except ValueError as exc:  # does not run at this input size
            side_err = exc
            continue
        except Exception as exc:  # refused (or failed) at this size
            row.update(input=f"{side}x{side}", rolled=f"refused: {_short(exc)}", unrolled="refused (as rolled)")
            return row
        try:
            r = plan.rolled()
            _ = r.operator @ np.ones(r.n)
            row["rolled"] = (f"works: {time.perf_counter() - t0:.2f} s, {r.n_nodes:,} nodes, "
                             f"{_edges(r.n_edges)} edges")
        except Exception as exc:
            row["rolled"] = f"refused: {_short(exc)}"
        t1 = time.perf_counter()
        try:
            u = plan.unrolled(dtype=torch.float32)
            u.apply(np.ones((1, u.n)))
            row["unrolled"] = (f"works: {time.perf_counter() - t1:.2f} s, {u.n_nodes:,} nodes, "
                               f"{_edges(u.n_edges)} edges")
        except Exception as exc:
            row["unrolled"] = f"refused: {_short(exc)}"
        row["input"] = f"{side}x{side}"
        return row
    row.update(input="-", rolled=f"does not run: {_short(side_err)}", unrolled="-")
    return row


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(
        prog="python benchmarks/graph_coverage.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Builds the rolled and the unrolled graph of every classification model of torchvision\n"
                    "(freshly initialised, never downloaded) and writes which work and which are refused, with the\n"
                    "walker's reason, to results/graph_coverage.md (and prints it).",
        epilog="examples:\n"
               "  python benchmarks/graph_coverage.py                        every model\n"
               "  python benchmarks/graph_coverage.py resnet18 mobilenet_v2  some models")
    ap.add_argument("models", nargs="*", help="torchvision model names (default: every classification model)")
    names = ap.parse_args(argv).models or torchvision.models.list_models(module=torchvision.models)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = []
    for name in names:
        t = time.perf_counter()
        rows.append(one(name))
        gc.collect()
        print(f"{name}: {time.perf_counter() - t:.1f} s | {rows[-1]['rolled'][:80]} | {rows[-1]['unrolled'][:60]}",
              flush=True)
    total = time.perf_counter() - t0
    ok_r = sum(r["rolled"].startswith("works") for r in rows)
    ok_u = sum(r["unrolled"].startswith("works") for r in rows)
    lines = [
        f"Graphs of the {len(rows)} classification models of torchvision {torchvision.__version__} "
        f"(torch {torch.__version__}; weights=None, 3-channel input at the smallest side of {SIDES} that runs; "
        "times on one thread, trace included for the rolled graph, one matrix-free product for the unrolled "
        f"graph). Rolled: {ok_r} work; unrolled: {ok_u} work. Made by `python benchmarks/graph_coverage.py` "
        f"in {total:.0f} s.",
        "",
        "| model | input | rolled graph | unrolled graph |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['model']} | {r['input']} | {r['rolled']} | {r['unrolled']} |" for r in rows]
    out = paths.RESULTS / "graph_coverage.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)
    print("\n".join(lines))
    print(f"\nwrote {out} in {total:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
