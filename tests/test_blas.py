"""The BLAS layers (paperlib.blas) against torch's own layers computed in float64.

Every configuration the models and the importers use: stride, padding (numbers, ``"same"`` with
an odd pixel, ``"valid"``), dilation, groups (grouped and depthwise), with and without bias, 1x1,
3x3, 5x5 and 7x7 kernels, rectangular images. Forward outputs and all gradients must agree with
the float64 reference within float32 rounding (relative to the largest entry).
"""

from __future__ import annotations

import zlib

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from paperlib import blas

TOL = 2e-6  # float32 sums of at most a few hundred terms, relative to the largest entry

CONV = [  # (C, F, kernel, stride, padding, dilation, groups, bias)
    (3, 8, 3, 1, 1, 1, 1, True),     # VGG, ResNet
    (1, 6, 5, 1, 0, 1, 1, True),     # LeNet
    (3, 16, 7, 2, 3, 1, 1, False),   # torchvision ResNet stem
    (3, 8, 7, 2, 2, 1, 1, True),     # AlexNet stem
    (8, 16, 1, 1, 0, 1, 1, False),   # 1x1
    (8, 16, 1, 2, 0, 1, 1, False),   # 1x1 shortcut, stride 2
    (8, 8, 3, 2, 1, 1, 1, False),    # strided 3x3
    (4, 8, 3, 1, 2, 2, 1, True),     # dilated
    (4, 8, 3, 2, 1, 2, 1, True),     # dilated and strided
    (8, 8, 3, 1, 1, 1, 8, False),    # depthwise
    (8, 16, 3, 1, 1, 1, 2, True),    # grouped
    (8, 16, 3, 2, 1, 1, 4, True),    # grouped, strided
    (4, 6, 4, 1, "same", 1, 1, True),  # even kernel: the odd pixel at the bottom/right
    (4, 6, 3, 1, "same", 2, 1, False),
    (4, 6, 3, 1, "valid", 1, 1, True),
]


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("c,f,k,s,p,d,g,bias", CONV)
def test_conv2d_and_its_gradients_match_float64_torch(c, f, k, s, p, d, g, bias):
    gen = torch.Generator().manual_seed(zlib.crc32(repr((c, f, k, s, p, d, g)).encode()))
    x = torch.randn(5, c, 11, 9, generator=gen).requires_grad_()
    w = torch.randn(f, c // g, k, k, generator=gen).requires_grad_()
    b = torch.randn(f, generator=gen).requires_grad_() if bias else None
    inputs = [x, w] + ([b] if bias else [])
    y = blas.conv2d(x, w, b, s, p, d, g)
    ref_inputs = [t.detach().double().requires_grad_() for t in inputs]
    y64 = F.conv2d(ref_inputs[0], ref_inputs[1], ref_inputs[2] if bias else None, s, p, d, g)
    assert y.shape == y64.shape and y.dtype == torch.float32
    assert _rel(y, y64) < TOL
    gy = torch.randn(y.shape, generator=gen)
    grads = torch.autograd.grad(y, inputs, gy)
    refs = torch.autograd.grad(y64, ref_inputs, gy.double())
    for name, got, ref in zip(("input", "weight", "bias"), grads, refs):
        assert got.shape == ref.shape and _rel(got, ref) < TOL, name


@pytest.mark.parametrize("c,f,k,s,p,d,g,bias", [cfg for cfg in CONV if not isinstance(cfg[4], str)])
def test_conv2d_input_grad_is_conv_transpose2d_for_any_input_size(c, f, k, s, p, d, g, bias):
    """The unrolled graph's backward product: conv_transpose2d with the output padding that gives
    the input's size (an odd size under stride 2 needs one)."""
    gen = torch.Generator().manual_seed(7)
    for h, wd in ((11, 9), (12, 10)):
        geo = blas._Geometry((3, c, h, wd), (f, c // g, k, k), s, p, d, g)
        gy = torch.randn(3, f, geo.ho, geo.wo, generator=gen, dtype=torch.float64)
        w = torch.randn(f, c // g, k, k, generator=gen, dtype=torch.float64)
        op = (h - ((geo.ho - 1) * s - 2 * p + d * (k - 1) + 1), wd - ((geo.wo - 1) * s - 2 * p + d * (k - 1) + 1))
        ref = F.conv_transpose2d(gy, w, None, s, p, op, g, d)
        got = blas.conv2d_input_grad(gy, w, (3, c, h, wd), s, p, d, g)
        assert got.dtype == torch.float64 and got.shape == ref.shape
        assert _rel(got, ref) < 1e-12


@pytest.mark.parametrize("shape", [(7, 20), (4, 3, 20), (1, 20)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_and_its_gradients_match_float64_torch(shape, bias):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(shape, generator=gen).requires_grad_()
    w = torch.randn(6, 20, generator=gen).requires_grad_()
    b = torch.randn(6, generator=gen).requires_grad_() if bias else None
    inputs = [x, w] + ([b] if bias else [])
    refs_in = [t.detach().double().requires_grad_() for t in inputs]
    y, y64 = blas.linear(x, w, b), F.linear(refs_in[0], refs_in[1], refs_in[2] if bias else None)
    assert y.shape == y64.shape and _rel(y, y64) < TOL
    gy = torch.randn(y.shape, generator=gen)
    for got, ref in zip(torch.autograd.grad(y, inputs, gy), torch.autograd.grad(y64, refs_in, gy.double())):
        assert got.shape == ref.shape and _rel(got, ref) < TOL


def test_matmul_is_numpys_product_including_transposed_and_stacked_operands():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 5, 4, generator=gen), torch.randn(3, 6, 4, generator=gen)
    got = blas.matmul(a, b.transpose(1, 2))
    assert torch.equal(got, torch.from_numpy(a.numpy() @ b.numpy().transpose(0, 2, 1)))
    assert _rel(got, a.double() @ b.double().transpose(1, 2)) < TOL
    assert torch.equal(blas.matmul(torch.ones(2, 0), torch.ones(0, 3)), torch.zeros(2, 3))


def test_dropout_draws_its_mask_from_torchs_cpu_generator():
    x = torch.ones(2000)
    torch.manual_seed(5)
    y = blas.dropout(x, 0.3)
    torch.manual_seed(5)
    keep = torch.rand(2000) >= 0.3
    assert torch.equal(y, keep.float() / 0.7)
    assert 0.65 < float(keep.float().mean()) < 0.75
    assert blas.dropout(x, 0.3, training=False) is x and torch.equal(blas.dropout(x, 1.0), torch.zeros(2000))


def test_swapped_layers_keep_the_state_dict_and_compute_the_same_network():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Flatten(),
                          nn.Dropout(0.5), nn.Linear(4 * 8 * 8, 10)).eval()
    x = torch.randn(6, 3, 8, 8)
    ref = plain(x)
    keys = list(plain.state_dict())
    swapped = blas.portable_layers(plain)
    assert [type(m) for m in swapped] == [blas.Conv2d, blas.BatchNorm2d, nn.ReLU, nn.Flatten, blas.Dropout, blas.Linear]
    assert list(swapped.state_dict()) == keys and isinstance(swapped[0], nn.Conv2d)
    assert _rel(swapped(x), ref.double()) < 1e-5
    assert [type(m) for m in blas.plain_layers(swapped)][0] is nn.Conv2d


def test_convolution_outputs_are_channel_major_and_batch_norm_sees_the_nchw_layout():
    """The GEMM writes (F, N, Ho, Wo) memory; batch norm's statistics are summed in the order of a
    contiguous NCHW input, so its bits (training mode, forward and backward) are torch's on that copy."""
    torch.manual_seed(3)
    x = torch.randn(5, 3, 7, 7)
    y = blas.conv2d(x, torch.randn(4, 3, 3, 3), None, 1, 1)
    assert y.shape == (5, 4, 7, 7) and y.transpose(0, 1).is_contiguous() and not y.is_contiguous()
    ours, ref = blas.BatchNorm2d(4).train(), nn.BatchNorm2d(4).train()
    a, b = y.clone().requires_grad_(), y.contiguous().requires_grad_()
    out_a, out_b = ours(a), ref(b)
    assert torch.equal(out_a, out_b) and torch.equal(ours.running_var, ref.running_var)
    g = torch.randn(5, 4, 7, 7)
    out_a.backward(g)
    out_b.backward(g)
    assert torch.equal(a.grad, b.grad)


def test_the_output_of_a_blas_layer_may_be_changed_in_place():
    """ReLU(inplace=True) after a convolution or linear layer, as every model does."""
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    conv = blas.portable_layers(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True)))
    conv(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_an_unsupported_padding_mode_is_refused():
    conv = blas.portable_layers(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")))
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        conv(torch.randn(1, 3, 5, 5))
