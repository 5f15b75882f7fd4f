"""Profile files: an imported population described as plain data (TOML or JSON).

A profile file makes a profile like those of :mod:`paperlib.profiles`, whose populations come from
checkpoints that exist already instead of from training. It is found by name (its ``name`` field)
in ``<root>/profiles/`` and in the files or folders listed in ``$PAPERLIB_PROFILES``
(``os.pathsep``-separated), or given as a path: ``python -m paperlib.pipeline --profile
my-zoo.toml``. Relative ``path`` values are relative to the file. Nothing here imports torch or
reads a checkpoint; the importer (:mod:`paperlib.sources.importer`) does that.

.. code-block:: toml

    name = "modelzoo-mnist"             # results/<name>/, figures/<name>/
    description = "Model Zoo MNIST CNN-s, tanh networks"

    [[populations]]
    arch = "CNN-s"                      # display name, unique in the profile
    source = "raytune"                  # "runs" | "raytune" | "smallcnnzoo"
    path = "zoos/mnist_hyp_rand"        # the source's folder
    dataset = "mnist"                   # a name for the data the networks saw
    threshold = 50.0                    # final test accuracy (%) that splits high from low
    t_max = 9                           # largest t (the features at t read epochs 1..t)
    limit = 200                         # import at most this many networks (0: all), evenly spread
    where = { "model::nlin" = "tanh" }  # only networks whose hyperparameters have these values

    [[transfers]]                       # Q2 (05_q2): train on some populations, test on another
    name = "s-to-l"                     # 05_q2 needs at least one; without, the runner skips 05 and says so
    train = ["CNN-s"]
    test = "CNN-l"

    [analysis]                          # any other Profile field: n_folds, fold_seeds, classifiers, ...
    n_folds = 5

Per population, with defaults by source: ``model`` and ``model_kwargs`` (a name that
:func:`paperlib.train.models.build_model` knows, a zoo model of :mod:`paperlib.train.zoo`, a
torchvision model or ``package.module:function``), ``in_channels``, ``num_classes``,
``image_size``, ``epochs`` (the last epoch the source trained), ``group`` (``"configuration"``:
networks that share every hyperparameter but the seed stay in one fold, the default; ``"run"``:
every network is its own group, for seed zoos whose networks all share one configuration) and
``options`` (source-specific, see each source's module).
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .profile_types import Grid, Population, Profile, Transfer

SOURCES = ("runs", "raytune", "smallcnnzoo")
DEFAULTS: dict[str, dict[str, Any]] = {
    "raytune": {"model": "zoo-cnn-s", "in_channels": 1, "num_classes": 10, "image_size": 28, "epochs": 50, "t_max": 9},
    "smallcnnzoo": {"model": "small-cnn-zoo", "model_kwargs": {"stride": 2}, "in_channels": 1, "num_classes": 10,
                    "image_size": 28, "epochs": 86, "t_max": 3},
    "runs": {"num_classes": 10, "t_max": 9},
}
_POP_KEYS = {"arch", "source", "path", "dataset", "threshold", "t_max", "limit", "where", "model", "model_kwargs",
             "in_channels", "num_classes", "image_size", "epochs", "group", "options"}


class ProfileFileError(ValueError):
    """A profile file that cannot be read or does not describe a valid imported profile (names the file)."""


@dataclass(frozen=True)
class ImportedPopulation:
    """How one population of an imported profile is read (the profile's :class:`Population` beside it)."""

    arch: str
    source: str
    path: Path
    dataset: str
    in_channels: int
    num_classes: int
    image_size: int
    model: str
    model_kwargs: dict[str, Any]
    t_max: int
    epochs: int
    limit: int = 0
    where: dict[str, Any] = field(default_factory=dict)
    group: str = "configuration"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportPlan:
    """An imported profile: the file it came from, the :class:`Profile`, and how to read each population."""

    file: Path
    profile: Profile
    populations: tuple[ImportedPopulation, ...]

    def population(self, arch: str) -> ImportedPopulation:
        for p in self.populations:
            if p.arch == arch:
                return p
        raise KeyError(f"{self.file}: no population {arch!r}")


#: the names of the built-in profiles of :mod:`paperlib.profiles`, which a profile file may not take
BUILTIN = frozenset({"smoke", "default", "paper"})
#: every imported profile found, by name; files that failed to load, by path (their error)
IMPORTED: dict[str, ImportPlan] = {}
ERRORS: dict[str, str] = {}
#: datasets that imported populations declare: name -> (in_channels, num_classes, image_size)
DATASETS: dict[str, tuple[int, int, int]] = {}


def _read(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return tomllib.loads(path.read_text())
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise ProfileFileError(f"{path}: not a readable profile file ({type(exc).__name__}: {exc})") from exc


def _first_run_model(folder: Path, file: Path) -> tuple[str, dict[str, Any]]:
    runs = sorted(p for p in folder.iterdir() if (p / "run.json").is_file()) if folder.is_dir() else []
    if not runs:
        raise ProfileFileError(f"{file}: population path {folder} holds no run folder with a run.json; give "
                               "'model' in the profile or see docs/own-runs.md (Your own runs)")
    meta = json.loads((runs[0] / "run.json").read_text())
    return str(meta.get("model", "")), dict(meta.get("model_kwargs", {}))


def parse(path: Path) -> ImportPlan:
    """The :class:`ImportPlan` of one profile file; :class:`ProfileFileError` names the file and the field."""
    path = Path(path).resolve()
    raw = _read(path)
    name = raw.get("name") or path.stem
    if not isinstance(name, str) or not name or "/" in name or name in ("published", "executed"):
        raise ProfileFileError(f"{path}: 'name' must be a plain folder name, not {name!r}")
    pops_raw = raw.get("populations")
    if not isinstance(pops_raw, list) or not pops_raw:
        raise ProfileFileError(f"{path}: expected at least one [[populations]] table")
    pops, imported = [], []
    for i, p in enumerate(pops_raw):
        where = f"{path}: populations[{i}]"
        unknown = sorted(set(p) - _POP_KEYS)
        if unknown:
            raise ProfileFileError(f"{where}: unknown field(s) {unknown}; known: {sorted(_POP_KEYS)}")
        for key in ("arch", "source", "path", "dataset", "threshold"):
            if key not in p:
                raise ProfileFileError(f"{where}: missing field {key!r}")
        if p["source"] not in SOURCES:
            raise ProfileFileError(f"{where}: source {p['source']!r} is not one of {list(SOURCES)}")
        d = {**DEFAULTS[p["source"]], **p}
        folder = Path(os.path.expanduser(str(p["path"])))
        folder = folder if folder.is_absolute() else path.parent / folder
        if "model" not in d:
            d["model"], kw = _first_run_model(folder, path)
            d.setdefault("model_kwargs", kw)
        if d["model"] == "zoo-cnn-l" and "in_channels" not in p:
            d["in_channels"], d["image_size"] = 3, p.get("image_size", 32)
        for key in ("in_channels", "image_size"):
            if key not in d:
                raise ProfileFileError(f"{where}: missing field {key!r} (no default for source {p['source']!r})")
        group = d.get("group", "configuration")
        if group not in ("configuration", "run"):
            raise ProfileFileError(f"{where}: group must be 'configuration' or 'run', not {group!r}")
        t_max = int(d["t_max"])
        epochs = int(d.get("epochs", t_max))
        ip = ImportedPopulation(
            arch=str(d["arch"]), source=d["source"], path=folder, dataset=str(d["dataset"]),
            in_channels=int(d["in_channels"]), num_classes=int(d["num_classes"]), image_size=int(d["image_size"]),
            model=str(d["model"]), model_kwargs=dict(d.get("model_kwargs", {})), t_max=t_max,
            epochs=max(epochs, t_max), limit=int(d.get("limit", 0)), where=dict(d.get("where", {})), group=group,
            options=dict(d.get("options", {})))
        imported.append(ip)
        pops.append(Population(ip.arch, ip.model, ip.dataset, float(d["threshold"]), Grid((), (), ()),
                               epochs=ip.epochs, t_max=ip.t_max, model_kwargs=ip.model_kwargs))
    if len({p.arch for p in pops}) != len(pops):
        raise ProfileFileError(f"{path}: population names (arch) must be unique")
    sizes: dict[str, int] = {}
    for ip in imported:
        if sizes.setdefault(ip.dataset, ip.image_size) != ip.image_size:
            raise ProfileFileError(f"{path}: dataset {ip.dataset!r} is declared with two image sizes; give the "
                                   "populations different dataset names")
    analysis = dict(raw.get("analysis", {}))
    for key in ("fold_seeds", "classifiers", "modes", "feature_sets"):
        if key in analysis:
            analysis[key] = tuple(analysis[key])
    transfers = []
    for i, t in enumerate(raw.get("transfers", [])):
        try:
            transfers.append(Transfer(str(t["name"]), tuple(t["train"]), str(t["test"])))
        except (KeyError, TypeError) as exc:
            raise ProfileFileError(f"{path}: transfers[{i}] needs name, train (a list of arch) and test ({exc})"
                                   ) from None
        for arch in (*transfers[-1].train, transfers[-1].test):
            if arch not in {p.arch for p in pops}:
                raise ProfileFileError(f"{path}: transfers[{i}] names {arch!r}, which is no population")
    burn_in = max(max(ip.epochs for ip in imported), max(ip.t_max for ip in imported) + 1)
    try:
        profile = Profile(name=name, description=str(raw.get("description", f"imported from {path.name}")),
                          populations=tuple(pops), image_size=sizes, burn_in=burn_in,
                          transfers=tuple(transfers), **analysis)
    except (TypeError, ValueError) as exc:
        raise ProfileFileError(f"{path}: {exc}") from exc
    return ImportPlan(path, profile, tuple(imported))


def _register_datasets(plan: ImportPlan) -> None:
    """Record the datasets the populations declare (a clash with paperlib's own datasets is checked by
    the importer, which imports torch; this module must not)."""
    for ip in plan.populations:
        info = (ip.in_channels, ip.num_classes, ip.image_size)
        if DATASETS.setdefault(ip.dataset, info)[:2] != info[:2]:
            raise ProfileFileError(f"{plan.file}: dataset {ip.dataset!r} is declared elsewhere with other channels "
                                   "or classes")


def candidates() -> list[Path]:
    """Profile files in ``<root>/profiles/`` and in ``$PAPERLIB_PROFILES``."""
    places = [paths.ROOT / "profiles"] + [Path(p) for p in os.environ.get("PAPERLIB_PROFILES", "").split(os.pathsep)
                                           if p]
    out: list[Path] = []
    for place in places:
        if place.is_dir():
            out += sorted(p for p in place.iterdir() if p.suffix in (".toml", ".json"))
        elif place.is_file():
            out.append(place)
    return list(dict.fromkeys(p.resolve() for p in out))


def load(path: Path, builtin: set[str] = frozenset()) -> ImportPlan:
    """Parse a profile file and register it (its profile, its datasets); errors name the file."""
    plan = parse(path)
    name = plan.profile.name
    if name in builtin:
        raise ProfileFileError(f"{path}: name {name!r} is a built-in profile")
    other = IMPORTED.get(name)
    if other is not None and other.file != plan.file:
        raise ProfileFileError(f"{path}: profile {name!r} is also defined by {other.file}")
    _register_datasets(plan)
    IMPORTED[name] = plan
    return plan


_loaded = False  # whether load_all ran (paperlib.profiles runs it when it is imported)


def load_all(builtin: set[str] = BUILTIN) -> dict[str, Profile]:
    """Every profile file found (:func:`candidates`), by name; files with errors go to :data:`ERRORS`."""
    global _loaded
    _loaded = True
    for path in candidates():
        try:
            load(path, builtin)
        except ProfileFileError as exc:
            ERRORS[str(path)] = str(exc)
    return {name: plan.profile for name, plan in IMPORTED.items()}


def plan_of(name: str) -> ImportPlan | None:
    """The import plan of profile ``name``, or None for a profile that is trained (01_train)."""
    _ensure_loaded()
    return IMPORTED.get(name)


def dataset(name: str) -> tuple[int, int, int] | None:
    """``(in_channels, num_classes, image_size)`` of a dataset an imported population declares, or None."""
    _ensure_loaded()
    return DATASETS.get(name)


def _ensure_loaded() -> None:
    """Load the profile files once (:mod:`paperlib.profiles` does when it is imported; a process that
    did not import it, e.g. a worker, loads them here)."""
    if not _loaded:
        load_all()
