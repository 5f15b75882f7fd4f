"""Provenance: ``results/<profile>/manifest.json``, what ran, with what, where.

``results/<profile>/manifest.json`` records, per step, the latest run of it (so
``--only 04_q1`` updates the record of 04 and keeps the others), its parameters, start, end and
seconds, and for the latest invocation the effective profile (:func:`paperlib.profiles.
effective_profile`: the profile plus the overrides 01_train recorded), the command, git commit,
package versions, the lock's SHA-256 and whether the installed packages are the locked ones
(:func:`paperlib.lock.status`), and the machine with its CPU kernel class
(:func:`paperlib.kernels.isa_class`). Its ``status`` is ``running`` while the runner works, then ``ok``,
``failed`` or ``interrupted`` (Ctrl-C, SIGTERM, SIGHUP). A runner killed with SIGKILL cannot
write; :func:`read_manifest` reports such a record (``running``, but its process is gone) as
``interrupted``.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from .. import paths
from .inputs import _profile


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=paths.CODE, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance() -> dict[str, Any]:
    """Git commit, package versions, machine."""
    pkgs = ["torch", "torchvision", "numpy", "scipy", "networkx", "scikit-learn", "pandas",
            "matplotlib", "seaborn", "papermill", "dask", "paperlib"]
    versions = {}
    for p in pkgs:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            versions[p] = None
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # pragma: no cover - torch import problems are reported elsewhere
        pass
    from .. import kernels, lock

    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "python": sys.version.split()[0],
        "packages": versions,
        "lock": lock.status(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpu": kernels.cpu_model(),
            "cpu_count": os.cpu_count(),
            "gpu": gpu,
            "isa": kernels.isa_class(),
        },
    }


def _strip_machine_paths(path: Path) -> None:
    """Make an executed notebook speak only of the repository: paths relative to its root,
    the environment's prefix as ``<env>``."""
    text = path.read_text()
    pairs = [(sys.prefix, "<env>")]
    for root in {paths.ROOT, paths.CODE}:
        pairs += [(str(root) + os.sep, ""), (str(root), ".")]
    for prefix, repl in pairs:
        text = text.replace(prefix, repl)
    from ..files import atomic_write_text

    atomic_write_text(path, text)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _effective_spec(profile: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from .. import profiles

    overrides = profiles.load_overrides(profile) if hasattr(profiles, "load_overrides") else {}
    return _profile(profile).to_dict(), overrides

