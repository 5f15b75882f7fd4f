"""The exact environment: ``requirements-lock.txt``, what it pins, and whether it is what runs.

``pyproject.toml`` declares the dependencies with floors (for people who use ``paperlib`` as a
library); ``requirements-lock.txt`` pins every package, direct and transitive, to one version
with its SHA-256 hashes, for CPython 3.11 on Linux x86-64. It is generated from
``pyproject.toml`` (with the ``test`` and ``browser`` extras) by ``uv pip compile`` and refreshed with ``make
lock``; ``make reproduce``, ``make test`` and ``make verify`` install from it
(``pip install --require-hashes --no-deps``). The manifest of every pipeline run records the
lock's SHA-256 and whether the installed packages are the locked ones (:func:`status`).

Examples
--------
>>> pins = parse("numpy==2.4.6 \\\\\\n    --hash=sha256:00\\n# a comment\\nscipy==1.17.1\\n")
>>> pins
{'numpy': '2.4.6', 'scipy': '1.17.1'}
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from pathlib import Path
from typing import Any

from . import paths

LOCK = "requirements-lock.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def normalise(name: str) -> str:
    """A distribution name in PEP 503 normal form (``Scikit_Learn`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(text: str) -> dict[str, str]:
    """``{name: version}`` of every ``name==version`` line of a requirements file."""
    pins = {}
    for line in text.splitlines():
        m = _PIN.match(line.strip())
        if m:
            pins[normalise(m.group(1))] = m.group(2)
    return pins


def lock_path() -> Path:
    return paths.CODE / LOCK


def pins() -> dict[str, str]:
    """The lock's pins; FileNotFoundError names the file and the command that makes it."""
    path = lock_path()
    if not path.exists():
        raise FileNotFoundError(f"{LOCK} is missing: restore it with git, or make it with `make lock`")
    return parse(path.read_text())


def sha256() -> str | None:
    path = lock_path()
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def mismatches() -> dict[str, Any]:
    """Locked packages whose installed version differs: ``{name: [locked, installed or None]}``."""
    out = {}
    for name, version in pins().items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = None
        if have != version:
            out[name] = [version, have]
    return out


def status() -> dict[str, Any]:
    """What the manifest records: the lock's file and SHA-256, and whether it is what is installed."""
    try:
        wrong = mismatches()
    except FileNotFoundError:
        return {"file": LOCK, "sha256": None, "installed_matches": False, "mismatches": "no lock file"}
    return {"file": LOCK, "sha256": sha256(), "installed_matches": not wrong,
            "mismatches": dict(sorted(wrong.items())[:20])}
