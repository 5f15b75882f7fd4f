"""Hooks: live features equal the pipeline's, and the plain hook, Lightning callback and Optuna pruner
stop a run the predictor scores low and let a run it scores high continue (tiny model on digits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from paperlib.stopping.hooks import EarlyStopper, GraphFeatures, epoch_features
from paperlib.stopping.predictor import RunPredictor
from paperlib.features.signatures import aggregate_rows

EPOCHS = 3


def test_live_features_equal_the_pipeline_snapshot_features(tmp_path):
    from paperlib.graph import temporal
    from paperlib.train import populations, trainer as train
    from paperlib.profiles import get_profile
    from paperlib.train.store import Run

    P = get_profile("smoke")
    pop = P.populations[0]
    spec = train.run_spec(P, pop, 1e-2, 0.0, 0)
    spec["epochs"] = 2
    meta = train.train_run(tmp_path, spec)
    run = Run(tmp_path / meta["key"])
    side = P.image_size[pop.dataset]
    shape = (1, side, side)
    temporal.compute_run(run, [0, 1, 2], ("rolled",), shape)
    cached = temporal.load_centralities(run, "rolled")
    graph = GraphFeatures(shape)
    pred = _stub(("deg", "evec", "learning-curve"), (5, 5, 1), ts=(1,))
    for i, e in enumerate(cached["epochs"]):
        model = train.load_model(run, int(e))
        live = graph.centralities(model)
        np.testing.assert_allclose(live["deg"], cached["deg"][i], rtol=1e-12)
        np.testing.assert_allclose(live["evec"], cached["evec"][i], rtol=1e-8, atol=1e-12)
        acc = meta["history"][int(e)]["test_acc"]
        row = epoch_features(pred, model, acc, graph)
        ref = np.concatenate([aggregate_rows(cached["deg"][i][None])[0], aggregate_rows(cached["evec"][i][None])[0],
                              [acc]])
        np.testing.assert_allclose(row, ref, rtol=1e-7, atol=1e-10)
    # ... and equal to the cached feature arrays of the features step (epochs 0..2 of this run)
    import pandas as pd

    from paperlib import features

    runs = pd.DataFrame([populations._row(pop.arch, spec, run.meta(), run.key)])
    feats, _ = features.compute_population(pop, runs, tmp_path, ("deg", "evec", "learning-curve"))
    A = np.concatenate([feats.arrays[n][0] for n in ("deg", "evec", "learning-curve")], axis=1)
    assert A.shape == (3, 11) and feats.alive(2).all()
    for e in range(3):
        live = epoch_features(pred, train.load_model(run, e), meta["history"][e]["test_acc"], graph)
        np.testing.assert_allclose(live, A[e], rtol=1e-7, atol=1e-10)
    # NaN weights: the epoch's features are NaN and the hook stops the run
    bad = train.load_model(run, 2)
    with torch.no_grad():
        next(bad.parameters()).fill_(float("nan"))
    assert np.isnan(epoch_features(pred, bad, 50.0, graph)[:10]).all()
    stopper = EarlyStopper(pred, input_shape=shape)
    assert stopper.step(bad, 50.0) and "diverged" in stopper.reason


# --------------------------------------------------------------------------- a tiny model on digits
def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target)
    return (x[:1200], y[:1200]), (x[1200:], y[1200:])


def _net(seed: int, scale: float = 1.0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    return net


SHAPE = (1, 8, 8)


def _deg_mean(net: nn.Module) -> float:
    return float(GraphFeatures(SHAPE).centralities(net)["deg"].mean())


def _stub(feature_sets, widths, ts=(1, 2), deg_mid=None, acc_mid=30.0) -> RunPredictor:
    """A fitted predictor with known weights: P(high) rises with the mean weighted degree (graph) and
    with the test accuracy (curve); every other input has weight 0."""
    p = RunPredictor(feature_sets=feature_sets, widths=widths, t_min=min(ts), t_max=max(ts), input_shape=SHAPE)
    W = sum(widths)
    p.ts_ = np.array(ts)
    p.coef_, p.mean_, p.scale_ = [], [], []
    for t in ts:
        coef, mean, scale = np.zeros(t * W), np.zeros(t * W), np.ones(t * W)
        last = (t - 1) * W  # the block of epoch t
        off = 0
        for name, w in zip(feature_sets, widths):
            if name == "deg" and deg_mid is not None:
                coef[last + off + 1], mean[last + off + 1], scale[last + off + 1] = 8.0, deg_mid, deg_mid / 4
            if name == "learning-curve":
                coef[last + off], mean[last + off], scale[last + off] = 8.0, acc_mid, 10.0
            off += w
        p.coef_.append(coef)
        p.mean_.append(mean)
        p.scale_.append(scale)
    p.intercept_ = np.zeros(len(ts))
    p.constant_ = np.full(len(ts), np.nan)
    p.n_fit_ = p.n_high_fit_ = np.zeros(len(ts), int)
    p.classes_ = np.array([0, 1])
    p.n_epochs_ = max(ts) + 1
    return p


def _graph_predictor() -> RunPredictor:
    """Scores by the graph only: the mean weighted degree of a normal network is high, that of a
    network whose weights were shrunk 100-fold is low; the accuracy has weight 0."""
    return _stub(("deg", "evec", "learning-curve"), (5, 5, 1), deg_mid=0.3 * _deg_mean(_net(0)), acc_mid=30.0)


def _accuracy(net, data) -> float:
    x, y = data
    with torch.no_grad():
        return 100.0 * float((net(x).argmax(1) == y).float().mean())


def _train_epoch(net, data, lr):
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    x, y = data
    g = torch.Generator().manual_seed(0)
    for idx in torch.randperm(len(x), generator=g).split(64):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()


# good run: normal weights, lr 0.1 (accurate after one epoch); bad run: weights shrunk, lr 0 (chance)
RUNS = {"good": (1.0, 0.1), "bad": (0.01, 0.0)}


@pytest.mark.parametrize("kind", ["graph", "curve"])
def test_plain_hook_stops_low_and_continues_high(kind):
    train_d, test_d = _digits()
    pred = _graph_predictor() if kind == "graph" else _stub(("learning-curve",), (1,))
    epochs = {}
    for name, (scale, lr) in RUNS.items():
        net = _net(0, scale)
        stopper = EarlyStopper(pred)
        for epoch in range(1, EPOCHS + 1):
            _train_epoch(net, train_d, lr)
            if stopper.step(net, _accuracy(net, test_d)):
                break
        epochs[name] = (epoch, stopper)
    assert epochs["bad"][0] == 1 and epochs["bad"][1].probas[1] < 0.5 and "P(high)" in epochs["bad"][1].reason
    assert epochs["good"][0] == EPOCHS and epochs["good"][1].stopped_at is None
    assert min(epochs["good"][1].probas.values()) > 0.5 and sorted(epochs["good"][1].probas) == [1, 2]


def test_lightning_callback_sets_should_stop():
    L = pytest.importorskip("lightning")
    from paperlib.stopping.hooks import LightningEarlyStopping

    train_d, test_d = _digits()

    class Module(L.LightningModule):
        def __init__(self, scale, lr):
            super().__init__()
            self.net, self.lr = _net(0, scale), lr

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_acc", (self.net(x).argmax(1) == y).float().mean())  # a fraction

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)

    loader = lambda d, shuffle: torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*d),  # noqa: E731
                                                            batch_size=64, shuffle=shuffle)
    trained = {}
    for name, (scale, lr) in RUNS.items():
        torch.manual_seed(0)
        cb = LightningEarlyStopping(_graph_predictor(), monitor="val_acc", acc_scale=100.0, model_attr="net")
        trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            callbacks=[cb])
        trainer.fit(Module(scale, lr), loader(train_d, True), loader(test_d, False))
        trained[name] = (trainer.current_epoch, cb.stopper)
    assert trained["bad"][0] == 1 and trained["bad"][1].stopped_at == 1
    assert trained["good"][0] == EPOCHS and trained["good"][1].stopped_at is None
    assert trained["good"][1].probas[1] > 0.5


def test_optuna_pruner_prunes_low_and_keeps_high():
    optuna = pytest.importorskip("optuna")
    from paperlib.stopping.hooks import GraphSignaturePruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train_d, test_d = _digits()
    pruner = GraphSignaturePruner(_graph_predictor())
    assert isinstance(pruner, optuna.pruners.BasePruner)

    def objective(trial):
        scale, lr = RUNS[trial.suggest_categorical("run", ["good", "bad"])]
        net = _net(0, scale)
        for epoch in range(1, EPOCHS + 1):
            _train_epoch(net, train_d, lr)
            acc = _accuracy(net, test_d)
            pruner.report(trial, net, acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return acc

    study = optuna.create_study(direction="maximize", pruner=pruner)
    for name in ("bad", "good", "bad"):
        study.enqueue_trial({"run": name})
    study.optimize(objective, n_trials=3)
    states = [(t.params["run"], t.state.name, t.last_step) for t in study.trials]
    assert states == [("bad", "PRUNED", 1), ("good", "COMPLETE", EPOCHS), ("bad", "PRUNED", 1)]
    # a curve-only pruner reads nothing but what trial.report received
    curve = GraphSignaturePruner(_stub(("learning-curve",), (1,)))

    def curve_objective(trial):
        scale, lr = RUNS[trial.suggest_categorical("run", ["good", "bad"])]
        net = _net(0, scale)
        for epoch in range(1, EPOCHS + 1):
            _train_epoch(net, train_d, lr)
            trial.report(_accuracy(net, test_d), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return 0.0

    study = optuna.create_study(direction="maximize", pruner=curve)
    study.enqueue_trial({"run": "bad"})
    study.enqueue_trial({"run": "good"})
    study.optimize(curve_objective, n_trials=2)
    assert [(t.state.name, t.last_step) for t in study.trials] == [("PRUNED", 1), ("COMPLETE", EPOCHS)]


def test_hooks_refuse_what_they_cannot_use():
    with pytest.raises(TypeError, match="fitted paperlib.stopping.predictor.RunPredictor"):
        EarlyStopper(RunPredictor())
    pred = _stub(("learning-curve",), (1,))
    with pytest.raises(ValueError, match="stop_below"):
        EarlyStopper(pred, stop_below=2.0)
    with pytest.raises(ValueError, match="percentage"):
        EarlyStopper(pred).step(None, 250.0)
    with pytest.raises(ValueError, match="cannot be computed from a live run"):
        epoch_features(_stub(("B_Wl",), (3,)), None, 10.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_graph_features_of_a_model_on_the_gpu_equal_the_cpu_ones():
    net = _net(0)
    cpu = GraphFeatures(SHAPE).centralities(net)
    gpu = GraphFeatures(SHAPE).centralities(_net(0).cuda())
    np.testing.assert_allclose(gpu["deg"], cpu["deg"], rtol=1e-12)
    np.testing.assert_allclose(gpu["evec"], cpu["evec"], rtol=1e-8, atol=1e-12)
