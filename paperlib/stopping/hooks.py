"""Stop bad runs in your own training: a plain PyTorch hook, a Lightning callback, an Optuna pruner.

All three ask a fitted :class:`paperlib.stopping.predictor.RunPredictor` after every epoch for the
probability that the run ends "high" and stop it when that probability is below
``stop_below``. They read, per epoch, what the predictor was fitted on:

* ``deg`` / ``evec``: the five-number signature (:func:`paperlib.features.signatures.aggregate_rows`) of
  the weighted degree / eigenvector centrality of the model's rolled graph, computed exactly as
  the pipeline computes them from a snapshot (:mod:`paperlib.graph.temporal`: ``GraphPlan.rolled``,
  ``stack_rolled``, ``eigenvector_centrality_batch``), so that a live model at epoch ``e`` has the
  features of its snapshot of epoch ``e``;
* ``learning-curve``: the test accuracy after the epoch, **in percent** (0-100), as the
  training step records it.

Choices stated here once:

* **When a decision is taken.** After epoch ``t`` for every ``t`` with a fitted model
  (``predictor.ts_``, e.g. 1..9). Before the first and after the last of them the hooks never
  stop a run: after ``t_max`` the run's own early stopping takes over.
* **A model with NaN or infinite weights** (or a non-finite accuracy) is stopped at once: the
  run has diverged.
* **Features of the architecture the predictor was fitted on.** Graph signatures scale with the
  size of the graph; a predictor fitted on one architecture scores other architectures only as
  well as the transfer experiments (05_q2) say. The rolled graph needs one input's shape
  (``predictor.input_shape``, or ``input_shape=``).

Examples
--------
The plain hook, in any training loop::

    stopper = EarlyStopper(RunPredictor.load(path))
    for epoch in range(1, epochs + 1):
        train_one_epoch(model)
        if stopper.step(model, test_accuracy_percent(model)):
            break                      # stopper.reason says why
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import numpy as np

from .predictor import RunPredictor
from ..features.signatures import aggregate_rows

GRAPH_SETS = {"deg", "evec"}
#: user attribute of an Optuna trial holding the features of one epoch (``<prefix><epoch>``)
TRIAL_ATTR_PREFIX = "paperlib_features_"

__all__ = ["EarlyStopper", "GraphFeatures", "GraphSignaturePruner", "LightningEarlyStopping", "epoch_features"]


# --------------------------------------------------------------------------- per-epoch features
class GraphFeatures:
    """Weighted degree and eigenvector centrality of a model's rolled graph, plan traced once.

    Parameters
    ----------
    input_shape
        one input without the batch axis, e.g. ``(1, 16, 16)``.
    """

    def __init__(self, input_shape: Sequence[int] | None = None):
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self._plans: dict[Any, Any] = {}

    def centralities(self, model) -> dict[str, np.ndarray]:
        """``{"deg", "evec", "finite"}`` of ``model`` (any device; read on the CPU)."""
        import torch

        from ..graph import centrality
        from .. import graph
        from ..graph.temporal import _NCV

        if any(p.device.type != "cpu" for p in model.parameters()):
            model = copy.deepcopy(model).to("cpu")
        finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
        key = (type(model), self.input_shape)
        if key not in self._plans:
            self._plans[key] = graph.GraphPlan(model, self.input_shape)
        plan = self._plans[key]
        with torch.no_grad():
            g = plan.rolled(model)
        apply = graph.stack_rolled([g])
        deg = apply(np.ones((1, g.n)))[0]
        evec = centrality.eigenvector_centrality_batch(apply, g.n, 1, ncv=_NCV)[0]
        return {"deg": deg, "evec": evec, "finite": np.array(finite)}


def _with_flag(values: np.ndarray, width: int) -> np.ndarray:
    """Values of one feature set, padded with the pipeline's "replaced" flag (0) if its width has it."""
    if width == len(values):
        return values
    if width == len(values) + 1:
        return np.append(values, 0.0)
    raise ValueError(f"paperlib.stopping.hooks: a per-epoch vector of {len(values)} value(s) does not fit width {width}")


def epoch_features(predictor: RunPredictor, model=None, test_acc: float | None = None,
                   graph: GraphFeatures | None = None) -> np.ndarray:
    """The per-epoch vector of ``predictor``'s feature sets for one epoch of a live run.

    ``model`` is needed for ``deg``/``evec``, ``test_acc`` (percent) for ``learning-curve``.
    A non-finite model or accuracy gives NaN values (the pipeline's diverged epoch).
    """
    parts = []
    cent = None
    for name, width in zip(predictor.feature_sets, predictor.widths):
        if name in GRAPH_SETS:
            if model is None:
                raise ValueError(f"paperlib.stopping.hooks: feature set {name!r} needs the model")
            if cent is None:
                graph = graph or GraphFeatures(predictor.input_shape)
                cent = graph.centralities(model)
            sig = aggregate_rows(np.asarray(cent[name], dtype=np.float64)[None, :])[0]
            if not bool(cent["finite"]):
                sig[:] = np.nan
            parts.append(_with_flag(sig, int(width)) if np.isfinite(sig).all() else np.full(int(width), np.nan))
        elif name == "learning-curve":
            if test_acc is None:
                raise ValueError("paperlib.stopping.hooks: feature set 'learning-curve' needs the test accuracy (percent)")
            acc = float(test_acc)
            if math.isfinite(acc) and not 0.0 <= acc <= 100.0:
                raise ValueError(f"paperlib.stopping.hooks: test accuracy {acc} is not a percentage in [0, 100]")
            v = np.array([acc])
            parts.append(_with_flag(v, int(width)) if math.isfinite(acc) else np.full(int(width), np.nan))
        else:
            raise ValueError(f"paperlib.stopping.hooks: feature set {name!r} cannot be computed from a live run; "
                             f"supported: {sorted(GRAPH_SETS | {'learning-curve'})}")
    return np.concatenate(parts)


def _decide(predictor: RunPredictor, rows: dict[int, np.ndarray], epoch: int, stop_below: float
            ) -> tuple[bool, float, str]:
    """(stop, P(high), reason) after ``epoch`` given the per-epoch rows seen so far."""
    row = rows.get(epoch)
    if row is not None and not np.isfinite(row).all():
        return True, float("nan"), f"epoch {epoch}: non-finite weights or accuracy (diverged)"
    if epoch not in set(predictor.ts_.tolist()):
        return False, float("nan"), ""
    A = np.full((1, epoch + 1, predictor.width), np.nan)
    for e, r in rows.items():
        if e <= epoch:
            A[0, e] = r
    first = 0 if predictor.include_epoch0 else 1
    missing = [e for e in range(first, epoch + 1) if e not in rows]
    if missing:
        raise ValueError(f"paperlib.stopping.hooks: no features for epoch(s) {missing}; report every epoch from {first}")
    p = float(predictor.proba_high_at(A, epoch)[0])
    if p < stop_below:
        return True, p, f"epoch {epoch}: P(high) = {p:.3f} < {stop_below}"
    return False, p, ""


def _check_predictor(predictor: Any, stop_below: float) -> None:
    if not isinstance(predictor, RunPredictor) or not hasattr(predictor, "ts_"):
        raise TypeError("paperlib.stopping.hooks: expected a fitted paperlib.stopping.predictor.RunPredictor, "
                        f"got {type(predictor).__name__}")
    if not 0.0 <= stop_below <= 1.0:
        raise ValueError(f"paperlib.stopping.hooks: stop_below must be a probability in [0, 1], got {stop_below}")


# --------------------------------------------------------------------------- plain PyTorch
class EarlyStopper:
    """Call :meth:`step` once per epoch with the model and its test accuracy; True means stop.

    Parameters
    ----------
    predictor
        a fitted :class:`~paperlib.stopping.predictor.RunPredictor`.
    stop_below
        stop when ``P(high) < stop_below``.
    input_shape
        one input without the batch axis (default ``predictor.input_shape``).

    Attributes
    ----------
    epoch : int
        epochs seen (the next :meth:`step` is ``epoch + 1`` unless ``epoch=`` is given).
    probas : dict
        ``{epoch: P(high)}`` at every decision.
    stopped_at : int or None
        the epoch after which the run was told to stop.
    reason : str
        why (empty while running).
    """

    def __init__(self, predictor: RunPredictor, stop_below: float = 0.5, input_shape: Sequence[int] | None = None):
        _check_predictor(predictor, stop_below)
        self.predictor = predictor
        self.stop_below = float(stop_below)
        self.graph = GraphFeatures(input_shape if input_shape is not None else predictor.input_shape)
        self.rows: dict[int, np.ndarray] = {}
        self.probas: dict[int, float] = {}
        self.epoch = 0
        self.stopped_at: int | None = None
        self.reason = ""

    def start(self, model=None, test_acc: float | None = None) -> None:
        """Optional: record epoch 0 (the initialisation); needed only with ``include_epoch0``."""
        self.rows[0] = epoch_features(self.predictor, model, test_acc, self.graph)

    def step(self, model=None, test_acc: float | None = None, epoch: int | None = None) -> bool:
        """Record the epoch just trained; return True when the run should stop."""
        epoch = self.epoch + 1 if epoch is None else int(epoch)
        if epoch < 1:
            raise ValueError(f"paperlib.stopping.hooks: epoch must be >= 1 (epoch 0 is start()), got {epoch}")
        self.epoch = epoch
        if epoch > int(self.predictor.ts_.max()):  # past the last model: the run's own stopping rules
            if test_acc is not None and not math.isfinite(float(test_acc)):
                return self._stop(epoch, f"epoch {epoch}: non-finite accuracy (diverged)")
            return False
        self.rows[epoch] = epoch_features(self.predictor, model, test_acc, self.graph)
        stop, p, reason = _decide(self.predictor, self.rows, epoch, self.stop_below)
        if not math.isnan(p):
            self.probas[epoch] = p
        return self._stop(epoch, reason) if stop else False

    def _stop(self, epoch: int, reason: str) -> bool:
        if self.stopped_at is None:
            self.stopped_at, self.reason = epoch, reason
        return True

    __call__ = step


# --------------------------------------------------------------------------- PyTorch Lightning
def _lightning_class():
    try:
        from lightning.pytorch.callbacks import Callback
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("paperlib.stopping.hooks.LightningEarlyStopping needs PyTorch Lightning: "
                          "pip install 'paperlib[lightning]' (or pip install lightning)") from exc

    class LightningEarlyStopping(Callback):
        """A Lightning ``Callback``: after every training epoch, ask the predictor; stop the trainer.

        Parameters
        ----------
        predictor
            a fitted :class:`~paperlib.stopping.predictor.RunPredictor`.
        monitor
            the logged test/validation accuracy (``self.log(monitor, ...)`` in the module).
        stop_below
            stop when ``P(high) < stop_below``.
        acc_scale
            multiplies the logged value to get percent (100 when the module logs fractions).
        model_attr
            attribute of the ``LightningModule`` that holds the network to graph (default: the
            module itself).
        input_shape
            one input without the batch axis (default ``predictor.input_shape``).
        """

        def __init__(self, predictor: RunPredictor, monitor: str = "val_acc", stop_below: float = 0.5,
                     acc_scale: float = 1.0, model_attr: str | None = None,
                     input_shape: Sequence[int] | None = None):
            super().__init__()
            self.monitor = monitor
            self.acc_scale = float(acc_scale)
            self.model_attr = model_attr
            self.stopper = EarlyStopper(predictor, stop_below, input_shape)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            needs_acc = "learning-curve" in self.stopper.predictor.feature_sets
            acc = None
            if self.monitor in trainer.callback_metrics:
                acc = float(trainer.callback_metrics[self.monitor]) * self.acc_scale
            elif needs_acc:
                raise KeyError(f"paperlib.stopping.hooks: metric {self.monitor!r} was not logged; logged: "
                               f"{sorted(trainer.callback_metrics)}")
            model = getattr(pl_module, self.model_attr) if self.model_attr else pl_module
            if self.stopper.step(model, acc, epoch=trainer.current_epoch + 1):
                trainer.should_stop = True

    return LightningEarlyStopping


# --------------------------------------------------------------------------- Optuna
def _optuna_base():
    try:
        from optuna.pruners import BasePruner
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("paperlib.stopping.hooks.GraphSignaturePruner needs Optuna: "
                          "pip install 'paperlib[optuna]' (or pip install optuna)") from exc
    return BasePruner


def _pruner_class():
    BasePruner = _optuna_base()

    class GraphSignaturePruner(BasePruner):
        """An Optuna pruner: prune a trial when ``P(high) < stop_below`` after an epoch.

        It reads what the objective reported: ``trial.report(test_acc_percent, epoch)`` gives the
        learning curve; the graph features of the epoch are reported beside it by
        :meth:`report` (a trial user attribute), which also calls ``trial.report``::

            pruner = GraphSignaturePruner(predictor)
            study = optuna.create_study(direction="maximize", pruner=pruner)
            def objective(trial):
                ...
                for epoch in range(1, epochs + 1):
                    train_one_epoch(model); acc = test_accuracy_percent(model)
                    pruner.report(trial, model, acc, epoch)
                    if trial.should_prune():
                        raise optuna.TrialPruned()
                return acc

        Epochs are Optuna steps (1, 2, ...); the pruner keeps no state between calls.
        """

        def __init__(self, predictor: RunPredictor, stop_below: float = 0.5,
                     input_shape: Sequence[int] | None = None):
            _check_predictor(predictor, stop_below)
            self.predictor = predictor
            self.stop_below = float(stop_below)
            self.graph = GraphFeatures(input_shape if input_shape is not None else predictor.input_shape)

        def report(self, trial, model, test_acc: float, epoch: int) -> None:
            """``trial.report(test_acc, epoch)`` plus, for graph predictors, the epoch's graph features."""
            if any(n in GRAPH_SETS for n in self.predictor.feature_sets) and epoch <= int(self.predictor.ts_.max()):
                row = epoch_features(self.predictor, model, test_acc, self.graph)
                trial.set_user_attr(f"{TRIAL_ATTR_PREFIX}{int(epoch)}", [float(v) for v in row])
            trial.report(float(test_acc), int(epoch))

        def rows(self, trial) -> dict[int, np.ndarray]:
            """Per-epoch feature vectors of a (frozen) trial, from its reports."""
            rows: dict[int, np.ndarray] = {}
            graph = any(n in GRAPH_SETS for n in self.predictor.feature_sets)
            for step, acc in trial.intermediate_values.items():
                if step > int(self.predictor.ts_.max()):
                    continue
                if graph:
                    key = f"{TRIAL_ATTR_PREFIX}{int(step)}"
                    if key not in trial.user_attrs:
                        raise KeyError(f"paperlib.stopping.hooks: trial {trial.number} has no graph features for step "
                                       f"{step}; report with GraphSignaturePruner.report(trial, model, acc, epoch)")
                    rows[int(step)] = np.asarray(trial.user_attrs[key], dtype=np.float64)
                else:
                    rows[int(step)] = epoch_features(self.predictor, None, acc)
            return rows

        def prune(self, study, trial) -> bool:
            step = trial.last_step
            if step is None or step < 1:
                return False
            stop, _, _ = _decide(self.predictor, self.rows(trial), int(step), self.stop_below)
            return stop

    return GraphSignaturePruner


_LAZY = {"LightningEarlyStopping": _lightning_class, "GraphSignaturePruner": _pruner_class}
_CACHE: dict[str, type] = {}


def __getattr__(name: str):
    """Lightning and Optuna are optional: their classes are built on first use."""
    if name in _LAZY:
        if name not in _CACHE:
            _CACHE[name] = _LAZY[name]()
        return _CACHE[name]
    raise AttributeError(f"module 'paperlib.stopping.hooks' has no attribute {name!r}")
