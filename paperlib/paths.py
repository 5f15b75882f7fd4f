"""Every path the project reads or writes, in one place.

Notebooks and library code never build paths from the working directory; they ask
this module. Two environment variables move the bulky parts elsewhere:

``PAPERLIB_DATA``
    root of the datasets (CIFAR-10, Tiny-ImageNet); default ``<repo>/data``.
``PAPERLIB_STORE``
    root of the run stores (trained snapshots, cached centralities and features);
    default ``<repo>/results/<profile>/store``. Point it at a shared file system
    when training runs on a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "results"
FIGURES = ROOT / "figures"
PUBLISHED = RESULTS / "published"  # the paper's published numbers, transcribed (CSV)
EXECUTED = RESULTS / "executed"  # executed notebooks, one folder per profile


def data_root() -> Path:
    """Root folder of the datasets (``$PAPERLIB_DATA`` or ``<repo>/data``)."""
    return Path(os.environ.get("PAPERLIB_DATA", ROOT / "data"))


def results_dir(profile: str) -> Path:
    """Small, tidy outputs of a profile (CSV, JSON, Markdown): ``results/<profile>``."""
    return RESULTS / profile


def figures_dir(profile: str) -> Path:
    """Figures of a profile: ``figures/<profile>``."""
    return FIGURES / profile


def store_dir(profile: str) -> Path:
    """Bulky intermediate files of a profile (snapshots, centralities, features).

    ``$PAPERLIB_STORE/<profile>`` when the variable is set, else
    ``results/<profile>/store`` (ignored by git).
    """
    env = os.environ.get("PAPERLIB_STORE")
    if env:
        return Path(env) / profile
    return results_dir(profile) / "store"


def runs_dir(profile: str) -> Path:
    """The run store: one directory per trained network."""
    return store_dir(profile) / "runs"


def executed_dir(profile: str) -> Path:
    """Executed copies of the notebooks: ``results/executed/<profile>``."""
    return EXECUTED / profile


def manifest_path(profile: str) -> Path:
    """Provenance record of the last pipeline run of a profile."""
    return results_dir(profile) / "manifest.json"


def metrics_path(profile: str) -> Path:
    """Headline numbers the README quotes, written by the pipeline."""
    return results_dir(profile) / "metrics.json"


def ensure(path: Path) -> Path:
    """Create a directory (and parents) if missing; return it."""
    path.mkdir(parents=True, exist_ok=True)
    return path
