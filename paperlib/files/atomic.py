"""Atomic writes (temporary file + ``os.replace``) and the JSON / ``.npz`` primitives every file uses.

A killed process leaves the old file or the new one, never half of one; files get the permissions of
an ordinary ``open()`` (``0o644`` under the usual umask).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


class CorruptFileError(RuntimeError):
    """A file is truncated, corrupt or of the wrong kind."""


# --------------------------------------------------------------------------- atomic writes
_UMASK: int | None = None


def _file_mode() -> int:
    """``0o666`` less the process umask (read once; ``os.umask`` can only be read by setting it)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``; mode ``0o666 & ~umask``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON (indented, keys sorted, numpy scalars as numbers), written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, default=_json_default) + "\n").encode())


def read_json(path: Path) -> Any:
    """A JSON file; a corrupt one raises :class:`CorruptFileError` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{path}: corrupt JSON ({exc}); delete the file to recompute it") from exc


def save_npz(path: Path, compressed: bool = False, **arrays: np.ndarray) -> None:
    """Arrays as an ``.npz`` (compressed or not), written atomically."""
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (no pickles); a corrupt file raises :class:`CorruptFileError`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"{path}: corrupt or truncated file ({exc}); delete it to recompute") from exc

