"""Independent references for the graph tests: a channel-flow reference read from autograd,
and the paper's rolled graph built straight from the weights with it.

Channel flow. The network is copied with positive weights and biases and run on a positive
input, so every activation is active and every gradient path is open; the output of every
weighted layer (``nn.Conv2d`` / ``nn.Linear``) is cut from the autograd graph and made a
leaf. Then the gradient of input slot ``k`` of a layer (input channel of a convolution,
input feature of a linear layer) reaches exactly the producer units that feed slot ``k``
without crossing a weight. All slots are done in one batched backward pass
(``is_grads_batched``). This uses none of the graph code: only PyTorch's own derivatives.
"""

import copy

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

_WEIGHTED = (nn.Conv2d, nn.Linear)


class _EvalBatchNorm(nn.Module):
    """Eval-mode batch normalisation written with broadcasting (the same function), because
    the batched backward of ``batch_norm`` falls back to a slow per-sample loop."""

    def __init__(self, bn):
        super().__init__()
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        self.register_buffer("scale", scale)
        self.register_buffer("shift", bn.bias.detach() - bn.running_mean * scale)

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.scale.reshape(shape) + self.shift.reshape(shape)


class _UnfoldMaxPool(nn.Module):
    """Max pooling as the maximum over ``F.unfold`` windows (the same function on the positive
    maps of the reference, where zero padding never wins), whose batched backward is fast."""

    def __init__(self, pool):
        super().__init__()
        self.pool = pool

    def forward(self, x):
        k, s, p, d = (nn.modules.utils._pair(v) for v in (self.pool.kernel_size, self.pool.stride or
                                                           self.pool.kernel_size, self.pool.padding,
                                                           self.pool.dilation))
        ho, wo = self.pool(x.detach()).shape[-2:]
        need = [(ho - 1) * s[0] + d[0] * (k[0] - 1) + 1, (wo - 1) * s[1] + d[1] * (k[1] - 1) + 1]
        x = F.pad(x, (p[1], max(0, need[1] - x.shape[3] - p[1]), p[0], max(0, need[0] - x.shape[2] - p[0])))
        cols = F.unfold(x, k, dilation=d, stride=s)
        return cols.reshape(x.shape[0], x.shape[1], k[0] * k[1], -1)[..., :ho * wo].amax(2).reshape(
            x.shape[0], x.shape[1], ho, wo)


class _GlobalMean(nn.Module):
    """``AdaptiveAvgPool2d(1)`` written as a mean (the same function)."""

    def forward(self, x):
        return x.mean((2, 3), keepdim=True)


def _replace_batchnorm(net):
    """Swap modules for the same functions whose batched backward has no slow fallback."""
    for name, m in list(net.named_children()):
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine and m.track_running_stats:
            setattr(net, name, _EvalBatchNorm(m))
        elif isinstance(m, nn.MaxPool2d) and not m.return_indices:
            setattr(net, name, _UnfoldMaxPool(m))
        elif isinstance(m, nn.AdaptiveAvgPool2d) and nn.modules.utils._pair(m.output_size) == (1, 1):
            setattr(net, name, _GlobalMean())
        else:
            _replace_batchnorm(m)


def channel_flow(model, input_shape):
    """``(names, flows)``: weighted layer names in call order (``"input"`` first) and, for each
    consumer name, ``{producer name: boolean (slots x producer units)}``."""
    net = copy.deepcopy(model).eval().float()  # float32: grouped convolutions in float64 are slow
    torch.manual_seed(123)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, _WEIGHTED):
                # positive, scaled by half the fan-in: activations stay positive and below 1
                # even along residual sums, so no saturating activation (ReLU6, hardsigmoid)
                # cuts a gradient path
                fan_in = m.weight[0].numel()
                m.weight.copy_((torch.rand_like(m.weight) + 0.5) / (2 * fan_in))
                if m.bias is not None:
                    m.bias.fill_(0.01)
    _replace_batchnorm(net)
    names = {m: n for n, m in net.named_modules()}
    order, leaves, inputs = ["input"], {}, {}

    def pre(m, args):
        inputs[names[m]] = args[0]

    def post(m, args, out):
        leaf = out.detach().requires_grad_(True)
        order.append(names[m])
        leaves[names[m]] = leaf
        return leaf.clone()  # a copy, so that in-place activations leave the leaf alone

    hooks = []
    for m in net.modules():
        if isinstance(m, _WEIGHTED):
            hooks += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    x = (torch.rand((1, *input_shape)) + 0.1).requires_grad_(True)
    leaves["input"] = x
    try:
        net(x)
    finally:
        for h in hooks:
            h.remove()
    flows = {}
    for name in order[1:]:
        xin = inputs[name]
        layer = net.get_submodule(name)
        conv = isinstance(layer, nn.Conv2d)
        n_slots = xin.shape[1] if conv else xin.shape[-1]
        cot = torch.zeros((n_slots, *xin.shape), dtype=xin.dtype)
        if conv:
            cot[torch.arange(n_slots), 0, torch.arange(n_slots)] = 1.0
        else:
            cot[torch.arange(n_slots), ..., torch.arange(n_slots)] = 1.0
        if not xin.requires_grad:
            flows[name] = {}
            continue
        srcs = [p for p in order if p != name and leaves[p].requires_grad]
        grads = torch.autograd.grad(xin, [leaves[p] for p in srcs], cot, retain_graph=True,
                                    allow_unused=True, is_grads_batched=True)
        out = {}
        for p, g in zip(srcs, grads):
            if g is None:
                continue
            g = g.abs()[:, 0]
            pm = net.get_submodule(p) if p != "input" else None
            if isinstance(pm, nn.Linear):  # units on the last axis
                rel = g.reshape(n_slots, -1, g.shape[-1]).sum(1) > 0
            else:  # channels on the first axis after the batch
                rel = g.reshape(n_slots, g.shape[1], -1).sum(2) > 0
            if rel.any():
                out[p] = rel.numpy()
        flows[name] = out
    return order, flows


def _slice_sq(layer):
    """Squared L2 norm of every weight slice ``(consumer unit l, input slot k)``, full width:
    ``nan`` where unit ``l`` has no weight for slot ``k`` (another group of a grouped conv)."""
    w = layer.weight.detach().double()
    if isinstance(layer, nn.Linear):
        return (w ** 2).numpy()
    co, cig = w.shape[:2]
    g = layer.groups
    full = np.full((co, cig * g), np.nan)
    sq = (w ** 2).sum(dim=(2, 3)).numpy()
    for l in range(co):
        grp = l // (co // g)
        full[l, grp * cig:(grp + 1) * cig] = sq[l]
    return full


def reference_rolled(model, input_shape):
    """The paper's rolled graph from the weights and :func:`channel_flow`.

    Returns ``(names, sizes, blocks)``: ``blocks[(consumer, producer)]`` is a dense array with
    ``nan`` where there is no edge; an edge between unit ``l`` and producer unit ``u`` weighs
    ``sqrt(sum_{k in S(u)} ||slice(l, k)||^2)`` over the slots ``S(u)`` fed by ``u`` whose
    weights ``l`` has.
    """
    order, flows = channel_flow(model, input_shape)
    mods = dict(model.named_modules())
    sizes = {"input": input_shape[0]}
    for n in order[1:]:
        m = mods[n]
        sizes[n] = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
    blocks = {}
    for c in order[1:]:
        sq = _slice_sq(mods[c])
        for p, rel in flows[c].items():
            r = rel.astype(float)
            has = (~np.isnan(sq)).astype(float) @ r > 0
            B = np.sqrt(np.nan_to_num(sq) @ r)
            B[~has] = np.nan
            blocks[(c, p)] = B
    return order, sizes, blocks


def reference_matrix(g, blocks):
    """The reference's symmetric CSR adjacency in the node order of ``g`` (stored zeros kept)."""
    sl = dict(g.layers)
    rows, cols, vals = [], [], []
    for (c, p), B in blocks.items():
        r, k = np.nonzero(~np.isnan(B))
        rows += [r + sl[c].start, k + sl[p].start]
        cols += [k + sl[p].start, r + sl[c].start]
        vals += [B[r, k], B[r, k]]
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(g.n, g.n))
    A.sum_duplicates()
    return A


def assert_rolled_equal(g, model, input_shape, rtol=1e-6):
    """The rolled graph ``g`` has the reference's nodes, edges and weights; returns the
    reference adjacency (CSR)."""
    order, sizes, blocks = reference_rolled(model, input_shape)
    assert [n for n, _ in g.layers] == order
    assert [s.stop - s.start for _, s in g.layers] == [sizes[n] for n in order]
    ref = reference_matrix(g, blocks)
    A = g.adjacency.tocsr().copy()
    A.sum_duplicates()
    names = [n for n, _ in g.layers]
    assert {(names[c], names[p]) for c, p, _ in g.blocks} == set(blocks)
    assert g.n_edges == ref.nnz // 2 and A.nnz == ref.nnz
    assert np.array_equal(A.indptr, ref.indptr) and np.array_equal(A.indices, ref.indices)
    np.testing.assert_allclose(A.data, ref.data, rtol=rtol, atol=1e-12)
    return ref


def reference_dense(g, blocks):
    """Dense symmetric adjacency from the reference blocks, in the node order of ``g``."""
    A = np.zeros((g.n, g.n))
    sl = dict(g.layers)
    for (c, p), B in blocks.items():
        A[sl[c], sl[p]] = np.nan_to_num(B)
        A[sl[p], sl[c]] = np.nan_to_num(B).T
    return A


def test_channel_flow_reference_on_a_hand_computed_case():
    """The reference itself: a residual block with a channel permutation and a concatenation."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 3, 1)
            self.b = nn.Conv2d(3, 3, 1)
            self.c = nn.Conv2d(6, 2, 1)

        def forward(self, x):
            y = self.a(x)
            z = torch.relu(self.b(y)) + y[:, [2, 0, 1]]
            return self.c(torch.cat([z, y], 1))

    order, flows = channel_flow(Net(), (2, 4, 4))
    assert order == ["input", "a", "b", "c"]
    assert np.array_equal(flows["a"]["input"], np.eye(2, dtype=bool))
    assert set(flows["c"]) == {"a", "b"}
    assert np.array_equal(flows["c"]["b"], np.vstack([np.eye(3), np.zeros((3, 3))]).astype(bool))
    perm = np.zeros((3, 3), dtype=bool)
    perm[[0, 1, 2], [2, 0, 1]] = True
    assert np.array_equal(flows["c"]["a"], np.vstack([perm, np.eye(3, dtype=bool)]))
