"""The run store: one directory per trained network, keyed by a hash of its specification.

Layout of a run directory ``<runs_dir>/<key>/``::

    spec.json            the full specification (what the key hashes)
    meta.json            status, per-epoch history, early-stopping epoch, final accuracy
    snap_000.pt          weights at initialisation (epoch 0)
    snap_001.pt ...      weights after every epoch (a state_dict of tensors)
    resume.pt            optimizer and RNG state after the last complete epoch (while training)
    *.npz                caches derived from the snapshots (centralities, ...)

Every file is written atomically (temporary file in the same directory, then
``os.replace``, by :func:`paperlib.files.atomic_write_bytes`), so a killed process leaves either
the old file or the new one. Files get the
permissions of an ordinary ``open()`` (``0o666`` less the process umask, so ``0o644`` under the
usual umask 022): a group sharing a store can read it (``tempfile.mkstemp`` alone would leave
them ``0o600``).

Every snapshot's size and SHA-256 are returned by :meth:`Run.save_snapshot` and kept in the run's
``meta.json`` by the trainer; :meth:`Run.check_snapshots` compares the files with them, so a
missing, truncated or altered snapshot of a finished run is found before anything reads it.
Snapshots are read with ``torch.load(weights_only=True)``: nothing but tensors and
plain containers is ever unpickled. A file that cannot be read raises
:class:`CorruptFileError`, which names the file.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Iterator

import torch

from ..files import CorruptFileError, atomic_write_bytes, atomic_write_json, read_json


def spec_key(spec: dict[str, Any]) -> str:
    """Stable 16-hex-digit key of a JSON-serialisable specification."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_tensors(path: Path, obj: Any) -> dict[str, Any]:
    """``torch.save`` a dict of tensors (and plain values) atomically; return its size and SHA-256."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    blob = buf.getvalue()
    atomic_write_bytes(path, blob)
    return {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}


def file_digest(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a file (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            n += len(block)
    return {"bytes": n, "sha256": h.hexdigest()}


def load_tensors(path: Path) -> Any:
    """``torch.load(weights_only=True)``; a truncated or corrupt file raises CorruptFileError naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such snapshot")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle errors differ by torch version
        raise CorruptFileError(
            f"{path}: corrupt or truncated file ({type(exc).__name__}: {exc}); "
            "delete it (or the run directory) and re-run to retrain"
        ) from exc


class Run:
    """One trained (or training) network in the store."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.key = self.dir.name

    def __repr__(self) -> str:
        return f"Run({self.dir})"

    # -- specification and metadata
    @property
    def spec(self) -> dict[str, Any]:
        return read_json(self.dir / "spec.json")

    @property
    def meta_path(self) -> Path:
        return self.dir / "meta.json"

    def meta(self) -> dict[str, Any]:
        """Status and history; ``{}`` for a run that has not written any yet."""
        if not self.meta_path.exists():
            return {}
        return read_json(self.meta_path)

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write_json(self.meta_path, meta)

    @property
    def finished(self) -> bool:
        return self.meta().get("status") in {"finished", "diverged"}

    # -- snapshots
    def snapshot_path(self, epoch: int) -> Path:
        return self.dir / f"snap_{epoch:03d}.pt"

    def save_snapshot(self, epoch: int, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Write snapshot ``epoch`` (tensors moved to the CPU); return ``{"bytes", "sha256"}``."""
        return save_tensors(self.snapshot_path(epoch),
                            {k: v.detach().cpu().clone() for k, v in state_dict.items()})

    def check_snapshots(self, records: dict[str, dict[str, Any]], checksums: bool = True) -> list[str]:
        """Problems of the snapshots against ``records`` (``{"<epoch>": {"bytes", "sha256"}}``).

        Every recorded snapshot must exist with the recorded size and, when ``checksums``,
        the recorded SHA-256. Returns one message per problem (``[]``: intact).
        """
        problems = []
        for epoch, rec in sorted(records.items(), key=lambda kv: int(kv[0])):
            path = self.snapshot_path(int(epoch))
            if not path.is_file():
                problems.append(f"{path}: missing")
                continue
            size = path.stat().st_size
            if size != rec["bytes"]:
                problems.append(f"{path}: {size} bytes, {rec['bytes']} written")
            elif checksums and file_digest(path)["sha256"] != rec["sha256"]:
                problems.append(f"{path}: SHA-256 differs from the one written")
        return problems

    def load_snapshot(self, epoch: int) -> dict[str, torch.Tensor]:
        return load_tensors(self.snapshot_path(epoch))

    def snapshot_epochs(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in self.dir.glob("snap_*.pt"))

    # -- derived caches next to the run
    def cache_path(self, name: str) -> Path:
        return self.dir / f"{name}.npz"


class RunStore:
    """A directory of runs keyed by :func:`spec_key` of their specification."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunStore({self.root})"

    def run(self, spec: dict[str, Any]) -> Run:
        """The run of ``spec``, creating its directory and ``spec.json`` if new."""
        run = Run(self.root / spec_key(spec))
        if not (run.dir / "spec.json").exists():
            atomic_write_json(run.dir / "spec.json", spec)
        return run

    def get(self, key: str) -> Run:
        run = Run(self.root / key)
        if not (run.dir / "spec.json").exists():
            raise FileNotFoundError(f"{run.dir}: no run with key {key} in the store")
        return run

    def __iter__(self) -> Iterator[Run]:
        if not self.root.exists():
            return iter(())
        return iter(Run(d) for d in sorted(self.root.iterdir()) if (d / "spec.json").exists())
