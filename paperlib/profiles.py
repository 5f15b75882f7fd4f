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
    width-transfer experiment; two population replicates: replicate 1 retrains the grid with
    seeds derived from the replicate (:meth:`Profile.replicate`), so that Table 2 marks only what
    holds in both and measures how far a cell moves between them (the noise floor).
``paper``
    the paper's scale: CIFAR-10 and Tiny-ImageNet, the paper's architectures and
    epochs and its Table 1 thresholds. Needs the datasets under ``PAPERLIB_DATA`` and,
    realistically, GPUs or a cluster (see ``docs/paper-scale.md``).
``fmnist``, ``fmnist-full``
    Fashion-MNIST: the paper's protocol on real images, and at full size;
    defined and sized in :mod:`paperlib.profiles_fmnist`.

Thresholds of ``default`` and ``smoke`` are ours (the paper has no digits setting):
50% final test accuracy for ``default``, the middle of the chance-to-perfect range for 10
classes; 30% for ``smoke``, whose networks train for only 4 epochs on 384 images and would
otherwise leave some populations with a single "high" network.

The fields of a profile and their checks are :mod:`paperlib.profile_types`; profile files of
imported populations are :mod:`paperlib.profile_files`.
"""

from __future__ import annotations

from typing import Any

from . import files, profile_files
from .profile_types import DEVICES, PRECISIONS, Grid, Population, Profile, Transfer  # noqa: F401  (the types, here too)

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
    fold_seeds=(0,),  # one split of 3 folds: the tests check what 04-07 write, not its spread
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
    # two population replicates (the grid retrained with seeds derived per replicate): what moves
    # between them is the noise floor printed beside Table 2; each costs about an hour of 01 on 2 cores
    replicates=2,
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

from .profiles_fmnist import FMNIST, FMNIST_FULL  # noqa: E402  (Fashion-MNIST: see that module)

PROFILES: dict[str, Profile] = {p.name: p for p in (SMOKE, DEFAULT, PAPER, FMNIST, FMNIST_FULL)}


def _imported_profiles() -> dict[str, Profile]:
    """Profiles of imported populations, from profile files (:mod:`paperlib.profile_files`)."""
    return profile_files.load_all(set(PROFILES))


PROFILES.update(_imported_profiles())


def get_profile(name: str, **overrides: Any) -> Profile:
    """The profile called ``name``, with optional field overrides (see ``Profile.with_overrides``)."""
    try:
        profile = PROFILES[name]
    except KeyError:
        broken = "".join(f"; profile file with errors: {e}" for e in profile_files.ERRORS.values())
        raise KeyError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}{broken}") from None
    return profile.with_overrides(**overrides) if overrides else profile


def as_profile(profile: Profile | str) -> Profile:
    """A :class:`Profile` from a profile or its name."""
    return get_profile(profile) if isinstance(profile, str) else profile


def save_overrides(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Record the effective overrides of profile ``name`` (those that change a value); return them."""
    kept = {k: v for k, v in overrides.items() if v not in (0, "", None) or isinstance(v, bool)}
    get_profile(name, **dict(kept))  # refuse what would not build
    files.write_overrides(name, kept)
    return kept


def load_overrides(name: str) -> dict[str, Any]:
    """The recorded overrides of profile ``name`` (``{}`` when none were recorded)."""
    return files.read_overrides(name)


def effective_profile(name: str) -> Profile:
    """The profile ``name`` as the training notebook last ran it: the code's definition plus the
    overrides recorded in ``results/<name>/overrides.json`` (see :func:`save_overrides`)."""
    return get_profile(name, **load_overrides(name))
