"""Ray Tune experiment folders: the raw layout of the Model Zoos (Schuerholt et al., NeurIPS 2022 D&B).

``source = "raytune"`` in a profile file. ``path`` is an experiment folder (or a folder of them);
every folder at most two levels below it that holds a ``result.json`` is one trial, one network::

    <trial>/
      result.json              one JSON object per line: test_acc (a fraction), training_iteration,
                               config {"model::type", "model::nlin", "model::dropout", "model::init_type",
                               "optim::optimizer", "optim::lr", "optim::wd", "seed", ...},
                               optional train_loss / loss_train, time_this_iter_s
      checkpoint_<e>/          e zero-padded or not (checkpoint_000007, checkpoint_7)
        checkpoints            the network's state_dict (torch.save), read with weights_only=True

Epochs. The checkpoint folder's number is its epoch: Ray Tune names ``checkpoint_<n>`` by the
``training_iteration`` at which it was saved. The epoch of a result line is its ``epoch`` field
when it has one, else ``training_iteration + offset``. Two trainables are common:

* the Model Zoos' (``code/model_definitions/def_NN_experiment.py``): ``setup()`` sets
  ``self._iteration = -1``, so the first ``step()``, which evaluates the untrained network, is
  logged with ``training_iteration: 0`` and saved as ``checkpoint_000000``; epoch =
  ``training_iteration`` (their loader asserts it), offset 0;
* Ray's default (a ``step()`` that trains one epoch, then evaluates): iteration 1 is the first
  trained epoch, ``checkpoint_000001`` its weights, and epoch 0 has neither a line nor weights;
  offset 0 again.

The offset is derived from the data, never assumed: 0 unless the data rule it out, else -1 (one
line per checkpoint with the untrained epoch 0 logged as iteration 1, a layout some hand-written
trainables produce). A reading fits the data when ``training_iteration`` rises by one from line
to line, no line falls before epoch 0, and every checkpoint has its line (lines without a
checkpoint are allowed: a ragged trajectory). When neither offset fits, the trial is skipped
with an error naming ``result.json``. ``options.result_offset`` in the profile states the offset;
one that does not fit the data is refused with an error that names the file and both readings
(nothing is shifted silently). Accuracies are multiplied by ``options.accuracy_scale`` (100:
fractions to percent).

Hyperparameters. ``optim::lr``, ``model::dropout``, ``seed`` and ``optim::optimizer`` are the run's
lr, dropout, seed and optimizer; every other ``model::`` and ``optim::`` entry of ``config`` is part of
its configuration (see :func:`paperlib.sources.core.configuration`). ``where`` in the profile filters
on the ``config`` keys as written (``{"model::nlin" = "tanh"}``).

A missing checkpoint folder is a ragged trajectory (the run is decided from that epoch on); a
checkpoint folder without a ``checkpoints`` file, a result line without ``test_acc`` and an
unreadable ``result.json`` are errors that skip the trial.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from .core import MissingAccuracyError, MissingWeightsError, OptionError, RunRecord, RunRef, SourceError, \
    load_state_dict_file
from ..profile_files import ImportedPopulation

CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")
MAP = {"optim::lr": "lr", "model::dropout": "dropout", "seed": "seed", "optim::optimizer": "optimizer"}


def _trials(root: Path) -> list[Path]:
    if (root / "result.json").is_file():
        return [root]
    found = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if (d / "result.json").is_file():
            found.append(d)
        else:
            found += sorted(s for s in d.iterdir() if s.is_dir() and (s / "result.json").is_file())
    return found


def _lines(path: Path, run: str) -> list[dict[str, Any]]:
    out = []
    try:
        text = path.read_text()
    except OSError as exc:
        raise SourceError(path, run, f"not readable ({exc})") from exc
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise SourceError(path, run, f"line {i} is not JSON ({exc}); expected one JSON object per epoch") from exc
        if not isinstance(obj, dict):
            raise SourceError(path, run, f"line {i} is not a JSON object")
        out.append(obj)
    if not out:
        raise MissingAccuracyError(path, run, "is empty; expected one JSON line per epoch with test_acc")
    return out


def hparams_of(config: dict[str, Any]) -> dict[str, Any]:
    """The run's hyperparameters from a trial's ``config``: the four standard ones and every other
    ``model::`` / ``optim::`` entry."""
    out = {MAP[k]: v for k, v in config.items() if k in MAP}
    out.update({k: v for k, v in config.items() if k not in MAP and k.split("::")[0] in ("model", "optim")})
    return out


def _fits(iters: list[tuple[int, int]], checkpoints: set[int], offset: int) -> str | None:
    """Why reading ``training_iteration + offset`` as the epoch does not fit the data, or None."""
    epochs = {it + offset for _, it in iters}
    line, it = min(iters, key=lambda x: x[1])
    if it + offset < 0:
        return f"training_iteration {it} (line {line}) would be epoch {it + offset}"
    orphans = sorted(checkpoints - epochs)
    if orphans:
        return (f"checkpoint_{orphans[0]:06d} would have no result line (training_iteration "
                f"{orphans[0] - offset} is not in the file)")
    return None


def _reading(offset: int) -> str:
    if offset == 0:
        return ("offset 0 (epoch = training_iteration, as Ray names checkpoint_<n>; the Model Zoos' untrained "
                "epoch 0 is iteration 0)")
    return f"offset {offset} (epoch = training_iteration {offset:+d})"


def alignment(lines: list[dict[str, Any]], checkpoints: set[int], file: Path, run: str,
              stated: Any = None) -> int:
    """The offset from ``training_iteration`` to the epoch of ``result.json``'s lines (see the module docstring).

    ``stated`` is ``options.result_offset`` (None: derive it). Raises :class:`SourceError` naming
    ``file`` when the iterations are not consecutive, when no offset fits, or when the stated one
    does not fit (with both readings).

    Examples
    --------
    >>> alignment([{"training_iteration": i} for i in range(4)], {0, 1, 2, 3}, Path("result.json"), "t")
    0
    >>> alignment([{"training_iteration": i} for i in range(1, 5)], {0, 1, 2, 3}, Path("result.json"), "t")
    -1
    """
    iters = [(i, int(x["training_iteration"])) for i, x in enumerate(lines, 1)
             if "epoch" not in x and "training_iteration" in x]
    if not iters:
        return 0 if stated is None else int(stated)
    for (_, a), (line, b) in zip(iters, iters[1:]):
        if b != a + 1:
            raise SourceError(file, run, f"training_iteration is not consecutive: {b} on line {line} follows {a}; "
                              "expected one line per epoch of one trial (a restored trial logs its iterations "
                              "again: keep the lines of one run)")
    checkpoints = set(checkpoints) - {int(x["epoch"]) for x in lines if "epoch" in x}
    why = {o: _fits(iters, checkpoints, o) for o in (0, -1)}
    derived = 0 if why[0] is None else (-1 if why[-1] is None else None)
    if stated is not None:
        try:
            offset = int(stated)
        except (TypeError, ValueError):
            raise OptionError(file, run, f"options.result_offset = {stated!r} is not an integer") from None
        bad = why[offset] if offset in why else _fits(iters, checkpoints, offset)
        if bad is not None:
            data = (f"the data read {_reading(derived)}" if derived is not None
                    else "no offset fits the data either")
            raise OptionError(file, run, f"options.result_offset = {offset} contradicts the data: {bad}; "
                              f"{data}. Remove result_offset from the profile file (the import derives it)"
                              + (f" or set it to {derived}" if derived is not None else ""))
        return offset
    if derived is None:
        raise SourceError(file, run, f"result lines and checkpoints do not align: with {_reading(0)}, {why[0]}; "
                          f"with {_reading(-1)}, {why[-1]}; expected one line per checkpoint "
                          "(training_iteration of the line that logged it)")
    return derived


def list_runs(ip: ImportedPopulation) -> list[RunRef]:
    if not ip.path.is_dir():
        raise SourceError(ip.path, None, "no such folder; expected a Ray Tune experiment folder of trial folders")
    refs = []
    for trial in _trials(ip.path):
        config: dict[str, Any] = {}
        try:
            with open(trial / "result.json") as fh:
                first = fh.readline()
            config = dict(json.loads(first).get("config", {})) if first.strip() else {}
        except (OSError, ValueError, AttributeError):
            pass  # reported when the trial is read
        name = str(trial.relative_to(ip.path)) if trial != ip.path else trial.name
        wfiles = (trial / "result.json", *sorted(trial.glob("checkpoint_*/checkpoints")))
        refs.append(RunRef(name, trial, wfiles, hparams=config))
    return refs


def read_run(ref: RunRef, ip: ImportedPopulation) -> RunRecord:
    trial: Path = ref.location
    result = trial / "result.json"
    lines = _lines(result, ref.name)
    weights, wfiles = {}, {}
    for d in sorted(trial.iterdir()):
        m = CHECKPOINT.match(d.name)
        if not (m and d.is_dir()):
            continue
        e = int(m.group(1))
        f = d / "checkpoints"
        if not f.is_file():
            raise MissingWeightsError(d, ref.name, "checkpoint folder without its weights: expected a file "
                                      "'checkpoints' (a state_dict) in it", e)
        if e in weights:
            raise SourceError(d, ref.name, f"a second checkpoint folder of epoch {e} ({wfiles[e]})", e)
        weights[e] = (lambda f=f, e=e: load_state_dict_file(f, ref.name, e))
        wfiles[e] = str(f)
    if not weights:
        raise MissingWeightsError(trial, ref.name, "no checkpoint_<epoch> folder; expected one per epoch")
    scale = float(ip.options.get("accuracy_scale", 100.0))
    offset = alignment(lines, set(weights), result, ref.name, ip.options.get("result_offset"))
    acc, loss, secs = {}, {}, {}
    for i, x in enumerate(lines, 1):
        if "epoch" in x:
            e = int(x["epoch"])
        elif "training_iteration" in x:
            e = int(x["training_iteration"]) + offset
        else:
            raise SourceError(result, ref.name, f"line {i} has neither epoch nor training_iteration")
        if "test_acc" not in x:
            raise MissingAccuracyError(result, ref.name, f"line {i} has no test_acc (keys: {sorted(x)[:8]}...); "
                                       "expected the test accuracy of every epoch", e)
        v = x["test_acc"]
        acc[e] = float(v) * scale if isinstance(v, (int, float)) and v is not None else float("nan")
        lv = x.get("train_loss", x.get("loss_train"))
        if isinstance(lv, (int, float)):
            loss[e] = float(lv)
        t = x.get("time_this_iter_s")
        if isinstance(t, (int, float)) and math.isfinite(t):
            secs[e] = float(t)
    config = dict(lines[0].get("config", {}))
    return RunRecord(name=ref.name, hparams=hparams_of(config), accuracy=acc, weights=weights, weight_files=wfiles,
                     final_epoch=max(acc), loss=loss, seconds=secs, accuracy_file=str(result))
