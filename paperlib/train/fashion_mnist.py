"""Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017) from its original idx files.

Where the files are looked for, in this order (the first folder that holds all four is used):

1. ``<data root>/FashionMNIST/raw/``: ``torchvision.datasets.FashionMNIST``'s own on-disk layout
   under :func:`paperlib.paths.data_root` (``$PAPERLIB_DATA``, default ``<root>/data``);
2. ``/usr/share/datasets/fashion-mnist/`` (:data:`SYSTEM_DIRS`): where Debian's package
   ``dataset-fashion-mnist`` installs them (``apt-get install dataset-fashion-mnist``, 30 MB).

Each of the four files (:data:`FILES`) may be stored raw (``train-images-idx3-ubyte``) or gzipped
(``train-images-idx3-ubyte.gz``; the raw file wins where both exist). The SHA-256 of the
*uncompressed* bytes is checked against :data:`FILES` (Debian recompresses the ``.gz`` files, so
their own checksums differ from upstream's); a mismatch raises
:class:`~paperlib.paths.DatasetNotFoundError` naming the file. The check is made once per
process, on the bytes that are read anyway (the decoded arrays are cached, :func:`load`);
``verify=False`` or ``PAPERLIB_VERIFY_DATA=0`` (tests that write idx files of their own) skip it.

Nothing is downloaded unless asked: ``python -m paperlib.train.fashion_mnist --download`` calls
``torchvision.datasets.FashionMNIST(<data root>, download=True)`` (needs the internet), which writes
layout 1. ``python -m paperlib.train.fashion_mnist`` alone finds and checks the files, and
``--setup`` (what ``make reproduce PROFILE=fmnist`` runs first) also installs Debian's package where
that can be done without a password (root, or ``sudo -n``).

The training subset (:func:`stratified_subset`): a profile's ``train_limit`` keeps the same number
of images of every class (``train_limit // 10``), drawn once with a fixed seed (:data:`SUBSET_SEED`)
and kept in their file order; the test set is always the whole 10,000 images.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from .. import paths

NAME = "fashion-mnist"
#: file name -> SHA-256 of its uncompressed bytes
FILES = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
APT_PACKAGE = "dataset-fashion-mnist"
SUBSET_SEED = 0
HINT = (f"install Debian's package (`sudo apt-get install {APT_PACKAGE}`, into {SYSTEM_DIRS[0]}), or, on a "
        "machine with the internet, download it with `python -m paperlib.train.fashion_mnist --download` "
        "(torchvision's download into $PAPERLIB_DATA/FashionMNIST/raw)")


def _error(message: str) -> Exception:
    from ..paths import DatasetNotFoundError

    return DatasetNotFoundError(message)


def candidate_dirs(root: Path | str | None = None) -> list[Path]:
    """The folders looked in, in order: torchvision's layout under the data root, then Debian's."""
    root = Path(root) if root is not None else paths.data_root()
    return [root / "FashionMNIST" / "raw", *SYSTEM_DIRS]


def _file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find(root: Path | str | None = None) -> dict[str, Path]:
    """The four files of the first folder that holds them all; DatasetNotFoundError naming every folder."""
    looked = []
    for folder in candidate_dirs(root):
        found = {name: _file(folder, name) for name in FILES}
        if all(found.values()):
            return found  # type: ignore[return-value]
        missing = [n for n, p in found.items() if p is None]
        looked.append(f"{folder} (missing {', '.join(missing)})" if folder.is_dir() else f"{folder} (no such folder)")
    raise _error(f"Fashion-MNIST not found; looked for {', '.join(FILES)} (raw or .gz) in: " + "; ".join(looked)
                 + f". To get it, {HINT}.")


def read_bytes(path: Path) -> bytes:
    """The uncompressed bytes of an idx file (gzip when it ends in ``.gz``)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:
        raise _error(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from exc


def parse_idx(raw: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    """An idx array of unsigned bytes: magic ``0 0 0x08 ndim``, ``ndim`` big-endian int32 sizes, the data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise _error(f"{path}: not an idx file of unsigned bytes (magic {raw[:4].hex() or 'missing'}, expected 000008nn)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _error(f"{path}: header cut short ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    size = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != size:
        raise _error(f"{path}: {len(raw) - header} data bytes for shape {shape} ({size} expected)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _verify(verify: bool | None) -> bool:
    if verify is None:
        return os.environ.get("PAPERLIB_VERIFY_DATA", "1") != "0"
    return bool(verify)


def read_file(path: Path, expected_sha256: str | None) -> np.ndarray:
    """One idx file, its uncompressed SHA-256 compared with ``expected_sha256`` (``None``: not checked)."""
    raw = read_bytes(path)
    if expected_sha256 is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != expected_sha256:
            raise _error(f"{path}: SHA-256 of the uncompressed file is {digest}, expected {expected_sha256} "
                         f"(Fashion-MNIST's {Path(path).name.removesuffix('.gz')}); the file is damaged or another "
                         f"dataset's. Replace it: {HINT}.")
    return parse_idx(raw, path)


@functools.lru_cache(maxsize=4)
def _load(root: str, verify: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    found = find(root)
    arrays = {name: read_file(p, FILES[name] if verify else None) for name, p in found.items()}
    out = []
    for split in ("train", "t10k"):
        x, y = arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise _error(f"{found[f'{split}-images-idx3-ubyte']}: images of shape {x.shape} and labels "
                         f"({found[f'{split}-labels-idx1-ubyte']}) of shape {y.shape} do not pair up")
        if y.size and y.max() > 9:
            raise _error(f"{found[f'{split}-labels-idx1-ubyte']}: label {int(y.max())} outside 0..9")
        out += [x, y]
    return tuple(out)  # type: ignore[return-value]


def load(root: Path | str | None = None, verify: bool | None = None
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: images ``uint8`` ``(N, 28, 28)``, labels ``uint8``.

    Cached per process (files found, read and checked once); see the module docstring for where
    the files are looked for and how they are checked.
    """
    root = Path(root) if root is not None else paths.data_root()
    return _load(str(root), _verify(verify))


def stratified_subset(labels: np.ndarray, n: int | None, seed: int = SUBSET_SEED) -> np.ndarray:
    """Indices of ``n // classes`` images of every class (all when ``n`` is None or not below the
    total), drawn with ``numpy.random.default_rng(seed)`` per class in class order, sorted."""
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    classes = np.unique(labels)
    per = n // len(classes)
    if per < 1:
        raise ValueError(f"train_limit={n} keeps no image of some of the {len(classes)} classes")
    rng = np.random.default_rng(seed)
    picks = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if len(idx) < per:
            raise ValueError(f"class {int(c)} has {len(idx)} training images, fewer than the {per} asked")
        picks.append(rng.choice(idx, size=per, replace=False))
    return np.sort(np.concatenate(picks))


def tensors(image_size: int, train_limit: int | None = None, root: Path | str | None = None,
            verify: bool | None = None) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """``(x_train, y_train, x_test, y_test)`` as tensors: images ``uint8`` ``(N, 1, S, S)``, labels ``int64``.

    The training images are :func:`stratified_subset` of ``train_limit``. ``S`` is 28, or
    ``image_size`` when it is larger by an even number: the 28x28 images are then centred on a
    zero (background) border, which changes no pixel (``image_size=32``: the 32x32 input the paper's
    CIFAR-10 architectures are defined for, as LeNet-5 was first fed MNIST). Smaller sizes are left
    at 28 for :mod:`paperlib.train.data` to resize.
    """
    import torch
    import torch.nn.functional as F

    x_tr, y_tr, x_te, y_te = load(root, verify)
    idx = stratified_subset(y_tr, train_limit)
    xs = [torch.from_numpy(np.array(x)).unsqueeze(1) for x in (x_tr[idx], x_te)]
    border = image_size - x_tr.shape[-1]
    if border > 0 and border % 2 == 0:
        xs = [F.pad(x, (border // 2,) * 4) for x in xs]
    labels = [torch.from_numpy(y.astype(np.int64)) for y in (y_tr[idx], y_te)]
    return xs[0].contiguous(), labels[0], xs[1].contiguous(), labels[1]


def download(root: Path | str | None = None) -> Path:
    """torchvision's download of both splits into ``<root>/FashionMNIST/raw`` (needs the internet)."""
    from torchvision.datasets import FashionMNIST

    root = Path(root) if root is not None else paths.data_root()
    for train in (True, False):
        FashionMNIST(str(root), train=train, download=True)
    return root / "FashionMNIST" / "raw"


def apt_install() -> bool:
    """Install Debian's package where that needs no password (root, or ``sudo -n``); True on success."""
    if shutil.which("apt-get") is None:
        return False
    cmd = ["apt-get", "install", "-y", APT_PACKAGE]
    if os.geteuid() != 0:
        if shutil.which("sudo") is None or subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode:
            return False
        cmd = ["sudo", "-n", *cmd]
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd).returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paperlib.train.fashion_mnist",
                                     description="Find and check Fashion-MNIST (and optionally fetch it).")
    parser.add_argument("--root", help="data root (default: $PAPERLIB_DATA or <root>/data)")
    parser.add_argument("--download", action="store_true",
                        help="download it with torchvision into <root>/FashionMNIST/raw (needs the internet)")
    parser.add_argument("--setup", action="store_true",
                        help=f"when it is missing, install Debian's {APT_PACKAGE} if no password is needed")
    args = parser.parse_args(argv)
    from ..paths import DatasetNotFoundError

    try:
        if args.download:
            print(f"downloaded into {download(args.root)}")
        try:
            found = find(args.root)
        except DatasetNotFoundError:
            if not (args.setup and apt_install()):
                raise
            found = find(args.root)
        x_tr, _, x_te, _ = _load(str(Path(args.root) if args.root else paths.data_root()), True)
    except DatasetNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Fashion-MNIST: {len(x_tr)} training and {len(x_te)} test images, checksums ok, in "
          f"{next(iter(found.values())).parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
