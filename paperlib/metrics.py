"""Headline numbers, written by the pipeline into ``results/<profile>/metrics.json``.

Each notebook updates its own section; the README quotes this file, never typed numbers.
"""

from __future__ import annotations

from typing import Any

from . import paths
from .store import atomic_write_json, read_json


def read_metrics(profile: str) -> dict[str, Any]:
    path = paths.metrics_path(profile)
    return read_json(path) if path.exists() else {}


def update_metrics(profile: str, section: str, values: dict[str, Any]) -> dict[str, Any]:
    """Replace ``section`` of the profile's metrics file with ``values``; return the whole file."""
    metrics = read_metrics(profile)
    metrics[section] = values
    paths.ensure(paths.results_dir(profile))
    atomic_write_json(paths.metrics_path(profile), metrics)
    return metrics
