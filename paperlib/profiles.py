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

Early stopping and the information horizon. As in the authors' code, early stopping (patience
``patience`` on test accuracy) may only stop a run at an epoch after ``burn_in``. Every ``t`` a
predictor uses must lie before every possible stop, so a profile whose ``t_max`` is at or above its
``burn_in`` is refused when it is built (:class:`Profile` raises ``ValueError`` naming the fields).
For ``paper`` this caps ``t`` at 9 for every population, where the paper shows AlexNet and others
up to t=14: beyond the burn-in a stopped network could enter the data.

Overrides. :meth:`Profile.with_overrides` treats 0, ``""`` and ``None`` as "keep the profile's
value" for every field. The training notebook records the overrides it ran with in
``results/<profile>/overrides.json`` (:func:`save_overrides`); every later notebook, the runner and
the manifest read the profile through :func:`effective_profile`, so what ran is what is recorded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("float32", "bf16")


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
    model: str  # key of paperlib.train.models.build_model: lenet, alexnet, vgg, resnet_cifar, resnet34, resnet50
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
    workers: int = 2  # training processes on this machine (parallelism is across runs only)
    burn_in: int = 10  # early stopping may stop a run only at an epoch > burn_in (the authors' 10)
    threads: int = 1  # intra-op torch threads of every run: fixed, so numbers never depend on the machine
    device: str = "auto"  # "auto" (cuda when present), "cpu" or "cuda"
    runs_per_device: int = 1  # runs training side by side on one GPU
    precision: str = "float32"  # "float32", or "bf16" (mixed precision, opt-in; part of a run's key)

    def __post_init__(self) -> None:
        problems = []
        for name, lo in (("batch_size", 1), ("patience", 1), ("burn_in", 0), ("n_folds", 2), ("workers", 1),
                         ("threads", 1), ("runs_per_device", 1)):
            if getattr(self, name) < lo:
                problems.append(f"{name}={getattr(self, name)} must be >= {lo}")
        if self.device not in DEVICES:
            problems.append(f"device={self.device!r} must be one of {DEVICES}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision={self.precision!r} must be one of {PRECISIONS}")
        for pop in self.populations:
            if pop.epochs < 1:
                problems.append(f"population {pop.arch}: epochs={pop.epochs} must be >= 1")
            if not 1 <= pop.t_max <= pop.epochs:
                problems.append(f"population {pop.arch}: t_max={pop.t_max} must be in 1..epochs={pop.epochs}")
            if pop.t_max >= self.burn_in:
                problems.append(
                    f"population {pop.arch}: t_max={pop.t_max} is not below burn_in={self.burn_in}: early "
                    f"stopping (after the burn-in) could stop a network at or before an epoch t the predictors "
                    f"use; lower t_max or raise burn_in")
        if problems:
            raise ValueError(f"profile {self.name!r}: " + "; ".join(problems))

    def population(self, arch: str) -> Population:
        for pop in self.populations:
            if pop.arch == arch:
                return pop
        raise KeyError(f"profile {self.name!r} has no population {arch!r}; it has {self.archs}")

    @property
    def archs(self) -> list[str]:
        return [p.arch for p in self.populations]

    def with_overrides(self, **overrides: Any) -> "Profile":
        """A copy with profile fields replaced; ``epochs`` and ``t_max`` apply to every population.

        For every field, 0, ``""`` and ``None`` keep the profile's value. Without ``t_max``, an
        ``epochs`` below a population's ``t_max`` lowers ``t_max`` to it. The result is validated
        like any profile (``ValueError`` naming the fields).
        """
        overrides = {k: v for k, v in overrides.items() if v not in (0, "", None) or isinstance(v, bool)}
        pop_keys = {"epochs", "t_max"}
        pop_over = {k: overrides.pop(k) for k in list(overrides) if k in pop_keys}
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
SMOKE = Profile(
    name="smoke",
    description="seconds to minutes; tiny populations on digits (tests)",
    populations=tuple(
        Population(arch, model, "digits", 30.0, Grid(lrs=(1e-4, 1e-2, 3e-2, 1e-1), dropouts=(0.0, 0.5), seeds=(0, 1)),
                   epochs=4, t_max=3, model_kwargs=kw)
        for arch, model, kw in [
            ("LeNet", "lenet", {"width": 1.0, "init": "he"}),  # He init: both classes within 4 epochs
            ("LeNet-x2", "lenet", {"width": 2.0, "init": "he"}),
            ("ResNet-8", "resnet_cifar", {"depth": 8, "width": 0.25}),
            ("ResNet-14", "resnet_cifar", {"depth": 14, "width": 0.25}),
        ]
    ),
    image_size={"digits": 16},
    batch_size=32,  # 12 steps per epoch on the 384 training images
    patience=5,
    burn_in=10,  # above epochs: no smoke run stops early
    train_limit=384,
    n_folds=3,
    fold_seeds=(0, 1),
    transfers=(
        Transfer("deeper", ("ResNet-8",), "ResNet-14"),
        Transfer("older-to-resnet", ("LeNet",), "ResNet-8"),
        Transfer("wider", ("LeNet",), "LeNet-x2"),
    ),
)

# The default: one run per configuration, as the authors (no seed twins): 16 learning rates
# spaced evenly in log scale from 1e-4 to 10**-0.5 x 4 dropouts = 64 networks per population, all
# with seed 0. Batch 128, SGD with momentum 0.9, at most 15 epochs, early stopping (patience 5)
# only after a burn-in of 10 epochs, t up to 9. Widths shrink the authors' networks for 16x16 digits
# so that the whole profile trains in about 10 minutes on 2 cores (benchmarks/bench_train.py).
_DIGIT_LRS = tuple(float(f"{10 ** (-4 + 3.5 * i / 15):.3g}") for i in range(16))
_DIGIT_GRID = Grid(lrs=_DIGIT_LRS, dropouts=(0.0, 0.25, 0.5, 0.75), seeds=(0,))

DEFAULT = Profile(
    name="default",
    description="the embedded default: digits, the authors' five architectures (shrunk), 64 networks each",
    populations=tuple(
        Population(arch, model, "digits", 50.0, _DIGIT_GRID, epochs=15, t_max=9, model_kwargs=kw)
        for arch, model, kw in [
            ("LeNet", "lenet", {"width": 1.0}),
            ("AlexNet", "alexnet", {"width": 0.25, "init": "he"}),  # see paperlib.train.models: init
            ("VGG", "vgg", {"width": 0.25, "init": "he"}),
            ("ResNet-20", "resnet_cifar", {"depth": 20, "width": 0.25}),
            ("ResNet-32", "resnet_cifar", {"depth": 32, "width": 0.25}),
            ("LeNet-x2", "lenet", {"width": 2.0}),
        ]
    ),
    image_size={"digits": 16},
    burn_in=10,
    transfers=(
        Transfer("deeper", ("ResNet-20",), "ResNet-32"),
        Transfer("older-to-resnet", ("LeNet", "AlexNet", "VGG"), "ResNet-20"),
        Transfer("wider", ("LeNet",), "LeNet-x2"),
    ),
)

# The paper's scale, as the authors launched it (scripts/run_gendata_driver-2.sh): learning rates
# {3, 3.5} x {1e-6, ..., 1e-1} (12 values) x dropout 0.0, 0.1, ..., 0.9, one run per configuration,
# SGD momentum 0.9, batch 128, their augmentation and normalisation, at most 50 epochs for
# LeNet/AlexNet/VGG and 120 for the ResNets (Table 1), early stopping after a burn-in of 10 epochs.
# Tiny-ImageNet at its native 64x64 resolution (the authors' resolution cannot be read from their code).
_PAPER_LRS = tuple(float(f"{m * 10.0 ** e:.3g}") for e in range(-6, 0) for m in (3.0, 3.5))
_PAPER_GRID = Grid(lrs=_PAPER_LRS, dropouts=tuple(round(0.1 * i, 1) for i in range(10)), seeds=(0,))
PAPER = Profile(
    name="paper",
    description="CIFAR-10 and Tiny-ImageNet at the paper's scale (needs the data and GPUs)",
    populations=(
        Population("LeNet", "lenet", "cifar10", 40.0, _PAPER_GRID, epochs=50, t_max=9),
        Population("AlexNet", "alexnet", "cifar10", 40.0, _PAPER_GRID, epochs=50, t_max=9),
        Population("VGG", "vgg", "cifar10", 40.0, _PAPER_GRID, epochs=50, t_max=9),
        Population("ResNet-32", "resnet_cifar", "cifar10", 40.0, _PAPER_GRID, epochs=120, t_max=9,
                   model_kwargs={"depth": 32}),
        Population("ResNet-44", "resnet_cifar", "cifar10", 40.0, _PAPER_GRID, epochs=120, t_max=9,
                   model_kwargs={"depth": 44}),
        Population("LeNet-IN", "lenet", "tiny-imagenet", 9.0, _PAPER_GRID, epochs=50, t_max=9),
        Population("AlexNet-IN", "alexnet", "tiny-imagenet", 10.0, _PAPER_GRID, epochs=50, t_max=9),
        Population("ResNet-34", "resnet34", "tiny-imagenet", 25.0, _PAPER_GRID, epochs=120, t_max=9),
        Population("ResNet-50", "resnet50", "tiny-imagenet", 25.0, _PAPER_GRID, epochs=120, t_max=9),
    ),
    image_size={"cifar10": 32, "tiny-imagenet": 64},
    burn_in=10,
    transfers=(
        Transfer("deeper", ("ResNet-32",), "ResNet-44"),
        Transfer("deeper-IN", ("ResNet-34",), "ResNet-50"),
        Transfer("older-to-resnet", ("LeNet", "AlexNet", "VGG"), "ResNet-32"),
    ),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (SMOKE, DEFAULT, PAPER)}


def _imported_profiles() -> dict[str, Profile]:
    """Profiles of imported populations, from profile files (:mod:`paperlib.sources.profile_file`)."""
    from .sources import profile_file

    return profile_file.load_all(set(PROFILES))


PROFILES.update(_imported_profiles())


def get_profile(name: str, **overrides: Any) -> Profile:
    """The profile called ``name``, with optional field overrides (see ``Profile.with_overrides``)."""
    try:
        profile = PROFILES[name]
    except KeyError:
        from .sources.profile_file import ERRORS

        broken = "".join(f"; profile file with errors: {e}" for e in ERRORS.values())
        raise KeyError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}{broken}") from None
    return profile.with_overrides(**overrides) if overrides else profile


def as_profile(profile: Profile | str) -> Profile:
    """A :class:`Profile` from a profile or its name."""
    return get_profile(profile) if isinstance(profile, str) else profile


def save_overrides(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Record the effective overrides of profile ``name`` (those that change a value); return them."""
    from . import files

    kept = {k: v for k, v in overrides.items() if v not in (0, "", None) or isinstance(v, bool)}
    get_profile(name, **dict(kept))  # refuse what would not build
    files.write_overrides(name, kept)
    return kept


def load_overrides(name: str) -> dict[str, Any]:
    """The recorded overrides of profile ``name`` (``{}`` when none were recorded)."""
    from . import files

    return files.read_overrides(name)


def effective_profile(name: str) -> Profile:
    """The profile ``name`` as the training notebook last ran it: the code's definition plus the
    overrides recorded in ``results/<name>/overrides.json`` (see :func:`save_overrides`)."""
    return get_profile(name, **load_overrides(name))
