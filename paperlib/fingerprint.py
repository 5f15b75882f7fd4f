"""A fingerprint of the numeric primitives, to tell which CPUs compute the committed numbers alike.

Fixed inputs (numpy's PCG64 generator, the same on every platform) go through every primitive
that training and evaluation rely on, under the pinned kernels (:mod:`paperlib.kernels`), one
thread; the first 16 hex digits of the SHA-256 of each output's bytes are recorded. Two CPUs with
the same fingerprint compute those primitives bit for bit alike; a primitive whose hash differs
depends on the CPU, and numbers that pass through it are not promised to reproduce there.

The primitives, in two groups:

* ``relied on``: what a training run and the evaluation compute with: numpy's OpenBLAS
  (``numpy.matmul``), the layers of :mod:`paperlib.blas` (convolution forward, input and weight
  gradients, linear layer), ATen's elementwise and reduction kernels (exp, log, tanh, sigmoid,
  log-softmax, sum, norm), cross-entropy, batch norm, max pooling, the dropout mask
  (``torch.rand``), SGD, and a small CNN trained 40 steps through the BLAS layers;
* ``reference``: torch's own MKL products and convolutions (``torch.mm``, ``conv2d`` with oneDNN
  off), which nothing of the project computes with any more, kept because they show where two
  vendors part (MKL ignores ``MKL_CBWR=AVX2`` on AMD CPUs).

The inputs and the names of the primitives shared with the probe that first found the vendor
difference (``conv2d fwd 32x3x8x8->8``, ``torch.mm 4096x64x576``, ...) are the same, so a record
of either can be compared with the other. The records of the CPUs on which the committed results
were verified are ``results/fingerprints/*.json`` (:data:`paperlib.paths.FINGERPRINTS`); the test
suite and ``make verify`` compare the running machine with every one of them and name each
primitive that differs.

    python -m paperlib.fingerprint                 # this CPU against the records
    python -m paperlib.fingerprint --record        # add (or replace) this CPU's record
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from . import files, kernels, paths

SEED = 20261207
REFERENCE = re.compile(r"^(torch\.mm|conv2d) ")


def _hash(x: Any) -> str:
    import numpy as np
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach().contiguous().numpy()
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]


def primitives() -> dict[str, str]:
    """Hash of every primitive's output on the fixed inputs (pinned kernels, one thread)."""
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from threadpoolctl import threadpool_limits

    from . import blas

    kernels.check("the fingerprint")
    rng = np.random.Generator(np.random.PCG64(SEED))

    def draw(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    out: dict[str, str] = {}
    old = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    try:
        with threadpool_limits(1, user_api="blas"), torch.backends.nnpack.flags(enabled=False):
            for m, n, k in [(64, 64, 64), (4096, 64, 576), (128, 10, 512), (577, 33, 129), (2048, 256, 2304)]:
                a, b = draw(m, k), draw(k, n)
                out[f"torch.mm {m}x{n}x{k}"] = _hash(torch.from_numpy(a) @ torch.from_numpy(b))
                out[f"numpy.matmul {m}x{n}x{k}"] = _hash(a @ b)
            convs = []
            for nb, c, s, f in [(32, 3, 8, 8), (32, 16, 8, 32), (64, 64, 4, 64), (16, 3, 32, 16)]:
                x, w = draw(nb, c, s, s), draw(f, c, 3, 3) * 0.1
                xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
                y = F.conv2d(xt, wt, padding=1)
                g = torch.from_numpy(draw(*y.shape))
                y.backward(g)
                name = f"{nb}x{c}x{s}x{s}->{f}"
                out[f"conv2d fwd {name}"], out[f"conv2d bwd-input {name}"] = _hash(y), _hash(xt.grad)
                out[f"conv2d bwd-weight {name}"] = _hash(wt.grad)
                convs.append((name, x, w, g))
            x = torch.from_numpy(draw(4096) * 3)
            for name, fn in [("exp", torch.exp), ("log", lambda t: torch.log(t.abs() + 1e-3)), ("tanh", torch.tanh),
                             ("sigmoid", torch.sigmoid), ("log_softmax", lambda t: F.log_softmax(t.view(64, 64), 1)),
                             ("sum", lambda t: t.sum()), ("norm", lambda t: t.view(64, 64).norm(dim=1))]:
                out[f"torch.{name}"] = _hash(fn(x))
            logits = torch.from_numpy(draw(256, 10)).requires_grad_()
            target = torch.from_numpy(rng.integers(0, 10, 256))
            loss = F.cross_entropy(logits, target)
            loss.backward()
            out["cross_entropy fwd+bwd"] = _hash(torch.cat([loss.view(1), logits.grad.view(-1)]))
            bn = nn.BatchNorm2d(16)
            xb = torch.from_numpy(draw(32, 16, 8, 8)).requires_grad_()
            yb = bn(xb)
            yb.backward(torch.from_numpy(draw(32, 16, 8, 8)))
            out["batchnorm2d train fwd+bwd"] = _hash(torch.cat([yb.view(-1), xb.grad.view(-1), bn.running_var]))
            _blas_primitives(out, convs, draw, rng)
    finally:
        torch.set_num_threads(old[0])
        torch.backends.mkldnn.enabled = old[1]
    return out


def _blas_primitives(out: dict[str, str], convs: list, draw, rng) -> None:
    """The primitives of :mod:`paperlib.blas` and of a training step through them."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from . import blas

    for name, x, w, g in convs:
        xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
        y = blas.conv2d(xt, wt, None, 1, 1)
        y.backward(g)
        out[f"blas.conv2d fwd {name}"], out[f"blas.conv2d bwd-input {name}"] = _hash(y), _hash(xt.grad)
        out[f"blas.conv2d bwd-weight {name}"] = _hash(wt.grad)
    xs = torch.from_numpy(draw(16, 8, 9, 9)).requires_grad_()
    ws = torch.from_numpy(draw(8, 8, 3, 3)).requires_grad_()
    ys = blas.conv2d(xs, ws, None, 2, 1)
    ys.backward(torch.from_numpy(draw(*ys.shape)))
    out["blas.conv2d stride-2 fwd+bwd"] = _hash(torch.cat([ys.reshape(-1), xs.grad.reshape(-1), ws.grad.reshape(-1)]))
    xl, wl = torch.from_numpy(draw(128, 512)).requires_grad_(), torch.from_numpy(draw(10, 512)).requires_grad_()
    yl = blas.linear(xl, wl)
    yl.backward(torch.from_numpy(draw(128, 10)))
    out["blas.linear fwd+bwd 128x10x512"] = _hash(torch.cat([yl.view(-1), xl.grad.view(-1), wl.grad.view(-1)]))
    xp = torch.from_numpy(draw(32, 16, 8, 8)).requires_grad_()
    yp = F.max_pool2d(xp, 2)
    yp.backward(torch.from_numpy(draw(*yp.shape)))
    out["max_pool2d fwd+bwd"] = _hash(torch.cat([yp.view(-1), xp.grad.view(-1)]))
    torch.manual_seed(SEED)
    out["dropout mask (torch.rand)"] = _hash(blas.dropout(torch.ones(4096), 0.5))
    torch.manual_seed(0)
    net = blas.portable_layers(nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 3, padding=1),
        nn.ReLU(), nn.Flatten(), nn.Dropout(0.25), nn.Linear(16 * 16, 10)))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    X, Y = torch.from_numpy(draw(512, 1, 8, 8)), torch.from_numpy(rng.integers(0, 10, 512))
    for step in range(40):
        i = slice((step % 8) * 64, (step % 8 + 1) * 64)
        opt.zero_grad()
        F.cross_entropy(net(X[i]), Y[i]).backward()
        opt.step()
    out["small CNN through paperlib.blas, 40 SGD steps"] = _hash(torch.cat([p.detach().view(-1) for p in net.parameters()]))


def fingerprint() -> dict[str, Any]:
    """This machine's record: CPU, kernel class, library versions and :func:`primitives`."""
    import numpy
    import torch

    return {"cpu": kernels.cpu_model(), "isa": kernels.isa_class(),
            "versions": {"numpy": numpy.__version__, "torch": torch.__version__, "python": sys.version.split()[0]},
            "primitives": primitives()}


def _ops(record: dict[str, Any]) -> dict[str, str]:
    """The primitives of a record: ours, or the pinned configuration of the original probe's."""
    if "primitives" in record:
        return record["primitives"]
    return record.get("configs", {}).get("mkl-avx2-strict", {})


def records(folder: Path | None = None) -> dict[str, dict[str, Any]]:
    folder = paths.FINGERPRINTS if folder is None else Path(folder)
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def compare(me: dict[str, Any], recorded: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """For every record: the primitives both have that differ, ``relied on`` and ``reference``."""
    mine = _ops(me)
    out = {}
    for name, rec in recorded.items():
        theirs = _ops(rec)
        diff = sorted(op for op in mine.keys() & theirs.keys() if mine[op] != theirs[op])
        out[name] = {"relied on": [op for op in diff if not REFERENCE.match(op)],
                     "reference": [op for op in diff if REFERENCE.match(op)],
                     "compared": [str(len(mine.keys() & theirs.keys()))]}
    return out


def report(me: dict[str, Any], recorded: dict[str, dict[str, Any]]) -> tuple[str, bool]:
    """A text report of :func:`compare` and whether every relied-on primitive agrees with every record."""
    lines = [f"this CPU: {me['cpu']} ({me['isa']}; numpy {me['versions']['numpy']}, torch {me['versions']['torch']})"]
    ok = True
    for name, d in compare(me, recorded).items():
        rec = recorded[name]
        head = f"  {name} ({rec.get('cpu', '?')}): {d['compared'][0]} primitives compared"
        if not d["relied on"]:
            lines.append(head + ", every one the project relies on the same"
                         + (f"; differ only in torch's own {', '.join(d['reference'])}" if d["reference"] else ""))
        else:
            ok = False
            lines.append(head + f"; DIFFERENT: {', '.join(d['relied on'])}")
    if me["isa"] != kernels.PINNED_CLASS:
        lines.append(f"  this machine is outside the pinned class {kernels.PINNED_CLASS}: bits are not promised")
    return "\n".join(lines), ok


def _slug(cpu: str) -> str:
    """``amd-family25-model17`` for ``AuthenticAMD AMD EPYC (family 25, model 17)``."""
    vendor = {"AuthenticAMD": "amd", "GenuineIntel": "intel"}.get(cpu.split(" ", 1)[0], "")
    m = re.search(r"family (\d+), model (\d+)", cpu)
    if vendor and m:
        return f"{vendor}-family{m.group(1)}-model{m.group(2)}"
    return re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m paperlib.fingerprint", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compare this CPU's numeric primitives (hashes of their outputs on fixed inputs) with the "
                    "records of the CPUs on which the committed results were verified.",
        epilog="Exit status 1 when a primitive the project relies on differs from a record.\n\n"
               "examples:\n  python -m paperlib.fingerprint\n  python -m paperlib.fingerprint --record")
    ap.add_argument("--record", action="store_true", help="write this CPU's record into results/fingerprints/")
    ap.add_argument("--json", action="store_true", help="print this CPU's record as JSON")
    args = ap.parse_args(argv)
    me = fingerprint()
    if args.json:
        print(json.dumps(me, indent=1))
    text, ok = report(me, records())
    print(text)
    if args.record:
        slug = _slug(me["cpu"])
        target = paths.FINGERPRINTS / f"{slug}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        files.atomic_write_text(target, json.dumps(me, indent=1) + "\n")
        print(f"wrote {paths.relative(target)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
