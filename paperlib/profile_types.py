"""The fields of a profile: plain frozen dataclasses, checked when built.

Early stopping and the information horizon. As in the authors' code, early stopping (patience
``patience`` on test accuracy) may only stop a run at an epoch after ``burn_in``. Every ``t`` a
predictor uses must lie before every possible stop, so a profile whose ``t_max`` is at or above its
``burn_in`` is refused when it is built (:class:`Profile` raises ``ValueError`` naming the fields).
For ``paper`` this caps ``t`` at 9 for every population, where the paper shows AlexNet and others
up to t=14: beyond the burn-in a stopped network could enter the data.

Overrides. :meth:`Profile.with_overrides` treats 0, ``""`` and ``None`` as "keep the profile's
value" for every field. The training notebook records the overrides it ran with in
``results/<profile>/overrides.json`` (:func:`paperlib.profiles.save_overrides`); every later notebook, the runner and
the manifest read the profile through :func:`paperlib.profiles.effective_profile`, so what ran is what is recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any


DEVICES = ("auto", "cpu", "cuda")
REPLICATE_SEP = "/r"  # replicate r >= 1 of profile "default" is named "default/r1" (results/default/r1/)


def replicate_seed(seed: int, replicate: int) -> int:
    """The training seed that grid seed ``seed`` becomes in population replicate ``replicate``.

    Replicate 0 keeps ``seed`` (today's population, whose runs the store already holds). Replicate
    r >= 1 takes the first 4 bytes of SHA-256("paperlib-replicate:<r>:<seed>") below 2**31, read
    big-endian: fixed by (seed, r) alone, on every machine and Python version, and unrelated to the
    small seeds a grid uses (a collision with another seed of the grid is refused by
    :meth:`Profile.replicate`).
    """
    if replicate < 0:
        raise ValueError(f"replicate={replicate} must be >= 0")
    if replicate == 0:
        return int(seed)
    digest = hashlib.sha256(f"paperlib-replicate:{int(replicate)}:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2**31


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
    replicates: int = 1  # populations trained over the same grid with seeds derived per replicate (see replicate)

    def __post_init__(self) -> None:
        problems = []
        for name, lo in (("batch_size", 1), ("patience", 1), ("burn_in", 0), ("n_folds", 2), ("workers", 1),
                         ("threads", 1), ("runs_per_device", 1), ("replicates", 1)):
            if getattr(self, name) < lo:
                problems.append(f"{name}={getattr(self, name)} must be >= {lo}")
        if self.device not in DEVICES:
            problems.append(f"device={self.device!r} must be one of {DEVICES}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision={self.precision!r} must be one of {PRECISIONS}")
        if not self.populations:
            problems.append("populations is empty: a profile needs at least one population")
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

    def replicate(self, r: int) -> "Profile":
        """Population replicate ``r`` of this profile (``0 <= r < replicates``).

        Replicate 0 is the profile itself: same name, same seeds, so its runs are the ones already in
        the store. Replicate r >= 1 trains the same grid with every seed replaced by
        :func:`replicate_seed` ``(seed, r)``; it is named ``<name>/r<r>``, so its results lie under
        ``results/<name>/r<r>/`` while its runs share the profile's store (:func:`paperlib.paths.store_dir`).
        Each replicate is a profile of one replicate (``replicates=1``).
        """
        if not 0 <= r < self.replicates:
            raise ValueError(f"profile {self.name!r}: replicate {r} is not in 0..{self.replicates - 1}")
        if r == 0:
            return self
        pops = []
        for pop in self.populations:
            seeds = tuple(replicate_seed(s, r) for s in pop.grid.seeds)
            clash = set(seeds) & set(pop.grid.seeds)
            if clash or len(set(seeds)) != len(seeds):
                raise ValueError(f"profile {self.name!r}, population {pop.arch}: replicate {r} seeds {seeds} "
                                 f"collide with the grid's seeds {pop.grid.seeds}")
            pops.append(dataclasses.replace(pop, grid=dataclasses.replace(pop.grid, seeds=seeds)))
        return dataclasses.replace(self, name=f"{self.name}{REPLICATE_SEP}{r}", populations=tuple(pops),
                                   description=f"{self.description} (replicate {r})", replicates=1)

    def replicate_profiles(self) -> list["Profile"]:
        """Every replicate of this profile, replicate 0 (the profile itself) first."""
        return [self.replicate(r) for r in range(self.replicates)]

    def with_overrides(self, **overrides: Any) -> "Profile":
        """A copy with profile fields replaced; ``epochs`` and ``t_max`` apply to every population.

        ``populations`` replaces the tuple of populations (``epochs``/``t_max`` then apply to the new ones).
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
        pops = overrides.pop("populations", self.populations)
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
