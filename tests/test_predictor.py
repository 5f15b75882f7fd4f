"""RunPredictor: against scikit-learn's own pipeline, files without pickle, the information horizon."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from paperlib.stopping.predictor import PREDICTOR_KINDS, RunPredictor, fit_population
from paperlib.features.signatures import TemporalSignature


def _data(n=60, T=4, w=3, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, T + 1, w))
    y = (A[:, 1:, 0].sum(axis=1) + 0.5 * rng.normal(size=n) > 0).astype(int)
    return A, y


@pytest.mark.parametrize("mode", ["plain", "wavg", "expavg"])
def test_probabilities_equal_sklearn_pipeline(mode):
    A, y = _data()
    pred = RunPredictor(feature_sets=("a", "b"), widths=(2, 1), t_min=1, t_max=4, mode=mode, C=0.7).fit(A, y)
    assert pred.ts_.tolist() == [1, 2, 3, 4]
    for t in (1, 3, 4):
        sig = TemporalSignature(t=t, mode=mode, width=3).fit(A.reshape(len(A), -1))
        Z = sig.transform(A.reshape(len(A), -1))
        ref = make_pipeline(StandardScaler(), LogisticRegression(C=0.7, max_iter=1000)).fit(Z, y)
        np.testing.assert_allclose(pred.proba_high_at(A, t), ref.predict_proba(Z)[:, 1], rtol=1e-6, atol=1e-9)
        # predict_proba reads t from the input: epochs 0..t
        np.testing.assert_allclose(pred.predict_proba(A[:, :t + 1])[:, 1], ref.predict_proba(Z)[:, 1],
                                   rtol=1e-6, atol=1e-9)
    # past t_max: the last model on epochs up to t_max
    longer = np.concatenate([A, A[:, -1:]], axis=1)
    np.testing.assert_allclose(pred.predict_proba(longer), pred.predict_proba(A))
    assert set(pred.predict(A)) <= {0, 1}


def test_save_and_load_without_pickle(tmp_path):
    A, y = _data(seed=1)
    pred = RunPredictor(feature_sets=("a",), widths=(3,), t_max=3, mode="wavg", input_shape=(1, 8, 8),
                        threshold=50.0).fit(A, y)
    files = pred.save(tmp_path / "p")
    assert sorted(f.name for f in files) == ["p.json", "p.npz"]
    meta = json.loads((tmp_path / "p.json").read_text())
    assert meta["params"]["mode"] == "wavg" and meta["ts"] == [1, 2, 3]
    with np.load(tmp_path / "p.npz", allow_pickle=False) as z:
        assert "coef_2" in z.files
    back = RunPredictor.load(tmp_path / "p.json")
    assert back.get_params() == pred.get_params()
    np.testing.assert_array_equal(back.predict_proba(A[:, :3]), pred.predict_proba(A[:, :3]))
    with pytest.raises(FileNotFoundError, match="07_early_stopping"):
        RunPredictor.load(tmp_path / "missing")


def test_alive_mask_is_the_information_horizon():
    A, y = _data(seed=2)
    alive = np.ones(A.shape[:2], bool)
    alive[:20, 3:] = False  # these runs stopped after epoch 2
    pred = RunPredictor(feature_sets=("a",), widths=(3,), t_max=4).fit(A, y, alive=alive)
    assert pred.n_fit_.tolist() == [60, 60, 40, 40]
    sub = RunPredictor(feature_sets=("a",), widths=(3,), t_max=4).fit(A[20:], y[20:])
    np.testing.assert_allclose(pred.proba_high_at(A, 3), sub.proba_high_at(A, 3))
    # non-finite features (a diverged run) are never learned from and get NaN
    B = A.copy()
    B[0, 2] = np.nan
    p = RunPredictor(feature_sets=("a",), widths=(3,), t_max=4).fit(B, y)
    assert p.n_fit_.tolist() == [60, 59, 59, 59]
    assert np.isnan(p.proba_high_at(B, 2)[0]) and np.isfinite(p.proba_high_at(B, 1)[0])


def test_one_class_gives_its_share_and_bad_input_is_named():
    A, _ = _data(seed=3)
    p = RunPredictor(feature_sets=("a",), widths=(3,), t_max=2).fit(A, np.ones(len(A), int))
    assert (p.predict_proba(A[:, :3])[:, 1] == 1).all()
    with pytest.raises(ValueError, match="paperlib.stopping.predictor.*width 4"):
        RunPredictor(feature_sets=("a",), widths=(4,)).fit(A.reshape(len(A), -1)[:, :-1], np.zeros(len(A)))
    with pytest.raises(ValueError, match="labels"):
        RunPredictor(feature_sets=("a",), widths=(3,), t_max=2).fit(A, np.full(len(A), 2))
    with pytest.raises(ValueError, match="no model for t=5"):
        p.proba_high_at(A, 5)
    with pytest.raises(ValueError, match="same"):
        RunPredictor(feature_sets=("a", "b"), widths=(3,)).fit(A, np.zeros(len(A), int))


def test_fit_population_reads_the_named_feature_sets():
    rng = np.random.default_rng(4)
    n, T = 30, 3
    y = (rng.uniform(size=n) < 0.5).astype(int)
    arrays = {"deg": rng.normal(size=(n, T + 1, 6)), "evec": rng.normal(size=(n, T + 1, 6)),
              "learning-curve": (40 + 30 * y[:, None, None] + rng.normal(size=(n, T + 1, 1)))}
    feats = SimpleNamespace(keys=np.arange(n), arrays=arrays, labels=y, threshold=50.0, arch="X",
                            epochs_trained=np.full(n, T), alive=lambda t: np.ones(n, bool))
    for kind, names in PREDICTOR_KINDS.items():
        p = fit_population(feats, kind)
        assert p.feature_sets == names and p.ts_.tolist() == [1, 2, 3]
    curve = fit_population(feats, "curve")
    assert (curve.predict(arrays["learning-curve"]) == y).mean() > 0.9
    with pytest.raises(KeyError, match="unknown predictor kind"):
        fit_population(feats, "weights")
    del arrays["evec"]
    with pytest.raises(KeyError, match="evec"):
        fit_population(feats, "graph")
