"""Datasets: scikit-learn's digits (bundled), CIFAR-10 and Tiny-ImageNet (from a data root).

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
    MD5 checksums are verified as torchvision does; ``verify=False`` checks only that they exist.
    Training images are augmented (random crop with 4-pixel padding, horizontal flip), as in
    the authors' code.
``tiny-imagenet``
    the usual layout of ``tiny-imagenet-200`` under ``root``: ``train/<wnid>/images/*.JPEG``
    (read with ``torchvision.datasets.ImageFolder``) and ``val/images/*.JPEG`` labelled by
    ``val/val_annotations.txt``. As in the paper, a fixed random sample of 50,000 training and
    5,000 validation images (the latter used as test set). Training images are augmented
    like CIFAR-10's.

A missing or malformed dataset raises :class:`DatasetNotFoundError`, naming the path that was
read and how to obtain the data. The root defaults to :func:`paperlib.paths.data_root`.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, Subset, TensorDataset

from . import paths


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is missing from the data root, or its files are not in the expected format."""


@dataclass(frozen=True)
class DatasetInfo:
    in_channels: int
    num_classes: int
    native_size: int  # side of the images as stored


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(in_channels=1, num_classes=10, native_size=8),
    "cifar10": DatasetInfo(in_channels=3, num_classes=10, native_size=32),
    "tiny-imagenet": DatasetInfo(in_channels=3, num_classes=200, native_size=64),
}

DIGITS_TEST_FRACTION = 0.2
SPLIT_SEED = 0  # seed of the digits train/test split and of the Tiny-ImageNet sample
TINY_TRAIN_SAMPLE = 50_000
TINY_TEST_SAMPLE = 5_000

CIFAR10_HINT = (
    "download it once with `torchvision.datasets.CIFAR10(root, download=True)` "
    "(or unpack https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz into the root)"
)
TINY_IMAGENET_HINT = (
    "download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it into the root"
)


def load_dataset(
    name: str,
    image_size: int,
    train_limit: int | None = None,
    root: Path | str | None = None,
    *,
    verify: bool = True,
) -> tuple[Dataset, Dataset]:
    """Train and test sets of dataset ``name`` at ``image_size`` x ``image_size`` pixels.

    Parameters
    ----------
    name
        ``"digits"``, ``"cifar10"`` or ``"tiny-imagenet"`` (see :data:`DATASETS`).
    image_size
        side of the square images returned.
    train_limit
        keep only the first ``train_limit`` training examples (after the fixed split or
        sample); ``None`` keeps all.
    root
        data root for CIFAR-10 and Tiny-ImageNet; default :func:`paperlib.paths.data_root`.
    verify
        CIFAR-10 only: check the files' MD5 checksums (``False``: only that they exist).

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
        train, test = _cifar10(root, image_size, verify)
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
