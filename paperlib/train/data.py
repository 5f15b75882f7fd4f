"""Datasets: scikit-learn's digits (bundled), CIFAR-10, Tiny-ImageNet and Fashion-MNIST (from files).

``load_dataset(name, image_size)`` returns ``(train, test)`` as ``torch.utils.data.Dataset``s
of ``(image, label)`` pairs, images as float tensors of shape ``(C, image_size, image_size)``
with values in ``[0, 1]``.

``digits``
    scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels), bundled with scikit-learn,
    so nothing is downloaded. Scaled to ``[0, 1]``, resized bilinearly to ``image_size`` and
    split 80/20 into train and test, stratified by class, with a fixed seed.
``cifar10``
    ``torchvision.datasets.CIFAR10`` read from ``<root>/cifar-10-batches-py`` (never downloaded
    unless you do it yourself: ``torchvision.datasets.CIFAR10(root, download=True)``). The files'
    MD5 checksums are verified as torchvision does; ``verify=False`` (or the environment variable
    ``PAPERLIB_VERIFY_DATA=0``, used by the tests that write CIFAR-10 files of their own) checks
    only that they exist.
    Training images are augmented (random crop with 4-pixel padding, horizontal flip), as in
    the authors' code.
``tiny-imagenet``
    the usual layout of ``tiny-imagenet-200`` under ``root``: ``train/<wnid>/images/*.JPEG``
    (read with ``torchvision.datasets.ImageFolder``) and ``val/images/*.JPEG`` labelled by
    ``val/val_annotations.txt``. As in the paper, a fixed random sample of 50,000 training and
    5,000 validation images (the latter used as test set). Training images are augmented
    like CIFAR-10's.
``fashion-mnist``
    the idx files, found, checked and subset by :mod:`paperlib.train.fashion_mnist` (at 32x32 with
    a 2-pixel zero border); not augmented, as in the public zoos trained on it.

A missing or malformed dataset raises :class:`DatasetNotFoundError`, naming the path that was
read and how to obtain the data. The root defaults to :func:`paperlib.paths.data_root`.

Training reads the data through :func:`load_tensors` instead: a :class:`TensorData` holding every
image of each split as one tensor, moved once to the training device (CPU or GPU; no
``DataLoader`` and no loader worker processes). Batches are drawn, augmented and normalised on
that device by :meth:`TensorData.train_batches` with a seeded ``torch.Generator`` on the same
device, the way the fast CIFAR-10 scripts (airbench, hlb-CIFAR10) feed a GPU, while the
augmentation itself stays the authors':

- random crop with 4-pixel zero padding (the offsets ``0..8`` drawn per image, as
  ``torchvision.transforms.RandomCrop(32, padding=4)``) and a horizontal flip with probability
  1/2 (``RandomHorizontalFlip``), applied to the stored pixels before normalisation, so padded
  pixels are 0 before ``Normalize`` as in the authors' pipeline (crop, flip, ``ToTensor``,
  ``Normalize``); :func:`augment` does it for a whole batch in one gather;
- normalisation ``(x - 0.5) / 0.5`` per channel for CIFAR-10, the authors'
  ``Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))``, and the same for Tiny-ImageNet (their loader for
  it is never called; we keep their CIFAR choice) and for digits (the paper has no digits setting;
  the same normalisation keeps one input convention for every profile). Digits get no augmentation
  (flips and crops would change what a digit is).

CIFAR-10 and Tiny-ImageNet are kept as ``uint8`` (a quarter of the memory of ``float32``; the
50,000 Tiny-ImageNet training images take 614 MB) and converted per batch exactly as
``ToTensor`` does (``x / 255`` in ``float32``). When ``image_size`` differs from the native size,
augmentation happens at the native size and the batch is then resized (bilinear, antialiased).
Tiny-ImageNet is used at its native 64x64: the authors' resolution cannot be read from their
code, 64x64 is the resolution the dataset is published at, and it needs no resampling.
"""

from __future__ import annotations

import functools
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, Subset, TensorDataset

from .. import paths
from ..paths import DatasetNotFoundError  # noqa: F401  (raised here and by fashion_mnist; defined with the paths)
from . import fashion_mnist


@dataclass(frozen=True)
class DatasetInfo:
    in_channels: int
    num_classes: int
    native_size: int  # side of the images as stored


class _Datasets(dict):
    """paperlib's datasets; a name it does not have may be the data of an imported population, whose
    channels and classes its profile file declares (:mod:`paperlib.profile_files`)."""

    def __missing__(self, name: str) -> DatasetInfo:
        from ..profile_files import dataset

        imported = dataset(name)
        if imported is None:
            raise KeyError(name)
        channels, classes, size = imported
        return DatasetInfo(in_channels=channels, num_classes=classes, native_size=size)


DATASETS: dict[str, DatasetInfo] = _Datasets({
    "digits": DatasetInfo(in_channels=1, num_classes=10, native_size=8),
    "cifar10": DatasetInfo(in_channels=3, num_classes=10, native_size=32),
    "tiny-imagenet": DatasetInfo(in_channels=3, num_classes=200, native_size=64),
    "fashion-mnist": DatasetInfo(in_channels=1, num_classes=10, native_size=28),
})

DIGITS_TEST_FRACTION = 0.2
SPLIT_SEED = 0  # seed of the digits train/test split and of the Tiny-ImageNet sample
TINY_TRAIN_SAMPLE = 50_000
TINY_TEST_SAMPLE = 5_000

CIFAR10_HINT = ("download it once with `torchvision.datasets.CIFAR10(root, download=True)` "
                "(or unpack https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz into the root)")
TINY_IMAGENET_HINT = "download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it into the root"


def load_dataset(
    name: str,
    image_size: int,
    train_limit: int | None = None,
    root: Path | str | None = None,
    *,
    verify: bool | None = None,
) -> tuple[Dataset, Dataset]:
    """Train and test sets of dataset ``name`` at ``image_size`` x ``image_size`` pixels.

    Parameters
    ----------
    name
        ``"digits"``, ``"cifar10"``, ``"tiny-imagenet"`` or ``"fashion-mnist"`` (:data:`DATASETS`).
    image_size
        side of the square images returned.
    train_limit
        keep only the first ``train_limit`` training examples (after the fixed split or
        sample; Fashion-MNIST: a stratified fixed subset); ``None`` keeps all.
    root
        data root for CIFAR-10 and Tiny-ImageNet; default :func:`paperlib.paths.data_root`.
    verify
        CIFAR-10 (MD5) and Fashion-MNIST (SHA-256): check the files' checksums (``False``: only that
        they exist; ``None``: check unless the environment sets ``PAPERLIB_VERIFY_DATA=0``).

    Returns
    -------
    (train, test)
        datasets of ``(image, label)``, images ``float32`` in ``[0, 1]``.

    Raises
    ------
    DatasetNotFoundError
        the files are missing or malformed; the message names the path and how to get the data.
    """
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    root = Path(root) if root is not None else paths.data_root()
    if name == "digits":
        train, test = _digits(image_size)
    elif name == "cifar10":
        train, test = _cifar10(root, image_size, _verify(verify))
    elif name == "fashion-mnist":
        xs = fashion_mnist.tensors(image_size, train_limit, root, _verify(verify))
        train, test = (TensorDataset(_resize_bytes(x, image_size), y) for x, y in (xs[:2], xs[2:]))
    else:
        train, test = _tiny_imagenet(root, image_size)
    if train_limit is not None and train_limit < len(train):
        train = Subset(train, range(train_limit)) if not isinstance(train, TensorDataset) else \
            TensorDataset(*(t[:train_limit] for t in train.tensors))
    return train, test


# --------------------------------------------------------------------------- digits
@functools.lru_cache(maxsize=8)
def _digits(image_size: int) -> tuple[TensorDataset, TensorDataset]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    if image_size != x.shape[-1]:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        x = x.clamp_(0.0, 1.0)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=DIGITS_TEST_FRACTION, stratify=bunch.target, random_state=SPLIT_SEED
    )
    idx_train, idx_test = torch.from_numpy(idx_train), torch.from_numpy(idx_test)
    return TensorDataset(x[idx_train], y[idx_train]), TensorDataset(x[idx_test], y[idx_test])


# --------------------------------------------------------------------------- tensors on a device
NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "digits": ((0.5,), (0.5,)),  # the authors' Normalize, as for CIFAR-10
    "cifar10": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # the authors' Normalize
    "tiny-imagenet": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "fashion-mnist": ((0.5,), (0.5,)),
}
AUGMENT = {"digits": False, "cifar10": True, "tiny-imagenet": True, "fashion-mnist": False}
CROP_PADDING = 4


def augment(x: torch.Tensor, gen: torch.Generator, padding: int = CROP_PADDING) -> torch.Tensor:
    """Random crop with ``padding`` zero pixels and a random horizontal flip of every image of ``x``.

    ``x`` is a batch ``(B, C, H, W)`` of any dtype on any device; ``gen`` a generator on the same
    device. Draws, in this order, the row offsets, the column offsets (each uniform in
    ``0..2 * padding``) and the flips (probability 1/2), then takes every crop in one gather from
    the zero-padded batch. Per image the result equals torchvision's
    ``RandomHorizontalFlip()(RandomCrop(H, padding)(img))`` with the same offsets and flip.
    """
    b, c, h, w = x.shape
    dev = x.device
    xp = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=dev)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=dev)
    flip = torch.randint(0, 2, (b,), generator=gen, device=dev).bool()
    return crop_flip(xp, dy, dx, flip, h, w)


def crop_flip(xp: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor,
              h: int, w: int) -> torch.Tensor:
    """Crops ``xp[i, :, dy[i]:dy[i]+h, dx[i]:dx[i]+w]``, mirrored left-right where ``flip[i]``."""
    dev = xp.device
    rows = dy[:, None] + torch.arange(h, device=dev)  # (B, h)
    cols = torch.arange(w, device=dev)
    cols = torch.where(flip[:, None], cols.flip(0)[None, :], cols[None, :]) + dx[:, None]  # (B, w)
    bi = torch.arange(xp.shape[0], device=dev)[:, None, None, None]
    ci = torch.arange(xp.shape[1], device=dev)[None, :, None, None]
    return xp[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


class TensorData:
    """Both splits of a dataset as tensors on one device, batched, augmented and normalised there.

    ``x_train``/``x_test`` are ``(N, C, H, W)``, ``uint8`` (pixel bytes) or ``float32`` in
    ``[0, 1]``; ``y_*`` are ``int64``. ``x_test`` is stored at ``image_size``; ``x_train`` at the
    native size when augmenting (crops are taken there, then resized).
    """

    def __init__(self, name: str, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                 y_test: torch.Tensor, image_size: int):
        self.name = name
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test
        self.image_size = image_size
        self.augment = AUGMENT[name]
        norm = NORMALISATION[name]
        dev = x_train.device
        self._mean = None if norm is None else torch.tensor(norm[0], device=dev).view(1, -1, 1, 1)
        self._std = None if norm is None else torch.tensor(norm[1], device=dev).view(1, -1, 1, 1)

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def to(self, device: torch.device | str) -> "TensorData":
        """A copy on ``device`` (the same object when already there)."""
        device = torch.device(device)
        if self.device == device or (device.index is None and self.device.type == device.type):
            return self
        return TensorData(self.name, self.x_train.to(device), self.y_train.to(device),
                          self.x_test.to(device), self.y_test.to(device), self.image_size)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels to network input: ``x / 255`` for bytes (as ``ToTensor``), resize, normalise."""
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        if self._mean is not None:
            x = (x - self._mean) / self._std  # out of place: x may be a view of the cached test set
        return x

    def train_batches(self, batch_size: int, gen: torch.Generator):
        """One epoch of shuffled, augmented, normalised training batches ``(x, y)``.

        The order is ``torch.randperm`` drawn from ``gen``; a last batch of a single example is
        merged into the previous one (batch norm needs two).
        """
        n = len(self.y_train)
        perm = torch.randperm(n, generator=gen, device=self.device)
        chunks = list(perm.split(batch_size))
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            last = chunks.pop()
            chunks[-1] = torch.cat([chunks[-1], last])
        for idx in chunks:
            x = self.x_train[idx]
            if self.augment:
                x = augment(x, gen)
            yield self.prepare(x), self.y_train[idx]

    def test_batches(self, batch_size: int):
        """The test set in order, normalised, in batches of ``batch_size``."""
        for x, y in zip(self.x_test.split(batch_size), self.y_test.split(batch_size)):
            yield self.prepare(x), y


def _to_uint8_chw(images: np.ndarray) -> torch.Tensor:
    """``(N, H, W, C)`` uint8 array to a ``(N, C, H, W)`` uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def _resize_bytes(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear antialiased resize of a uint8 batch, kept as ``float32`` in ``[0, 1]`` (``x / 255`` at its size)."""
    x = x.float() / 255.0
    return x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)


@functools.lru_cache(maxsize=4)
def _tensors_cpu(name: str, image_size: int, train_limit: int | None, root: str, verify: bool) -> TensorData:
    root_p = Path(root)
    if name == "digits":
        tr, te = _digits(image_size)
        x_tr, y_tr = tr.tensors
        x_te, y_te = te.tensors
    elif name == "cifar10":
        tr, te = _cifar10(root_p, DATASETS[name].native_size, verify)
        x_tr, y_tr = _to_uint8_chw(tr.data), torch.tensor(tr.targets, dtype=torch.int64)
        x_te, y_te = _to_uint8_chw(te.data), torch.tensor(te.targets, dtype=torch.int64)
    elif name == "fashion-mnist":
        x_tr, y_tr, x_te, y_te = fashion_mnist.tensors(image_size, train_limit, root_p, verify)
    else:
        tr, te = _tiny_imagenet(root_p, DATASETS[name].native_size)
        x_tr, y_tr = _decode_all(tr, root_p)
        x_te, y_te = _decode_all(te, root_p)
    if train_limit is not None and train_limit < len(y_tr):
        x_tr, y_tr = x_tr[:train_limit], y_tr[:train_limit]
    if name != "digits" and image_size != x_te.shape[-1]:
        x_te = _resize_bytes(x_te, image_size)
        if not AUGMENT[name]:
            x_tr = _resize_bytes(x_tr, image_size)
    return TensorData(name, x_tr.contiguous(), y_tr, x_te.contiguous(), y_te, image_size)


def _decode_all(ds: Dataset, root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every image of a Tiny-ImageNet split (an ImageFolder, TinyImageNetVal or a Subset
    of one) into a ``(N, 3, 64, 64)`` uint8 tensor, in the dataset's order."""
    indices = list(ds.indices) if isinstance(ds, Subset) else list(range(len(ds)))
    base = ds.dataset if isinstance(ds, Subset) else ds
    samples = base.samples
    side = DATASETS["tiny-imagenet"].native_size
    x = torch.empty((len(indices), 3, side, side), dtype=torch.uint8)
    y = torch.empty(len(indices), dtype=torch.int64)
    for j, i in enumerate(indices):
        path, label = samples[i]
        try:
            with Image.open(path) as img:
                arr = np.asarray(img.convert("RGB"))
        except OSError as exc:
            raise DatasetNotFoundError(f"Tiny-ImageNet image {path} cannot be read ({exc})") from exc
        if arr.shape != (side, side, 3):
            raise DatasetNotFoundError(f"Tiny-ImageNet image {path} is {arr.shape[1]}x{arr.shape[0]}, "
                                       f"expected {side}x{side}")
        x[j] = torch.from_numpy(arr.transpose(2, 0, 1).copy())
        y[j] = int(label)
    return x, y


def load_tensors(name: str, image_size: int, train_limit: int | None = None,
                 root: Path | str | None = None, *, device: torch.device | str = "cpu",
                 verify: bool | None = None) -> TensorData:
    """Both splits of dataset ``name`` as tensors on ``device`` (see the module docstring).

    The splits, the Tiny-ImageNet sample and ``train_limit`` are those of :func:`load_dataset`;
    the test images equal its (unaugmented) ones before normalisation. The CPU copy is cached
    per process, so the runs of one worker read and decode the files once.
    """
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    root = Path(root) if root is not None else paths.data_root()
    return _tensors_cpu(name, int(image_size), train_limit, str(root), _verify(verify)).to(device)


def _verify(verify: bool | None) -> bool:
    """``verify``, or when ``None`` whether ``PAPERLIB_VERIFY_DATA`` is unset or not ``"0"``."""
    if verify is None:
        return os.environ.get("PAPERLIB_VERIFY_DATA", "1") != "0"
    return bool(verify)


# --------------------------------------------------------------------------- CIFAR-10
def _transforms(image_size: int, native: int, augment: bool) -> Callable:
    from torchvision import transforms as T

    steps: list = []
    if augment:
        steps += [T.RandomCrop(native, padding=4), T.RandomHorizontalFlip()]
    if image_size != native:
        steps.append(T.Resize((image_size, image_size), antialias=True))
    steps.append(T.ToTensor())
    return T.Compose(steps)


def _cifar10_class(verify: bool) -> type:
    from torchvision.datasets import CIFAR10

    if verify:
        return CIFAR10

    class CIFAR10Unverified(CIFAR10):
        """torchvision's CIFAR10 with the MD5 checks replaced by existence checks.

        torchvision's ``check_integrity(path, md5=None)`` only tests that the file exists, so
        setting every checksum to ``None`` keeps its reader and on-disk format unchanged.
        """

        train_list = [[f, None] for f, _ in CIFAR10.train_list]
        test_list = [[f, None] for f, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    return CIFAR10Unverified


def _cifar10(root: Path, image_size: int, verify: bool) -> tuple[Dataset, Dataset]:
    folder = root / "cifar-10-batches-py"
    cls = _cifar10_class(verify)
    info = DATASETS["cifar10"]
    try:
        train = cls(str(root), train=True, download=False,
                    transform=_transforms(image_size, info.native_size, augment=True))
        test = cls(str(root), train=False, download=False,
                   transform=_transforms(image_size, info.native_size, augment=False))
    except (RuntimeError, OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as exc:
        expected = ", ".join(f for f, _ in cls.train_list + cls.test_list) + ", " + cls.meta["filename"]
        raise DatasetNotFoundError(
            f"CIFAR-10 not found or corrupted in {folder} (expected the python-version batches: "
            f"{expected}; {type(exc).__name__}: {exc}). To get it, {CIFAR10_HINT}, "
            f"or set PAPERLIB_DATA to the folder that holds cifar-10-batches-py."
        ) from exc
    return train, test


# --------------------------------------------------------------------------- Tiny-ImageNet
class TinyImageNetVal(Dataset):
    """Tiny-ImageNet's validation images, labelled by ``val/val_annotations.txt``.

    Each line of the annotations file reads ``<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>``;
    labels are indices into ``class_to_idx`` (the training set's, so both agree).
    """

    def __init__(self, val_dir: Path, class_to_idx: dict[str, int], transform: Callable | None = None):
        self.val_dir = Path(val_dir)
        self.transform = transform
        ann = self.val_dir / "val_annotations.txt"
        self.samples: list[tuple[Path, int]] = []
        for lineno, line in enumerate(ann.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2 or parts[1] not in class_to_idx:
                raise DatasetNotFoundError(
                    f"{ann}, line {lineno}: expected '<file>\\t<wnid>\\t...' with a wnid of the "
                    f"training set, got {line!r}"
                )
            self.samples.append((self.val_dir / "images" / parts[0], class_to_idx[parts[1]]))
        missing = [p for p, _ in self.samples if not p.is_file()]
        if missing:
            raise DatasetNotFoundError(
                f"{len(missing)} validation image(s) listed in {ann} are missing, e.g. {missing[0]}"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        with Image.open(path) as img:
            img = img.convert("RGB")
        return (self.transform(img) if self.transform else img), label


def _sample(ds: Dataset, n: int, seed: int) -> Dataset:
    """A fixed random sample of ``n`` items of ``ds`` (all of it when it is smaller)."""
    if len(ds) <= n:
        return ds
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[:n].sort().values.tolist()
    return Subset(ds, idx)


def _tiny_imagenet(root: Path, image_size: int) -> tuple[Dataset, Dataset]:
    from torchvision.datasets import ImageFolder

    base = root / "tiny-imagenet-200"
    train_dir, val_dir = base / "train", base / "val"
    expected = (f"expected {train_dir}/<wnid>/images/*.JPEG and {val_dir}/images/*.JPEG with "
                f"{val_dir}/val_annotations.txt")
    if not train_dir.is_dir() or not (val_dir / "val_annotations.txt").is_file():
        raise DatasetNotFoundError(f"Tiny-ImageNet not found in {base} ({expected}). To get it, "
                                   f"{TINY_IMAGENET_HINT}, or set PAPERLIB_DATA to the folder that holds it.")
    info = DATASETS["tiny-imagenet"]
    try:
        train = ImageFolder(str(train_dir), transform=_transforms(image_size, info.native_size, augment=True))
    except (FileNotFoundError, OSError) as exc:
        raise DatasetNotFoundError(f"Tiny-ImageNet malformed in {base} ({expected}): {exc}") from exc
    test = TinyImageNetVal(val_dir, train.class_to_idx,
                           transform=_transforms(image_size, info.native_size, augment=False))
    return _sample(train, TINY_TRAIN_SAMPLE, SPLIT_SEED), _sample(test, TINY_TEST_SAMPLE, SPLIT_SEED)
