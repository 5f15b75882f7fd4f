"""Early stopping with graph signatures (beyond the paper, step 07).

Modules
-------
``predictor``
    :class:`RunPredictor`, the fitted early-stopping predictor (one logistic regression per epoch).
``hooks``
    the predictor in your own training: PyTorch (:class:`EarlyStopper`), Lightning and Optuna
    (``hooks.LightningEarlyStopping``, ``hooks.GraphSignaturePruner``, built on first use).
``search``
    a simulated hyperparameter search with pruners (ours, Optuna's median and halving), cross-fitted.
``pruning``
    step 07: the searches on every population of a profile, their files and reading;
    :func:`predictor_path`.
"""

from .hooks import EarlyStopper, GraphFeatures, epoch_features
from .predictor import PREDICTOR_KINDS, RunPredictor
from .pruning import predictor_path

__all__ = ["EarlyStopper", "GraphFeatures", "epoch_features", "PREDICTOR_KINDS", "RunPredictor", "predictor_path"]
