"""Datasets: digits against scikit-learn's copy; CIFAR-10 and Tiny-ImageNet from files written
in their own on-disk formats and read through the real loaders."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paperlib.train import data

CIFAR_PER_BATCH = 6  # images per batch file of the fake CIFAR-10
TINY_WNIDS = ["n01443537", "n01629819", "n01641577"]


# --------------------------------------------------------------------------- fake datasets
def make_cifar10(root: Path, n: int = CIFAR_PER_BATCH, seed: int = 0) -> dict[str, np.ndarray]:
    """Write ``root/cifar-10-batches-py`` in CIFAR-10's python format (pickled dicts of
    ``data``: uint8 (n, 3072) in CHW order, ``labels``); return the arrays written."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, size=n)]
        entry = {"batch_label": name, "labels": y, "data": x, "filenames": [f"{name}_{i}.png" for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(entry))
        written[name] = (x, np.array(y))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                            "truck"], "num_cases_per_batch": n, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return written


def make_tiny_imagenet(root: Path, per_class: int = 2, val_per_class: int = 2) -> Path:
    """Write the tiny-imagenet-200 layout with solid-colour JPEGs: class k has grey level 60 k + 30."""
    base = root / "tiny-imagenet-200"
    lines = []
    for k, wnid in enumerate(TINY_WNIDS):
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(per_class):
            Image.new("RGB", (64, 64), (60 * k + 30,) * 3).save(folder / f"{wnid}_{i}.JPEG")
        for i in range(val_per_class):
            name = f"val_{k * val_per_class + i}.JPEG"
            lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "images").mkdir(parents=True)
    for line in lines:
        name, wnid = line.split("\t")[:2]
        Image.new("RGB", (64, 64), (60 * TINY_WNIDS.index(wnid) + 30,) * 3).save(base / "val" / "images" / name)
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines[::-1]) + "\n")  # order differs from files
    (base / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    return base


# --------------------------------------------------------------------------- digits
def test_digits_split_against_sklearn():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    train, test = data.load_dataset("digits", 8)
    x_tr, y_tr = train.tensors
    x_te, y_te = test.tensors
    assert len(train) + len(test) == len(bunch.target) == 1797
    assert len(test) == 360  # ceil(0.2 * 1797)
    assert x_tr.shape[1:] == (1, 8, 8) and x_tr.dtype == torch.float32
    # at native size the images are sklearn's, divided by 16: every split image is one of them
    ref = {tuple((img / 16.0).ravel().round(6)) for img in bunch.images}
    assert all(tuple(v) in ref for v in x_te.reshape(len(test), -1).double().numpy().round(6))
    # stratified: every class has 80% of its images (rounded) in the training set
    for c in range(10):
        n_c = int((bunch.target == c).sum())
        assert abs(int((y_tr == c).sum()) - 0.8 * n_c) <= 1
    assert int((y_tr == 0).sum() + (y_te == 0).sum()) == int((bunch.target == 0).sum())


def test_digits_resized_fixed_and_limited():
    a_tr, a_te = data.load_dataset("digits", 16)
    b_tr, _ = data.load_dataset("digits", 16, train_limit=100)
    assert a_tr.tensors[0].shape[1:] == (1, 16, 16)
    assert float(a_tr.tensors[0].min()) >= 0.0 and float(a_tr.tensors[0].max()) <= 1.0
    assert len(b_tr) == 100 and torch.equal(b_tr.tensors[0], a_tr.tensors[0][:100])
    # bilinear resize of an 8x8 image: the mean grey level is preserved up to edge effects
    small, _ = data.load_dataset("digits", 8)
    assert torch.allclose(small.tensors[0].mean(), a_tr.tensors[0].mean(), atol=0.02)
    assert torch.equal(small.tensors[1], a_tr.tensors[1])


# --------------------------------------------------------------------------- CIFAR-10
def test_cifar10_reads_the_python_batches(tmp_path):
    written = make_cifar10(tmp_path)
    train, test = data.load_dataset("cifar10", 32, root=tmp_path, verify=False)
    assert len(train) == 5 * CIFAR_PER_BATCH and len(test) == CIFAR_PER_BATCH
    x, y = test[3]
    ref_x, ref_y = written["test_batch"]
    assert x.shape == (3, 32, 32) and y == ref_y[3]
    # the test set is not augmented: pixel values are the bytes written, / 255, CHW
    expected = torch.from_numpy(ref_x[3].reshape(3, 32, 32).astype(np.float32) / 255.0)
    assert torch.allclose(x, expected)
    x_small, _ = data.load_dataset("cifar10", 16, root=tmp_path, verify=False)[1][0]
    assert x_small.shape == (3, 16, 16)
    limited, _ = data.load_dataset("cifar10", 32, train_limit=7, root=tmp_path, verify=False)
    assert len(limited) == 7


def test_cifar10_checksums_and_missing_files(tmp_path):
    make_cifar10(tmp_path)
    with pytest.raises(data.DatasetNotFoundError, match="cifar-10-batches-py") as err:
        data.load_dataset("cifar10", 32, root=tmp_path)  # md5 of the fake files differs
    assert "download=True" in str(err.value)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(data.DatasetNotFoundError, match=str(tmp_path)):
        data.load_dataset("cifar10", 32, root=tmp_path, verify=False)
    with pytest.raises(data.DatasetNotFoundError, match="PAPERLIB_DATA"):
        data.load_dataset("cifar10", 32, root=tmp_path / "nowhere")


# --------------------------------------------------------------------------- Tiny-ImageNet
def test_tiny_imagenet_layout_and_val_annotations(tmp_path):
    make_tiny_imagenet(tmp_path)
    train, test = data.load_dataset("tiny-imagenet", 64, root=tmp_path)
    assert len(train) == 2 * len(TINY_WNIDS) and len(test) == 2 * len(TINY_WNIDS)
    assert sorted(train[i][1] for i in range(len(train))) == [0, 0, 1, 1, 2, 2]
    for i in range(len(test)):  # test images are not augmented: their grey level gives the class
        x, y = test[i]
        assert x.shape == (3, 64, 64)
        grey = (60 * y + 30) / 255.0  # labels index the sorted wnids, as ImageFolder does
        assert abs(float(x.mean()) - grey) < 0.02
    _, test16 = data.load_dataset("tiny-imagenet", 16, root=tmp_path)
    assert test16[0][0].shape == (3, 16, 16)


def test_tiny_imagenet_sample_sizes(tmp_path, monkeypatch):
    make_tiny_imagenet(tmp_path, per_class=3)
    monkeypatch.setattr(data, "TINY_TRAIN_SAMPLE", 5)
    monkeypatch.setattr(data, "TINY_TEST_SAMPLE", 4)
    a_tr, a_te = data.load_dataset("tiny-imagenet", 16, root=tmp_path)
    b_tr, _ = data.load_dataset("tiny-imagenet", 16, root=tmp_path)
    assert len(a_tr) == 5 and len(a_te) == 4
    assert a_tr.indices == b_tr.indices  # a fixed sample


def test_tiny_imagenet_errors_name_the_path(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="tiny-imagenet-200") as err:
        data.load_dataset("tiny-imagenet", 64, root=tmp_path)
    assert "tiny-imagenet-200.zip" in str(err.value)
    base = make_tiny_imagenet(tmp_path)
    ann = base / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_x.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(data.DatasetNotFoundError, match="val_annotations.txt"):
        data.load_dataset("tiny-imagenet", 64, root=tmp_path)


def test_unknown_dataset():
    with pytest.raises(KeyError, match="digits"):
        data.load_dataset("mnist", 28)
