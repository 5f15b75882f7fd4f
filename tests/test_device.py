"""The device path: data as tensors on the device, the authors' augmentation and normalisation done
there, checked image by image against torchvision's transforms; device and precision settings;
the deterministic global pool. Runs on the CPU through the same code; CUDA tests run where a GPU is."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision.transforms.functional as TF
from PIL import Image
from test_data import TINY_WNIDS, make_cifar10, make_tiny_imagenet
from torchvision import transforms as T

from paperlib.train import data, device

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def torchvision_augment(img: Image.Image, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """The authors' per-image pipeline with the random draws fixed: RandomCrop(32, padding=4)
    (pad with 0, crop at (dy, dx)), RandomHorizontalFlip, ToTensor, Normalize(0.5, 0.5)."""
    w, h = img.size
    img = TF.crop(TF.pad(img, 4, fill=0), dy, dx, h, w)
    if flip:
        img = TF.hflip(img)
    return T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))(TF.to_tensor(img))


def test_crop_flip_equals_torchvision_per_image(tmp_path):
    make_cifar10(tmp_path)
    tensors = data.load_tensors("cifar10", 32, root=tmp_path, verify=False)
    x = tensors.x_train[:12]
    dy = torch.tensor([0, 8, 3, 4, 0, 8, 1, 7, 2, 5, 6, 4])
    dx = torch.tensor([0, 8, 5, 4, 8, 0, 2, 6, 1, 7, 3, 0])
    flip = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0]).bool()
    xp = torch.nn.functional.pad(x, (4, 4, 4, 4))
    ours = tensors.prepare(data.crop_flip(xp, dy, dx, flip, 32, 32))
    for i in range(len(x)):
        img = Image.fromarray(x[i].permute(1, 2, 0).numpy())
        ref = torchvision_augment(img, int(dy[i]), int(dx[i]), bool(flip[i]))
        assert torch.equal(ours[i], ref), i


def test_augment_draws_are_seeded_and_cover_the_range():
    x = torch.arange(2000 * 3 * 8 * 8, dtype=torch.float32).reshape(2000, 3, 8, 8) % 251 + 1  # no zeros
    a = data.augment(x, torch.Generator().manual_seed(5))
    b = data.augment(x, torch.Generator().manual_seed(5))
    c = data.augment(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # recover every image's draw by brute force against the reference crop of its padded image
    xp = torch.nn.functional.pad(x, (4, 4, 4, 4))
    draws = []
    for i in range(0, 2000, 20):
        found = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                 if torch.equal(a[i], (lambda z: z.flip(-1) if f else z)(xp[i, :, dy:dy + 8, dx:dx + 8]))]
        assert len(found) == 1
        draws.append(found[0])
    assert {d[0] for d in draws} == set(range(9)) and {d[1] for d in draws} == set(range(9))
    assert 30 <= sum(d[2] for d in draws) <= 70  # flips with probability 1/2 (100 draws)


def test_tensors_match_the_torchvision_datasets(tmp_path):
    make_cifar10(tmp_path)
    tensors = data.load_tensors("cifar10", 32, root=tmp_path, verify=False)
    train_ds, test_ds = data.load_dataset("cifar10", 32, root=tmp_path, verify=False)
    assert len(tensors.y_train) == len(train_ds) and len(tensors.y_test) == len(test_ds)
    norm = T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    xs, ys = next(tensors.test_batches(1000))
    for i in range(len(test_ds)):
        x, y = test_ds[i]  # ToTensor only
        assert torch.equal(xs[i], norm(x)) and int(ys[i]) == y
    assert tensors.y_train.tolist() == [train_ds[i][1] for i in range(len(train_ds))]
    limited = data.load_tensors("cifar10", 32, train_limit=7, root=tmp_path, verify=False)
    assert len(limited.y_train) == 7 and torch.equal(limited.x_train, tensors.x_train[:7])


def test_train_batches_are_a_seeded_permutation(tmp_path):
    make_cifar10(tmp_path, n=13)  # 65 training images: batches 32, 32, 1 -> last merged
    tensors = data.load_tensors("cifar10", 32, root=tmp_path, verify=False)
    batches = list(tensors.train_batches(32, torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in batches] == [32, 33]
    labels = torch.cat([y for _, y in batches])
    assert sorted(labels.tolist()) == sorted(tensors.y_train.tolist())
    again = list(tensors.train_batches(32, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    x = batches[0][0]
    assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0


def test_tiny_imagenet_tensors_native_64(tmp_path):
    make_tiny_imagenet(tmp_path)
    tensors = data.load_tensors("tiny-imagenet", 64, root=tmp_path)
    assert tensors.x_train.dtype == torch.uint8 and tensors.x_train.shape == (2 * len(TINY_WNIDS), 3, 64, 64)
    xs, ys = next(tensors.test_batches(100))
    for x, y in zip(xs, ys):  # solid grey 60 k + 30 (JPEG keeps flat colours up to a level or two)
        assert abs(float(x.mean()) - ((60 * int(y) + 30) / 255.0 - 0.5) / 0.5) < 0.02
    small = data.load_tensors("tiny-imagenet", 16, root=tmp_path)
    x16, _ = next(small.train_batches(4, torch.Generator().manual_seed(0)))
    assert x16.shape[1:] == (3, 16, 16)  # crops at 64, then resized


def test_digits_tensors_are_unaugmented_and_normalised_like_cifar():
    tensors = data.load_tensors("digits", 16, train_limit=50)
    train_ds, _ = data.load_dataset("digits", 16, train_limit=50)  # pixels in [0, 1]
    batches = list(tensors.train_batches(50, torch.Generator().manual_seed(1)))
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    assert torch.equal(batches[0][0], (train_ds.tensors[0][perm] - 0.5) / 0.5)


def test_deterministic_pool_equals_adaptive_avg_pool():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.AdaptiveAvgPool2d((1, 1))), nn.Flatten(),
                          nn.AdaptiveAvgPool1d(2))
    x = torch.randn(5, 3, 9, 9)
    ref = model(x)
    device.deterministic_pools(model)
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in model.modules())
    assert isinstance(model[3], nn.AdaptiveAvgPool1d)  # only 2-D global pools are replaced
    assert torch.allclose(model(x), ref, atol=1e-6)


def test_device_settings_are_checked():
    assert device.resolve_device("cpu") == "cpu"
    assert device.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device='gpu'"):
        device.resolve_device("gpu")
    with pytest.raises(ValueError, match="precision"):
        device.check_precision("fp16")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            device.resolve_device("cuda")
    assert device.gpu_slots(3) == [g for g in range(device.gpu_count()) for _ in range(3)]


@CUDA
def test_cuda_augmentation_on_the_device(tmp_path):
    make_cifar10(tmp_path)
    cpu = data.load_tensors("cifar10", 32, root=tmp_path, verify=False)
    gpu = data.load_tensors("cifar10", 32, root=tmp_path, verify=False, device="cuda")
    assert gpu.device.type == "cuda" and torch.equal(gpu.x_train.cpu(), cpu.x_train)
    x = cpu.x_train[:20]
    out = data.augment(x.cuda(), torch.Generator(device="cuda").manual_seed(0)).cpu()
    xp = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(len(x)):  # every output is exactly one crop/flip of its own image
        hits = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                if torch.equal(out[i], (lambda z: z.flip(-1) if f else z)(xp[i, :, dy:dy + 32, dx:dx + 32]))]
        assert len(hits) >= 1
    xb, yb = next(gpu.train_batches(16, torch.Generator(device="cuda").manual_seed(0)))
    assert xb.device.type == "cuda" and yb.device.type == "cuda" and xb.dtype == torch.float32
