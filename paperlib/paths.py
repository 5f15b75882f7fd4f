"""Every path the project reads or writes, in one place.

Notebooks and library code never build paths from the working directory; they ask
this module. Environment variables move parts of the project elsewhere:

``PAPERLIB_ROOT``
    where the outputs go: ``results/`` and ``figures/`` are read and written under it (default:
    the checkout this ``paperlib`` was imported from, :data:`CODE`). It may be an empty folder:
    the notebooks (``notebooks/``) and the published tables (``results/published/``) are read
    from the root when it has them, else from :data:`CODE` (the installed project). The tests
    run the pipeline in a temporary root this way, so they never touch the repository's
    ``results/`` or ``figures/``. The code itself always comes from :data:`CODE`.
``PAPERLIB_DATA``
    root of the datasets (CIFAR-10, Tiny-ImageNet); default ``<root>/data``.
``PAPERLIB_STORE``
    root of the run stores (trained snapshots, cached centralities); default
    ``<root>/results/<profile>/store``. Point it at a shared file system when training runs
    on a cluster.

The variables are read once, when this module is imported; a process that needs another
root sets them before importing ``paperlib`` (the pipeline runner passes them on to the
notebooks' kernels).

What is committed and what is not: ``results/<profile>/`` holds the small tidy outputs
(CSV, JSON, Markdown) and the compact intermediate data a fresh clone needs to rerun the
steps after the graph computations (``features/<arch>.npz`` and ``q3_snapshots/<arch>.pt``);
the run store under it is ignored by git.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CODE = Path(__file__).resolve().parents[1]  # the checkout that holds this paperlib
ROOT = Path(os.environ["PAPERLIB_ROOT"]).resolve() if os.environ.get("PAPERLIB_ROOT") else CODE


def _root_or_code(sub: str) -> Path:
    """``ROOT/sub`` when the root has it, else ``CODE/sub``: what the project brings, not what it writes."""
    return ROOT / sub if (ROOT / sub).is_dir() else CODE / sub


NOTEBOOKS = _root_or_code("notebooks")
RESULTS = ROOT / "results"
FIGURES = ROOT / "figures"
PUBLISHED = _root_or_code("results/published")  # the paper's published numbers, transcribed (CSV)
FINGERPRINTS = CODE / "results" / "fingerprints"  # primitives of the CPUs the committed results were verified on
EXECUTED = RESULTS / "executed"  # executed notebooks, one folder per profile


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is missing from the data root, or its files are not in the expected format
    (raised by :mod:`paperlib.train.data` and :mod:`paperlib.train.fashion_mnist`)."""


def data_root() -> Path:
    """Root folder of the datasets (``$PAPERLIB_DATA`` or ``<root>/data``)."""
    return Path(os.environ.get("PAPERLIB_DATA", ROOT / "data"))


def results_dir(profile: str) -> Path:
    """Small, tidy outputs of a profile (CSV, JSON, Markdown): ``results/<profile>``."""
    return RESULTS / profile


def figures_dir(profile: str) -> Path:
    """Figures of a profile: ``figures/<profile>``."""
    return FIGURES / profile


def base_profile(profile: str) -> str:
    """The profile a replicate name ``<profile>/r<k>`` belongs to (a profile name is its own base)."""
    return profile.split("/", 1)[0]


def store_dir(profile: str) -> Path:
    """Bulky intermediate files of a profile (snapshots, cached centralities).

    ``$PAPERLIB_STORE/<profile>`` when the variable is set, else
    ``results/<profile>/store`` (ignored by git). A population replicate ``<profile>/r<k>``
    (:meth:`paperlib.profile_types.Profile.replicate`) shares its profile's store: a run's key
    hashes its specification, seed included, so the replicates' runs never collide.
    """
    profile = base_profile(profile)
    env = os.environ.get("PAPERLIB_STORE")
    if env:
        return Path(env) / profile
    return results_dir(profile) / "store"


def runs_dir(profile: str) -> Path:
    """The run store: one directory per trained network."""
    return store_dir(profile) / "runs"


def safe_name(name: str) -> str:
    """A file-name-safe form of an architecture's display name (``"LeNet-x2"`` stays, spaces become ``_``).

    Examples
    --------
    >>> safe_name("ResNet-20"), safe_name("My net/2")
    ('ResNet-20', 'My_net_2')
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def features_dir(profile: str) -> Path:
    """Committed per-population feature arrays: ``results/<profile>/features`` (one ``<arch>.npz`` each)."""
    return results_dir(profile) / "features"


def q3_snapshots_dir(profile: str) -> Path:
    """Committed snapshots that Q3 times, one per architecture: ``results/<profile>/q3_snapshots``."""
    return results_dir(profile) / "q3_snapshots"


def overrides_path(profile: str) -> Path:
    """Profile overrides the training notebook ran with: ``results/<profile>/overrides.json``."""
    return results_dir(profile) / "overrides.json"


def executed_dir(profile: str) -> Path:
    """Executed copies of the notebooks: ``results/executed/<profile>``."""
    return EXECUTED / profile


def manifest_path(profile: str) -> Path:
    """Provenance record of the pipeline runs of a profile."""
    return results_dir(profile) / "manifest.json"


def metrics_path(profile: str) -> Path:
    """Headline numbers the README and docs/results.md quote, written by the pipeline."""
    return results_dir(profile) / "metrics.json"


def relative(path: Path) -> str:
    """``path`` relative to the project root where it lies under it (for messages and records)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def ensure(path: Path) -> Path:
    """Create a directory (and parents) if missing; return it."""
    path.mkdir(parents=True, exist_ok=True)
    return path
