"""Profiles: plain data that says what every notebook does at a given scale.

A profile names the populations to train (dataset x architecture x hyperparameter
grid), the epochs, the range of ``t`` for the predictors, the high/low thresholds,
and the evaluation protocol. Every notebook takes a ``profile`` parameter and reads
the rest from here; ``make reproduce PROFILE=smoke`` selects one.

``smoke``
    seconds to a few minutes on 2 cores; used by the tests. Tiny populations on
    scikit-learn's digits.
``default``
    the embedded default and the main job of ``make reproduce``: digits (bundled with
    scikit-learn, so nothing is downloaded), five architectures sized for 16x16
    inputs, 64 networks each, plus a double-width LeNet population for the
    width-transfer experiment.
``paper``
    the paper's scale: CIFAR-10 and Tiny-ImageNet, the paper's architectures and
    epochs and its Table 1 thresholds. Needs the datasets under ``PAPERLIB_DATA`` and,
    realistically, GPUs or a cluster (see README).

Thresholds of ``default`` and ``smoke`` are ours (the paper has no digits setting):
50% final test accuracy for ``default``, the middle of the chance-to-perfect range for 10
classes; 30% for ``smoke``, whose networks train for only 4 epochs on 384 images and would
otherwise leave some populations with a single "high" network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Grid:
    """Hyperparameter grid of a population (full Cartesian product)."""

    lrs: tuple[float, ...]
    dropouts: tuple[float, ...]
    seeds: tuple[int, ...]
    optimizers: tuple[str, ...] = ("sgd",)  # "sgd" (momentum 0.9) and/or "adam"

    @property
    def size(self) -> int:
        return len(self.lrs) * len(self.dropouts) * len(self.seeds) * len(self.optimizers)


@dataclass(frozen=True)
class Population:
    """One architecture on one dataset, trained over a hyperparameter grid."""

    arch: str  # display name, unique within a profile: "LeNet", "ResNet-20", "LeNet-x2"
    model: str  # key of paperlib.models.build_model: lenet, alexnet, vgg, resnet_cifar, resnet34, resnet50
    dataset: str  # "digits", "cifar10" or "tiny-imagenet"
    threshold: float  # final test accuracy (%) that splits high from low
    grid: Grid
    epochs: int  # maximum epochs per network (early stopping may end a run sooner)
    t_max: int  # largest number of epochs t the predictors may use
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"depth": 20, "width": 0.5}

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.arch}"


@dataclass(frozen=True)
class Transfer:
    """A Q2 experiment: train on some populations, test on another."""

    name: str
    train: tuple[str, ...]  # arch names
    test: str  # arch name


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    populations: tuple[Population, ...]
    image_size: dict[str, int]  # dataset -> side of the (square) input images
    batch_size: int = 128
    patience: int = 5  # early stopping on test accuracy, as the original
    train_limit: int | None = None  # use only the first N training images (None: all)
    # evaluation (S4)
    n_folds: int = 5
    fold_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    classifiers: tuple[str, ...] = ("svm", "mlp")
    modes: tuple[str, ...] = ("plain", "wavg", "expavg")
    alpha: float = 0.5  # expavg smoothing factor
    include_epoch0: bool = False  # the paper's signatures start at epoch 1
    feature_sets: tuple[str, ...] = (
        "deg", "evec", "unroll-deg", "unroll-evec", "B_Wl", "B_What", "B_Wprime", "learning-curve",
    )
    transfers: tuple[Transfer, ...] = ()
    workers: int = 2  # training processes on this machine

    def population(self, arch: str) -> Population:
        for pop in self.populations:
            if pop.arch == arch:
                return pop
        raise KeyError(f"profile {self.name!r} has no population {arch!r}; it has {self.archs}")

    @property
    def archs(self) -> list[str]:
        return [p.arch for p in self.populations]

    def with_overrides(self, **overrides: Any) -> "Profile":
        """A copy with profile fields replaced; ``epochs`` and ``t_max`` apply to every population."""
        pop_keys = {"epochs", "t_max"}
        pop_over = {k: overrides.pop(k) for k in list(overrides) if k in pop_keys and overrides[k]}
        for k in [k for k in overrides if k in pop_keys]:
            overrides.pop(k)  # falsy: keep the profile's value
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise KeyError(f"unknown profile field(s): {sorted(unknown)}")
        pops = self.populations
        if pop_over:
            if "epochs" in pop_over and "t_max" not in pop_over:
                pop_over_t = lambda p: min(p.t_max, pop_over["epochs"])  # noqa: E731
            else:
                pop_over_t = lambda p: pop_over.get("t_max", p.t_max)  # noqa: E731
            pops = tuple(
                dataclasses.replace(p, epochs=pop_over.get("epochs", p.epochs), t_max=pop_over_t(p))
                for p in pops
            )
        return dataclasses.replace(self, populations=pops, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- profiles
# Learning rates over four orders of magnitude x dropout x seed: 8 x 4 x 2 = 64 networks per
# population. Sized with benchmarks/bench_train.py so that, on 2 cores, the default profile trains
# in about 10 minutes and every population spans chance level to above 80% final accuracy.
_DIGIT_LRS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 1e-1)
_DIGIT_GRID = Grid(lrs=_DIGIT_LRS, dropouts=(0.0, 0.3, 0.6, 0.9), seeds=(0, 1))

SMOKE = Profile(
    name="smoke",
    description="seconds to minutes; tiny populations on digits (tests)",
    populations=tuple(
        Population(arch, model, "digits", 30.0, Grid(lrs=(1e-4, 1e-2, 3e-2, 1e-1), dropouts=(0.0, 0.5), seeds=(0, 1)),
                   epochs=4, t_max=3, model_kwargs=kw)
        for arch, model, kw in [
            ("LeNet", "lenet", {"width": 1.0}),
            ("LeNet-x2", "lenet", {"width": 2.0}),
            ("ResNet-8", "resnet_cifar", {"depth": 8, "width": 0.25}),
            ("ResNet-14", "resnet_cifar", {"depth": 14, "width": 0.25}),
        ]
    ),
    image_size={"digits": 16},
    batch_size=32,  # 12 steps per epoch on the 384 training images
    patience=5,
    train_limit=384,
    n_folds=3,
    fold_seeds=(0, 1),
    transfers=(
        Transfer("deeper", ("ResNet-8",), "ResNet-14"),
        Transfer("older-to-resnet", ("LeNet",), "ResNet-8"),
        Transfer("wider", ("LeNet",), "LeNet-x2"),
    ),
)

DEFAULT = Profile(
    name="default",
    description="the embedded default: digits, five architectures, 64 networks each",
    populations=tuple(
        Population(arch, model, "digits", 50.0, _DIGIT_GRID, epochs=epochs, t_max=8, model_kwargs=kw)
        for arch, model, epochs, kw in [
            ("LeNet", "lenet", 15, {"width": 1.0}),
            ("AlexNet", "alexnet", 15, {"width": 0.125}),
            ("VGG", "vgg", 15, {"width": 0.0625}),
            ("ResNet-20", "resnet_cifar", 12, {"depth": 20, "width": 0.25}),
            ("ResNet-32", "resnet_cifar", 12, {"depth": 32, "width": 0.25}),
            ("LeNet-x2", "lenet", 15, {"width": 2.0}),
        ]
    ),
    image_size={"digits": 16},
    transfers=(
        Transfer("deeper", ("ResNet-20",), "ResNet-32"),
        Transfer("older-to-resnet", ("LeNet", "AlexNet", "VGG"), "ResNet-20"),
        Transfer("wider", ("LeNet",), "LeNet-x2"),
    ),
)

# The paper's scale. Learning rates: values seen in the authors' run lists plus a log grid
# down to 1e-6; dropout 0.0-0.9 in steps of 0.1 (as the authors' code).
_PAPER_GRID = Grid(
    lrs=(2.5e-6, 1e-4, 1e-3, 1e-2, 0.15, 0.2, 0.25, 0.35),
    dropouts=tuple(round(0.1 * i, 1) for i in range(10)),
    seeds=(0,),
)
PAPER = Profile(
    name="paper",
    description="CIFAR-10 and Tiny-ImageNet at the paper's scale (needs the data and GPUs)",
    populations=(
        Population("LeNet", "lenet", "cifar10", 40.0, _PAPER_GRID, epochs=50, t_max=9),
        Population("AlexNet", "alexnet", "cifar10", 40.0, _PAPER_GRID, epochs=50, t_max=14),
        Population("VGG", "vgg", "cifar10", 40.0, _PAPER_GRID, epochs=50, t_max=14),
        Population("ResNet-32", "resnet_cifar", "cifar10", 40.0, _PAPER_GRID, epochs=120, t_max=14,
                   model_kwargs={"depth": 32}),
        Population("ResNet-44", "resnet_cifar", "cifar10", 40.0, _PAPER_GRID, epochs=120, t_max=14,
                   model_kwargs={"depth": 44}),
        Population("LeNet-IN", "lenet", "tiny-imagenet", 9.0, _PAPER_GRID, epochs=50, t_max=14),
        Population("AlexNet-IN", "alexnet", "tiny-imagenet", 10.0, _PAPER_GRID, epochs=50, t_max=14),
        Population("ResNet-34", "resnet34", "tiny-imagenet", 25.0, _PAPER_GRID, epochs=120, t_max=14),
        Population("ResNet-50", "resnet50", "tiny-imagenet", 25.0, _PAPER_GRID, epochs=120, t_max=14),
    ),
    image_size={"cifar10": 32, "tiny-imagenet": 64},
    transfers=(
        Transfer("deeper", ("ResNet-32",), "ResNet-44"),
        Transfer("deeper-IN", ("ResNet-34",), "ResNet-50"),
        Transfer("older-to-resnet", ("LeNet", "AlexNet", "VGG"), "ResNet-32"),
    ),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (SMOKE, DEFAULT, PAPER)}


def get_profile(name: str, **overrides: Any) -> Profile:
    """The profile called ``name``, with optional field overrides (see ``Profile.with_overrides``)."""
    try:
        profile = PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
    return profile.with_overrides(**overrides) if overrides else profile
