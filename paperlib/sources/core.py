"""What every source hands the importer, and the named errors of bad input.

A source lists the networks of a population (:class:`RunRef`, cheap: names and files) and reads
one of them into a :class:`RunRecord`: its hyperparameters, its per-epoch test accuracies (and
losses and seconds where the source has them), and one loader per epoch that returns the weights
as a PyTorch state_dict. Weights are loaded one epoch at a time by the importer, never all at once.

Every problem with the input is a :class:`SourceError` (or a subclass) that names the file, the run
(the source's own name for the network), the epoch where it applies and what was expected. The
importer catches these per run: the run is listed as skipped and the others are imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

#: bump when a change to the importer changes what it writes for the same input
IMPORT_VERSION = 1


class SourceError(ValueError):
    """Bad input of a source: names the file, the run, the epoch (where it applies) and what was expected."""

    def __init__(self, file: Path | str, run: str | None, problem: str, epoch: int | None = None):
        self.file, self.run, self.epoch, self.problem = str(file), run, epoch, problem
        where = f"{file}"
        if run is not None:
            where += f" (run {run}"
            where += f", epoch {epoch})" if epoch is not None else ")"
        elif epoch is not None:
            where += f" (epoch {epoch})"
        super().__init__(f"{where}: {problem}")


class StateDictMismatch(SourceError):
    """A state_dict that does not fit the declared model: missing or extra keys, or wrong shapes."""


class LayoutError(SourceError):
    """A weights layout (e.g. ``layout.csv``) that does not describe the rows it should."""


class MissingAccuracyError(SourceError):
    """A table of results without the test accuracy the importer needs."""


class OptionError(SourceError):
    """A profile option that contradicts the data (e.g. a Ray Tune ``result_offset``): the import stops
    instead of skipping network after network."""


class MissingWeightsError(SourceError):
    """An epoch folder or entry that should hold weights and does not."""


@dataclass(frozen=True)
class RunRef:
    """One network of a source, before anything heavy is read."""

    name: str  # the source's own id of the network (trial folder, run folder, modeldir)
    location: Any  # what the source needs to read it (a folder, a list of row indices)
    files: tuple[Path, ...] = ()  # files whose size and mtime fingerprint the run
    hparams: dict[str, Any] = field(default_factory=dict)  # what ``where`` filters on (cheap to read)


@dataclass
class RunRecord:
    """One network as read from a source (see the module docstring).

    ``accuracy``: test accuracy in percent by epoch (NaN where the source recorded a non-finite
    value); ``loss`` and ``seconds`` where known. ``weights``: epoch -> loader of a state_dict, and
    ``weight_files``: epoch -> the file (or file and row) it reads, for messages. ``final_epoch``
    is the last epoch the source trained; its accuracy is the final accuracy.
    """

    name: str
    hparams: dict[str, Any]  # lr, dropout, seed, optimizer, and the source's other hyperparameters
    accuracy: dict[int, float]
    weights: dict[int, Callable[[], dict[str, Any]]]
    weight_files: dict[int, str]
    final_epoch: int
    loss: dict[int, float] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)
    accuracy_file: str = ""


STANDARD = ("lr", "dropout", "seed", "optimizer")


def _num(value: Any, default: float = float("nan")) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out


def standard_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """``lr``, ``dropout``, ``seed``, ``optimizer`` (NaN, NaN, -1, "" where the source has none)."""
    seed = hparams.get("seed")
    return {"lr": _num(hparams.get("lr")), "dropout": _num(hparams.get("dropout"), 0.0),
            "seed": int(seed) if isinstance(seed, (int, float)) and math.isfinite(seed) else -1,
            "optimizer": str(hparams.get("optimizer", ""))}


def configuration(hparams: dict[str, Any], run: str | None = None) -> str:
    """The ``optimizer`` column of an imported run: the optimizer, then every other hyperparameter but
    the seed (``k=v``, sorted), so that a configuration group is the source's configuration; with
    ``run`` the network's own name is added and every network is a group of its own.

    Examples
    --------
    >>> configuration({"optimizer": "adam", "lr": 0.1, "seed": 3, "activation": "tanh", "wd": 0.001})
    'adam; activation=tanh; wd=0.001'
    """
    rest = sorted((k, v) for k, v in hparams.items() if k not in STANDARD)
    parts = [str(hparams.get("optimizer", ""))] + [f"{k}={v}" for k, v in rest]
    if run is not None:
        parts.append(f"run={run}")
    return "; ".join(parts)


def check_state_dict(model: torch.nn.Module, state: Any, file: str, run: str, epoch: int) -> dict[str, torch.Tensor]:
    """``state`` as float tensors with exactly the keys and shapes of ``model.state_dict()``.

    Raises :class:`StateDictMismatch` naming the file, run and epoch, and listing the missing keys,
    the extra keys and the keys of the wrong shape (at most five of each).
    """
    if not isinstance(state, dict):
        raise StateDictMismatch(file, run, f"expected a state_dict (a dict of tensors), found {type(state).__name__}",
                                epoch)
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shapes = [f"{k}: {tuple(getattr(state[k], 'shape', ()))} instead of {tuple(want[k].shape)}"
              for k in want if k in state and tuple(getattr(state[k], "shape", ())) != tuple(want[k].shape)]
    if missing or extra or shapes:
        parts = []
        for label, items in (("missing keys", missing), ("extra keys", extra), ("wrong shapes", shapes)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{label} {items[:5]}{more}")
        raise StateDictMismatch(file, run, f"does not fit model {type(model).__name__} "
                                f"(expected keys {list(want)[:4]}...): " + "; ".join(parts), epoch)
    return {k: torch.as_tensor(state[k]).detach().to(want[k].dtype).cpu().contiguous() for k in want}


def finite(state: dict[str, torch.Tensor]) -> bool:
    """Whether every floating-point tensor of a state_dict is finite."""
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def load_state_dict_file(path: Path, run: str, epoch: int) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; an unreadable file is a :class:`SourceError` naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MissingWeightsError(path, run, "weights file is missing", epoch) from None
    except Exception as exc:  # zip/pickle errors differ by torch version
        raise SourceError(path, run, f"not a readable state_dict ({type(exc).__name__}: {exc}); expected a file "
                          "written by torch.save(model.state_dict())", epoch) from exc
