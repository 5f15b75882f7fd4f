"""Training throughput per architecture on one device, beside the authors' way of feeding the data,
and the projected training time of every profile.

    python benchmarks/bench_train.py --device cpu [--quick] [--profiles default paper]
    python benchmarks/bench_train.py --device cuda

For every population of every profile, the network is trained on synthetic data of its dataset's
shape (digits-shaped for ``default``/``smoke``, CIFAR-10-shaped 3x32x32 and Tiny-ImageNet-shaped
3x64x64 for ``paper``; nothing is read from disk) in two ways, with the profile's batch size:

``ours``
    the trainer's own code (:func:`paperlib.train.trainer._train_epoch` and :func:`paperlib.train.trainer.evaluate`
    on a :class:`paperlib.train.data.TensorData` on the device: one tensor, augmentation and
    normalisation on the device), under :func:`paperlib.train.device.run_context` (the profile's
    threads, deterministic algorithms) and the profile's precision, plus one snapshot write;
``reference``
    a loop written the authors' way: a ``torchvision`` dataset of PIL images with per-image
    transforms (``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``,
    ``Normalize``; the dataset's own transforms, none for digits), a ``DataLoader`` (batch as the
    profile, shuffled, ``--ref-workers`` loader processes), batches moved to the device, the loss
    read with ``loss.item()`` after every step, as in their training loop; the same threads.

Both are timed on ``--batches`` training batches (at most one epoch: digits epochs are timed whole)
after one warm-up batch, and on up to two evaluation batches; an epoch is projected to the full training and test sets (50,000 / 10,000 for CIFAR-10,
50,000 / 5,000 for the Tiny-ImageNet sample, the digits split or ``train_limit``). The reference's
timing starts after its first batch, so its loader start-up (paid every epoch by the authors'
loop) is not counted, in its favour. The script prints per architecture seconds per epoch and epochs
per second of both, their ratio, and each profile's projected wall time

    sum over populations of  networks x max epochs x seconds per epoch / parallel runs

(``parallel runs``: the profile's workers on the CPU; one run at a time per GPU on CUDA, a
conservative figure: ``runs_per_device`` > 1 overlaps small networks). It is an upper bound:
early stopping and divergence end many runs sooner. ``--quick`` times fewer batches and only the
``default`` profile's architectures plus the paper's CIFAR-10 LeNet and ResNet-32.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import paperlib  # noqa: E402,F401  first: it pins the CPU kernels before numpy and torch load
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from paperlib.train import data, device as dev, trainer as train  # noqa: E402
from paperlib.profiles import PROFILES  # noqa: E402

EPOCH_SIZES = {"digits": (1437, 360), "cifar10": (50_000, 10_000),
               "tiny-imagenet": (data.TINY_TRAIN_SAMPLE, data.TINY_TEST_SAMPLE), "fashion-mnist": (60_000, 10_000)}
QUICK_PAPER = ("LeNet", "ResNet-32")


def synthetic(dataset: str, image_size: int, n_train: int, n_test: int, seed: int = 0):
    """Random images of a dataset's shape: uint8 at the native size (float in [0, 1] for digits)."""
    info = data.DATASETS[dataset]
    g = torch.Generator().manual_seed(seed)
    side = info.native_size if data.AUGMENT[dataset] else image_size
    if dataset == "digits":
        x = torch.rand((n_train + n_test, info.in_channels, image_size, image_size), generator=g)
    else:
        x = torch.randint(0, 256, (n_train + n_test, info.in_channels, side, side), generator=g, dtype=torch.uint8)
    y = torch.randint(0, info.num_classes, (n_train + n_test,), generator=g)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def _spec(profile, pop, device: str) -> dict:
    spec = train.run_spec(profile.with_overrides(device=device), pop, pop.grid.lrs[0], 0.0, 0)
    spec["lr"] = 1e-4  # small and fixed: no divergence while timing
    return spec


def time_ours(profile, pop, device: str, batches: int) -> float:
    """Projected seconds per epoch (training + evaluation + one snapshot) with the trainer's code."""
    spec = _spec(profile, pop, device)
    bs = spec["batch_size"]
    n_full, n_test_full = EPOCH_SIZES[pop.dataset]
    n_full = min(n_full, profile.train_limit or n_full)
    with dev.run_context(device, spec["threads"]):
        tdev = dev.torch_device(device)
        n_train = min(n_full, bs * batches)
        x, y, xt, yt = synthetic(pop.dataset, spec["image_size"], bs + n_train, min(n_test_full, 2 * train.EVAL_BATCH))
        warm = data.TensorData(pop.dataset, x[:bs], y[:bs], xt, yt, spec["image_size"]).to(tdev)
        full = data.TensorData(pop.dataset, x[bs:], y[bs:], xt, yt, spec["image_size"]).to(tdev)
        torch.manual_seed(0)
        model = dev.portable_layers(dev.deterministic_pools(train._make_model(spec)).to(tdev), device, spec["precision"])
        opt = train._make_optimizer(spec, model.parameters())
        gen = torch.Generator(device=tdev).manual_seed(0)
        train._train_epoch(model, opt, warm, bs, gen, spec["precision"])
        t0 = time.perf_counter()
        train._train_epoch(model, opt, full, bs, gen, spec["precision"])  # reads the loss: synchronises
        t_train = (time.perf_counter() - t0) / n_train
        t0 = time.perf_counter()
        train.evaluate(model, full, spec["precision"])
        t_eval = (time.perf_counter() - t0) / len(yt)
        t0 = time.perf_counter()
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, buf)
        t_snap = time.perf_counter() - t0
    return n_full * t_train + n_test_full * t_eval + t_snap


class _PILDataset(torch.utils.data.Dataset):
    """Synthetic images as PIL images with per-image transforms (the authors' input pipeline)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        self.x = [img for img in x.permute(0, 2, 3, 1).numpy()]
        self.y = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        img = self.x[i]
        img = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        return self.transform(img), self.y[i]


def _reference_transforms(dataset: str, augment: bool):
    from torchvision import transforms as T

    steps = []
    if augment and data.AUGMENT[dataset]:
        side = data.DATASETS[dataset].native_size
        steps += [T.RandomCrop(side, padding=4), T.RandomHorizontalFlip()]
    steps.append(T.ToTensor())
    norm = data.NORMALISATION[dataset]
    if norm is not None:
        steps.append(T.Normalize(*norm))
    return T.Compose(steps)


def time_reference(profile, pop, device: str, batches: int, workers: int) -> float:
    """Projected seconds per epoch of the authors' style of loop (DataLoader, per-image transforms)."""
    from torch.utils.data import DataLoader

    spec = _spec(profile, pop, device)
    bs = spec["batch_size"]
    n_full, n_test_full = EPOCH_SIZES[pop.dataset]
    n_full = min(n_full, profile.train_limit or n_full)
    n_train = min(n_full, bs * batches)
    x, y, xt, yt = synthetic(pop.dataset, spec["image_size"], bs + n_train, min(n_test_full, 2 * bs))
    if pop.dataset == "digits":  # digits are float in [0, 1]: bytes for PIL, the same content
        x, xt = (x * 255).round().to(torch.uint8), (xt * 255).round().to(torch.uint8)
    kw = dict(num_workers=workers, persistent_workers=False)
    loader = DataLoader(_PILDataset(x, y, _reference_transforms(pop.dataset, True)), batch_size=bs, shuffle=True, **kw)
    test_loader = DataLoader(_PILDataset(xt, yt, _reference_transforms(pop.dataset, False)), batch_size=bs,
                             shuffle=False, **kw)
    tdev = dev.torch_device(device)
    old = torch.get_num_threads()
    torch.set_num_threads(spec["threads"])
    try:
        torch.manual_seed(0)
        model = train._make_model(spec).to(tdev)
        opt = train._make_optimizer(spec, model.parameters())
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        running = 0.0
        t0 = None
        for i, (xb, yb) in enumerate(loader):
            if i == 1:
                t0 = time.perf_counter()
            xb, yb = xb.to(tdev), yb.to(tdev)
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            running += loss.item()
        t_train = (time.perf_counter() - t0) / (len(y) - bs)
        model.eval()
        correct, t0 = 0, None
        with torch.no_grad():
            for i, (xb, yb) in enumerate(test_loader):
                if i == 1:
                    t0 = time.perf_counter()
                correct += int((model(xb.to(tdev)).argmax(1) == yb.to(tdev)).sum().item())
        t_eval = (time.perf_counter() - t0) / (len(yt) - bs)
    finally:
        torch.set_num_threads(old)
    return n_full * t_train + n_test_full * t_eval


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/bench_train.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Training throughput per architecture on one device: epochs per second of the trainer beside a\n"
                    "loop written the authors' way (torchvision DataLoader with per-image transforms), their\n"
                    "ratio, and each profile's projected wall time on this machine (an upper bound: no early\n"
                    "stopping). Synthetic data of each dataset's shape; nothing is read from disk.",
        epilog="examples:\n"
               "  python benchmarks/bench_train.py --device cpu --quick     a couple of minutes on a CPU\n"
               "  python benchmarks/bench_train.py --device cuda            every architecture on the GPU")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--profiles", nargs="*", default=["default", "paper"], help="profiles to project")
    parser.add_argument("--batches", type=int, default=0, help="timed training batches, at most an epoch (0: 16, or 4 with --quick)")
    parser.add_argument("--ref-workers", type=int, default=2, help="DataLoader worker processes of the reference")
    parser.add_argument("--quick", action="store_true",
                        help="a couple of minutes on a CPU: fewer batches, the paper's CIFAR-10 LeNet and ResNet-32 only")
    args = parser.parse_args()
    os.environ.setdefault("PAPERLIB_QUIET", "1")
    device = dev.resolve_device(args.device)
    batches = args.batches or (4 if args.quick else 16)
    name = torch.cuda.get_device_name() if device == "cuda" else f"cpu ({os.cpu_count()} cores)"
    print(f"device {name}, torch {torch.__version__}, {batches} timed batches per measurement, "
          f"reference loader workers {args.ref_workers}")
    cache: dict = {}
    for pname in args.profiles:
        profile = PROFILES[pname]
        pops = [p for p in profile.populations if not (args.quick and pname == "paper" and p.arch not in QUICK_PAPER)]
        parallel = profile.workers if device == "cpu" else 1
        print(f"\nprofile {pname}: batch {profile.batch_size}, {profile.threads} thread(s) per run, "
              f"{parallel} run(s) at once on {device}" + (" (projection: listed populations only)"
                                                       if len(pops) < len(profile.populations) else ""))
        print(f"  {'population':26s} {'nets':>5s} {'epochs':>6s} {'s/epoch':>9s} {'epochs/s':>9s} "
              f"{'ref s/ep':>9s} {'ratio':>6s} {'proj. h':>8s}")
        total = 0.0
        for pop in pops:
            key = (pop.model, tuple(sorted(pop.model_kwargs.items())), pop.dataset, profile.image_size[pop.dataset],
                   profile.batch_size, profile.train_limit)
            if key not in cache:
                ours = time_ours(profile, pop, device, batches)
                ref = time_reference(profile, pop, device, batches, args.ref_workers)
                cache[key] = (ours, ref)
            ours, ref = cache[key]
            proj = pop.grid.size * pop.epochs * ours / parallel
            total += proj
            print(f"  {pop.key:26s} {pop.grid.size:5d} {pop.epochs:6d} {ours:9.3f} {1 / ours:9.3f} "
                  f"{ref:9.3f} {ref / ours:6.2f} {proj / 3600:8.2f}", flush=True)
        print(f"  projected wall time of {pname} on {device} (upper bound, no early stopping): "
              f"{total / 3600:.2f} h = {total / 60:.1f} min")


if __name__ == "__main__":
    main()
