"""Signatures against scipy, temporal modes against a hand-computed case, scikit-learn conventions."""

import numpy as np
import pytest
import scipy.stats
from sklearn.utils.estimator_checks import check_estimator

from paperlib.features.signatures import AGGREGATORS, MODES, SnapshotAt, TemporalSignature, aggregate, aggregate_rows, smooth

VECTORS = [
    np.array([1.0, 2.0, 3.0, 10.0]),
    np.array([0.5, -1.0, 4.0, 4.0, 7.5, 0.0, 2.0]),
    np.array([1e-3, 2e-3, 5e-3]),
    np.array([3.0, 1.0]),
    np.random.default_rng(0).lognormal(size=501),
]


@pytest.mark.parametrize("v", VECTORS)
def test_aggregate_matches_scipy(v):
    expected = [np.median(v), np.mean(v), np.std(v, ddof=0),
                scipy.stats.skew(v, bias=True), scipy.stats.kurtosis(v, fisher=True, bias=True)]
    np.testing.assert_allclose(aggregate(v), expected, rtol=1e-10, atol=1e-12)
    assert AGGREGATORS == ("median", "mean", "std", "skew", "kurtosis")


def test_aggregate_hand_computed():
    # [0, 1, 1, 2]: mean 1, m2 = 0.5, m3 = 0, m4 = 0.5 -> kurtosis 0.5 / 0.25 - 3 = -1
    np.testing.assert_allclose(aggregate([0.0, 1.0, 1.0, 2.0]), [1.0, 1.0, np.sqrt(0.5), 0.0, -1.0])


def test_constant_vector_has_zero_skew_and_kurtosis():
    out = aggregate(np.full(6, 2.5))
    np.testing.assert_array_equal(out, [2.5, 2.5, 0.0, 0.0, 0.0])
    assert np.isfinite(aggregate(np.zeros(3))).all()


def test_non_finite_vector_gives_nan_and_rows_are_independent():
    rows = np.array([[1.0, np.nan, 3.0], [1.0, 2.0, 4.0], [np.inf, 0.0, 0.0]])
    out = aggregate_rows(rows)
    assert np.isnan(out[0]).all() and np.isnan(out[2]).all()
    np.testing.assert_allclose(out[1], aggregate(rows[1]))


# --------------------------------------------------------------------------- temporal modes
# epochs 0..3 of one network, two values per epoch; epoch 0 must be ignored by default
EPOCHS = np.array([[100.0, -100.0], [1.0, 2.0], [3.0, 6.0], [5.0, 4.0]])
X = EPOCHS.reshape(1, -1)


def test_plain_concatenates_epochs_1_to_t():
    out = TemporalSignature(t=3, mode="plain", width=2).fit_transform(X)
    np.testing.assert_allclose(out, [[1, 2, 3, 6, 5, 4]])
    out2 = TemporalSignature(t=2, mode="plain", width=2).fit_transform(X)
    np.testing.assert_allclose(out2, [[1, 2, 3, 6]])


def test_wavg_hand_computed():
    # tau=2: (1*s1 + 2*s2) / 3; tau=3: (1*s1 + 2*s2 + 3*s3) / 6
    expected = [1, 2, 7 / 3, 14 / 3, 22 / 6, 26 / 6]
    out = TemporalSignature(t=3, mode="wavg", width=2).fit_transform(X)
    np.testing.assert_allclose(out, [expected])


def test_expavg_hand_computed_is_recursive():
    # e1 = s1; e2 = a s2 + (1-a) e1; e3 = a s3 + (1-a) e2 with a = 0.25
    a = 0.25
    e1 = np.array([1.0, 2.0])
    e2 = a * np.array([3.0, 6.0]) + (1 - a) * e1
    e3 = a * np.array([5.0, 4.0]) + (1 - a) * e2
    out = TemporalSignature(t=3, mode="expavg", alpha=a, width=2).fit_transform(X)
    np.testing.assert_allclose(out, [np.concatenate([e1, e2, e3])])


def test_include_epoch0():
    out = TemporalSignature(t=1, mode="wavg", include_epoch0=True, width=2).fit_transform(X)
    # weights 1 (epoch 0) and 2 (epoch 1)
    np.testing.assert_allclose(out, [[100, -100, (100 + 2 * 1) / 3, (-100 + 2 * 2) / 3]])


def test_modes_agree_at_the_first_epoch():
    for mode in MODES:
        np.testing.assert_allclose(TemporalSignature(t=1, mode=mode, width=2).fit_transform(X), [[1, 2]])
    np.testing.assert_allclose(smooth(EPOCHS[None, 1:], "expavg", alpha=1.0), EPOCHS[None, 1:])


def test_snapshot_at():
    np.testing.assert_allclose(SnapshotAt(t=2, width=2).fit_transform(X), [[3, 6]])


@pytest.mark.parametrize("est", [TemporalSignature(t=4, width=2), TemporalSignature(t=1, width=3),
                                 TemporalSignature(t=2, mode="bad", width=2), SnapshotAt(t=4, width=2)])
def test_bad_layout_or_parameters_raise(est):
    with pytest.raises(ValueError):
        est.fit(X)


@pytest.mark.parametrize("est", [TemporalSignature(t=1, mode=m, width=1) for m in MODES]
                         + [TemporalSignature(t=0, include_epoch0=True, width=1), SnapshotAt(t=1, width=1)],
                         ids=lambda e: repr(e))
def test_check_estimator(est):
    check_estimator(est)


def test_size_aware_signatures_of_lenet_and_double_width_lenet_agree_at_initialisation():
    """The paper's signatures of LeNet and LeNet-x2 at initialisation differ in scale by more than 15%;
    the size-aware ones (signature of v / mean(v), paperlib.features.sets.size_aware) agree within 15%."""
    import torch

    from paperlib.graph import centrality
    from paperlib import graph
    from paperlib.train import models
    from paperlib.features.sets import size_aware
    from paperlib.features.signatures import aggregate

    sig = {}
    for width in (1, 2):
        rows = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            A = graph.rolled_graph(models.build_model("lenet", 10, 1, 16, width=width)).adjacency
            rows.append([aggregate(centrality.weighted_degree(A)), aggregate(centrality.eigenvector_centrality(A))])
        sig[width] = np.mean(rows, axis=0)  # (2 centralities, 5 aggregators)

    def rel(a, b):
        return np.abs(a - b) / np.maximum(np.abs(a), np.abs(b))

    paper = rel(sig[1], sig[2])
    ours = rel(size_aware(sig[1]), size_aware(sig[2]))
    assert (paper[:, :3] > 0.15).all()  # median, mean, std of degree and eigenvector: scale with the graph
    assert (ours < 0.15).all()
