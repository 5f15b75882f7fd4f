"""The Fashion-MNIST profiles: the paper's protocol on real images (``fmnist``) and at full size (``fmnist-full``).

The data (:mod:`paperlib.train.fashion_mnist`): Debian's ``dataset-fashion-mnist`` or torchvision's
files; 10 classes of 28x28 grey images, 6,000 training images per class, 10,000 test images.

Input size: 28x28, the images as published, for every population. A profile has one input size
per dataset, and the zoo-style population must see the inputs the Small CNN Zoo was trained on
(28x28, scaled to ``[-1, 1]``: our normalisation ``(x - 0.5) / 0.5``) to be a bridge to that zoo;
the paper's architectures all accept 28x28 (LeNet's last feature map is 4x4 instead of 5x5, VGG's
1x1 instead of 2x2) and cost about a quarter less than at 32x32. The reader can also centre the
images on a zero border at 32x32 (``image_size={"fashion-mnist": 32}``), where the CIFAR-10 layer
shapes are kept exactly.

``fmnist``: on 2 cores, one population replicate of every population in at most an hour.

- Populations: the paper's LeNet, AlexNet, VGG, two depths of the CIFAR ResNets (8 and 14, Q2's
  "deeper"), a double-width LeNet (Q2's "wider"), and the Small CNN Zoo's network trained the
  zoo's way (below). Widths: LeNet 1, LeNet-x2 2, AlexNet and VGG 1/8, the ResNets 1/4 (AlexNet and
  VGG with He initialisation, as in ``default``, see :mod:`paperlib.train.models`).
- Data: a stratified fixed subset of :data:`FMNIST_TRAIN` training images (``train_limit``;
  :func:`paperlib.train.fashion_mnist.stratified_subset`: the same number per class, drawn once with
  seed 0), the whole test set (10,000 images) evaluated after every epoch.
- Grid: ``default``'s, 16 learning rates log-spaced from 1e-4 to 10**-0.5 x dropout {0, 0.25,
  0.5, 0.75}, one run each (64 networks); SGD momentum 0.9, batch 128; at most 15 epochs, early
  stopping with the authors' patience 5 after their burn-in of 10; ``t`` = 1..9.
- Thresholds: one rule for every population, fixed before any network is trained: 50% final
  test accuracy, the middle of the chance-to-perfect range for 10 classes (``default``'s rule).
  Never chosen from the classifiers' scores; where a population's final accuracies do not spread
  across it, its grid is what changes.
- Sizing (``python benchmarks/bench_train.py --device cpu --profiles fmnist``, AMD EPYC, 2 cores
  shared with other jobs, trainer version 4): seconds per epoch LeNet 3.1, AlexNet 4.3, VGG 11.1,
  ResNet-8 7.2, ResNet-14 12.3, LeNet-x2 2.6, SmallCNN-zoo 0.7; 5.5 h in all as an upper bound (no
  early stopping), so an hour needs a trainer about 5.5x faster. The whole test set, evaluated
  after every epoch, took 67-77% of an epoch (LeNet, VGG, ResNet-14 on the real data): fewer
  training images save little; VGG and ResNet-14 are where to shrink next. Measured under a load
  average of 7.5-7.9 on the 2 cores, so an upper bound twice over.

The zoo-style population ``SmallCNN-zoo`` (model ``small-cnn-zoo``, :class:`paperlib.train.zoo.SmallCNN`:
three 3x3 convolutions of 16 filters at stride 2, ReLU, global average pooling, dense 10; 4,970
parameters): 64 networks whose hyperparameters are drawn independently, the zoo's way (random
search, not a grid), from :data:`ZOO_DISTRIBUTIONS` by :class:`ZooDraws`, as far as a run's
specification reaches: the optimizer, the learning rate, the dropout, the weight initialisation
and its standard deviation (``model_kwargs`` ``w_init``, ``init_std``), and the fraction of the
profile's training images (the run's ``train_limit``; stratified like every subset). Not drawn:
the L2 strength (a run's specification has no weight decay besides Adam's fixed 1e-4, the
authors'), RMSProp and plain SGD (the trainer has SGD with momentum 0.9 and Adam), the
activation (ReLU only: one population, one graph). Batch and epochs are the profile's, not the
zoo's 512 and 86. Its snapshots are exported in the zoo's own files by
``python -m paperlib.sources.zoo_export`` (see there).

``fmnist-full``: for a GPU or a cluster. All 60,000 training images, full widths (1; LeNet-x2 2),
the paper's grid (learning rates {3, 3.5} x 1e-6..1e-1, dropout 0.0..0.9: 120 networks) and epochs
(50 for LeNet, AlexNet and VGG, 120 for the ResNets; the zoo's network 86, its own), the paper's
ResNet depths 32 and 44, the same threshold rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .profile_types import Grid, Population, Profile, Transfer

#: The Small CNN Zoo's draws per network, as we read their paper (Unterthiner et al. 2020, arXiv
#: 2002.11448, Sec. 3) and the flags of their ``train_network.py``; the ranges are not confirmed
#: from a file of theirs (the ``config.*`` columns of a released ``metrics.csv.gz`` are the ground
#: truth). ``w_init``: the Keras initialisers :data:`paperlib.train.zoo.KERAS_INITS` implements.
ZOO_DISTRIBUTIONS: dict[str, Any] = {
    "optimizer": ("sgd", "adam"),  # theirs: adam, rmsprop, sgd; ours: the trainer's two
    "learning_rate": ("log-uniform", 5e-4, 5e-2),
    "dropout": ("uniform", 0.0, 0.7),
    "w_init": ("he_normal", "glorot_normal", "glorot_uniform", "random_normal", "truncated_normal"),
    "init_std": ("log-uniform", 1e-3, 0.5),
    "train_fraction": (0.1, 0.25, 0.5, 1.0),
}


@dataclass(frozen=True)
class ZooDraws(Grid):
    """``n`` networks with hyperparameters drawn from :data:`ZOO_DISTRIBUTIONS` (not a Cartesian grid).

    ``lrs`` and ``dropouts`` hold the ends of the ranges drawn from, ``optimizers`` the choices;
    network ``i`` draws from ``numpy.random.default_rng([draw_seed, i])`` (so the first networks
    do not depend on ``n``) and is trained with seed ``i``. :meth:`specs` is what
    :func:`paperlib.train.trainer.population_specs` uses for such a population.
    """

    n: int = 64
    draw_seed: int = 0

    @property
    def size(self) -> int:
        return self.n

    def draws(self, train_images: int) -> list[dict[str, Any]]:
        """The hyperparameters of every network; ``train_images``: the profile's training set size."""
        import numpy as np

        out = []
        for i in range(self.n):
            rng = np.random.default_rng([self.draw_seed, i])
            lr = float(f"{np.exp(rng.uniform(np.log(self.lrs[0]), np.log(self.lrs[-1]))):.3g}")
            dropout = round(float(rng.uniform(self.dropouts[0], self.dropouts[-1])), 3)
            optimizer = str(rng.choice(self.optimizers))
            w_init = str(rng.choice(ZOO_DISTRIBUTIONS["w_init"]))
            lo, hi = ZOO_DISTRIBUTIONS["init_std"][1:]
            init_std = float(f"{np.exp(rng.uniform(np.log(lo), np.log(hi))):.3g}")
            fraction = float(rng.choice(ZOO_DISTRIBUTIONS["train_fraction"]))
            out.append({"lr": lr, "dropout": dropout, "optimizer": optimizer, "w_init": w_init, "init_std": init_std,
                        "train_fraction": fraction, "train_limit": max(10, int(round(fraction * train_images / 10)) * 10)})
        return out

    def run_fields(self, profile: Profile) -> list[dict[str, Any]]:
        """What each network's run specification takes from its draw (plain data; the specifications
        are built by :func:`paperlib.train.trainer.population_specs`): ``lr``, ``dropout``, ``seed``,
        ``optimizer``, ``model_kwargs`` to add and ``train_limit``."""
        out = []
        for i, d in enumerate(self.draws(profile.train_limit or FULL_TRAIN)):
            out.append({"lr": d["lr"], "dropout": d["dropout"], "seed": i, "optimizer": d["optimizer"],
                        "model_kwargs": {"w_init": d["w_init"], "init_std": d["init_std"]},
                        "train_limit": None if d["train_limit"] >= FULL_TRAIN else d["train_limit"]})
        return out


FULL_TRAIN = 60_000  # Fashion-MNIST's training images
FMNIST_TRAIN = 2_000  # 200 per class; see the module docstring and the sizing measurement
FMNIST_THRESHOLD = 50.0  # the rule: halfway from chance (10%) to perfect, for every population
DATASET = "fashion-mnist"

_LRS = tuple(float(f"{10 ** (-4 + 3.5 * i / 15):.3g}") for i in range(16))
_GRID = Grid(lrs=_LRS, dropouts=(0.0, 0.25, 0.5, 0.75), seeds=(0,))
_ZOO_GRID = ZooDraws(lrs=ZOO_DISTRIBUTIONS["learning_rate"][1:], dropouts=ZOO_DISTRIBUTIONS["dropout"][1:],
                     seeds=tuple(range(64)), optimizers=ZOO_DISTRIBUTIONS["optimizer"], n=64)
ZOO_KWARGS = {"stride": 2, "activation": "relu"}

FMNIST = Profile(
    name="fmnist",
    description="Fashion-MNIST: the paper's protocol on real images, 7 populations of 64, an hour on 2 cores",
    populations=tuple(
        Population(arch, model, DATASET, FMNIST_THRESHOLD, grid, epochs=15, t_max=9, model_kwargs=kw)
        for arch, model, grid, kw in [
            ("LeNet", "lenet", _GRID, {"width": 1.0}),
            ("AlexNet", "alexnet", _GRID, {"width": 0.125, "init": "he"}),
            ("VGG", "vgg", _GRID, {"width": 0.125, "init": "he"}),
            ("ResNet-8", "resnet_cifar", _GRID, {"depth": 8, "width": 0.25}),
            ("ResNet-14", "resnet_cifar", _GRID, {"depth": 14, "width": 0.25}),
            ("LeNet-x2", "lenet", _GRID, {"width": 2.0}),
            ("SmallCNN-zoo", "small-cnn-zoo", _ZOO_GRID, dict(ZOO_KWARGS)),
        ]
    ),
    image_size={DATASET: 28},
    burn_in=10,
    train_limit=FMNIST_TRAIN,
    transfers=(
        Transfer("deeper", ("ResNet-8",), "ResNet-14"),
        Transfer("older-to-resnet", ("LeNet", "AlexNet", "VGG"), "ResNet-8"),
        Transfer("wider", ("LeNet",), "LeNet-x2"),
    ),
)

_PAPER_LRS = tuple(float(f"{m * 10.0 ** e:.3g}") for e in range(-6, 0) for m in (3.0, 3.5))
_PAPER_GRID = Grid(lrs=_PAPER_LRS, dropouts=tuple(round(0.1 * i, 1) for i in range(10)), seeds=(0,))
FMNIST_FULL = Profile(
    name="fmnist-full",
    description="Fashion-MNIST at full size (60,000 images, full widths, the paper's grid and epochs): GPU or cluster",
    populations=tuple(
        Population(arch, model, DATASET, FMNIST_THRESHOLD, grid, epochs=epochs, t_max=9, model_kwargs=kw)
        for arch, model, grid, epochs, kw in [
            ("LeNet", "lenet", _PAPER_GRID, 50, {}),
            ("AlexNet", "alexnet", _PAPER_GRID, 50, {}),
            ("VGG", "vgg", _PAPER_GRID, 50, {}),
            ("ResNet-32", "resnet_cifar", _PAPER_GRID, 120, {"depth": 32}),
            ("ResNet-44", "resnet_cifar", _PAPER_GRID, 120, {"depth": 44}),
            ("LeNet-x2", "lenet", _PAPER_GRID, 50, {"width": 2.0}),
            ("SmallCNN-zoo", "small-cnn-zoo", _ZOO_GRID, 86, dict(ZOO_KWARGS)),
        ]
    ),
    image_size={DATASET: 28},
    burn_in=10,
    transfers=(
        Transfer("deeper", ("ResNet-32",), "ResNet-44"),
        Transfer("older-to-resnet", ("LeNet", "AlexNet", "VGG"), "ResNet-32"),
        Transfer("wider", ("LeNet",), "LeNet-x2"),
    ),
)
