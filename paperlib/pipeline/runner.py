"""The pipeline, declared once, and its headless runner.

``python -m paperlib.pipeline`` executes the numbered notebooks in order with
papermill, on one profile::

    python -m paperlib.pipeline                      # all notebooks, default profile
    python -m paperlib.pipeline --profile smoke      # the fast profile of the tests
    python -m paperlib.pipeline --only 04_q1         # one notebook (repeatable)
    python -m paperlib.pipeline -p epochs=5          # override a notebook parameter
    python -m paperlib.pipeline --list               # steps, parameters and their ranges, inputs, outputs
    python -m paperlib.pipeline --write-headers      # each notebook's header (reads/rewrites) from STEPS

**Declared once.** :data:`STEPS` lists every notebook with the files it reads (``inputs``) and
writes (``outputs``); the step that makes an input is the one that declares it as an output.
``{profile}`` stands for the profile's name, ``{arch}`` for every population of the (effective)
profile, ``{store}`` for the profile's run store (:func:`paperlib.paths.store_dir`).

**Checked before anything runs.** Every ``-p key=value`` is checked against the ``parameters``
cells of the selected notebooks (an unknown name, or a value that does not parse as the declared
type, is an error that names it; papermill itself would only warn and pass ``2.0`` for an
``int``) and against the ranges of :data:`PARAMETERS`; the notebooks' own defaults must be in
range too. Then every input of every selected step must exist and be non-empty, unless an
earlier selected step makes it. Any of these problems exits with status 2 before a notebook
runs, and the message names the parameter, or the missing file and the step (and command) that
makes it. Nothing is written in that case, the manifest included.

**A step never writes over committed results from missing data.** Right before a step runs, its
inputs are checked again (an earlier step may have failed to make them); a notebook opened in
JupyterLab makes the same check in its setup cell with :func:`require_inputs`. After a step, its
declared outputs must exist and be non-empty, or the step counts as failed.

**Provenance.** ``results/<profile>/manifest.json`` records, per step, the latest run of it (so
``--only 04_q1`` updates the record of 04 and keeps the others), its parameters, start, end and
seconds, and for the latest invocation the effective profile (:func:`paperlib.profiles.
effective_profile`: the profile plus the overrides 01_train recorded), the command, git commit,
package versions, the lock's SHA-256 and whether the installed packages are the locked ones
(:func:`paperlib.lock.status`), and the machine with its CPU kernel class
(:func:`paperlib.kernels.isa_class`). Its ``status`` is ``running`` while the runner works, then ``ok``,
``failed`` or ``interrupted`` (Ctrl-C, SIGTERM, SIGHUP). A runner killed with SIGKILL cannot
write; :func:`read_manifest` reports such a record (``running``, but its process is gone) as
``interrupted``.

**What the notebooks' kernels see.** The runner starts each kernel with ``PYTHONPATH`` leading
with this checkout, so a notebook imports this checkout's ``paperlib`` whatever environment runs
it; ``PAPERLIB_ROOT`` set to the project root; and ``PAPERLIB_QUIET=1`` and ``TQDM_DISABLE=1``, so
executed notebooks carry no progress bars (every progress bar of ``paperlib`` goes through
:class:`paperlib.progress.Progress`, off under ``PAPERLIB_QUIET``: ``tqdm.notebook`` ignores
``TQDM_DISABLE``, which only turns off plain-text bars). Executed notebooks go to
``results/executed/<profile>/`` with machine paths removed.

**Progress on the terminal, not in the notebooks.** The long loops (01's runs per population, 02's
graphs per population, the evaluations of 04, 05 and 07) report to a side channel: the runner sets
``PAPERLIB_PROGRESS`` to a file in a temporary folder of its own, the kernel appends one JSON line
per event to it, and a thread of the runner follows the file and prints each event as a line on
the runner's stderr (runs done out of total and the time left; at most one line every 10 s per
loop, plus the end of every population). A file, because it is the one channel that papermill does
not put into the executed notebook: whatever the kernel writes to its stdout or stderr (Python's
streams or the file descriptors, which ipykernel forwards as well) becomes stream outputs of the
notebook, and papermill's ``log_output``, ``stdout_file`` and ``stderr_file`` only copy those
stream outputs to the log or to files; they do not keep them out of the notebook. The executed
notebook keeps one summary line per loop (``networks: 384 runs in 8:55 (LeNet 64, ...)``).
``--no-progress`` turns the lines off.

**Datasets before any kernel.** When 01_train is selected, every dataset the profile trains on
is loaded once by :func:`paperlib.train.data.load_dataset`, the check 01_train itself makes, before any
notebook runs; a missing or malformed one exits with status 2 and paperlib.train.data's message.

**Kernels over local sockets.** On POSIX systems the kernels listen on IPC (Unix domain) sockets
in the runner's temporary folder instead of TCP on localhost: nothing reaches them through the
network, and ipykernel's warning about unencrypted TCP has no cause to be printed.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .. import paths
from ..profiles import PROFILES


# --------------------------------------------------------------------------- the steps
@dataclass(frozen=True)
class Input:
    """A file (or the run store) a step reads.

    ``path`` is a template relative to the project root (``{profile}``, ``{arch}``, ``{store}``).
    ``kind`` is ``"file"`` (must exist and be non-empty; a CSV must have at least one data row)
    or ``"runs"`` (every network listed in ``results/<profile>/runs.csv`` has a finished run in
    the store). ``alternatives`` are other inputs any one of which also satisfies this one.
    ``made_by`` overrides the producer named in messages (else: the step that declares ``path``
    as an output).
    """

    path: str
    kind: str = "file"
    alternatives: tuple["Input", ...] = ()
    made_by: str | None = None


@dataclass(frozen=True)
class Step:
    """One notebook of the pipeline: the files it reads and the files it writes (templates)."""

    name: str
    title: str
    outputs: tuple[str, ...]
    inputs: tuple[Input, ...] = ()
    populations: str = "any"  # "trained": profiles of paperlib.profiles; "imported": profile files; "any"

    def applies_to(self, profile: str) -> bool:
        """Whether this step runs for ``profile`` (01_train for trained profiles, 01_import for imported ones)."""
        if self.populations == "any":
            return True
        from ..sources.profile_file import plan_of

        return (plan_of(profile) is not None) == (self.populations == "imported")

    @property
    def notebook(self) -> Path:
        return notebook_path(self.name)


R = "results/{profile}/"
F = "figures/{profile}/"
STORE_RUNS = Input("{store}/runs", kind="runs")
RUNS = Input(R + "runs.csv")
FEATURES = (Input(R + "features.csv"), Input(R + "features/{arch}.npz"))

STEPS: tuple[Step, ...] = (
    Step("01_train", "Train populations, snapshot every epoch; Table 1",
         (R + "runs.csv", R + "snapshots.csv", R + "timings/runs.csv", R + "table1.csv", R + "table1.md",
          R + "overrides.json", "{store}/runs"),
         populations="trained"),
    Step("01_import", "Import existing checkpoints (a profile file) instead of training; Table 1",
         (R + "runs.csv", R + "timings/runs.csv", R + "table1.csv", R + "table1.md", R + "overrides.json",
          "{store}/runs", R + "import_skipped.csv", R + "imported.csv", R + "timings/imported.csv"),
         populations="imported"),
    Step("02_graph", "Rolled and unrolled graphs, centralities of every snapshot (S1, S2)",
         (R + "centralities.csv", R + "timings/centralities.csv", R + "graph_sizes.csv", F + "fig1.png",
          F + "fig1.pdf"),
         (RUNS, STORE_RUNS)),
    Step("03_features", "Graph signatures, baselines and the learning-curve baseline (S3)",
         (R + "features.csv", R + "timings/features.csv", R + "features/{arch}.npz"),
         (RUNS, STORE_RUNS, Input(R + "centralities.csv"))),
    Step("04_q1", "Q1: performance prediction per architecture; Table 2, Figure 3",
         (R + "q1.csv", R + "q1_skipped.csv", R + "table2.csv", R + "table2.md", R + "table2.tex", F + "fig3.png",
          F + "fig3.pdf"),
         (RUNS, *FEATURES)),
    Step("05_q2", "Q2: generalising to unseen depths, architectures and widths; Figure 4",
         (R + "q2.csv", R + "q2_skipped.csv", F + "fig4.png", F + "fig4.pdf"),
         (RUNS, *FEATURES, Input(R + "q1.csv"))),
    Step("06_q3", "Q3: cost of the graph features next to training; Figure 5",
         (R + "q3.csv", R + "q3_snapshots/{arch}.pt", F + "fig5.png", F + "fig5.pdf"),
         (RUNS, Input(R + "q1.csv"), Input(R + "centralities.csv"), Input(R + "timings/runs.csv"),
          Input(R + "timings/centralities.csv"),
          Input(R + "q3_snapshots/{arch}.pt", alternatives=(STORE_RUNS,),
                made_by="06_q3 itself, from the run store that 01_train makes"))),
    Step("07_early_stopping", "Beyond the paper: stopping bad runs early, and what it saves",
         (R + "early_stopping.csv", R + "early_stopping.md", F + "fig_early_stopping.png",
          F + "fig_early_stopping.pdf", R + "predictors/{arch}.both.json", R + "predictors/{arch}.both.npz"),
         (RUNS, *FEATURES)),
)
STEP_NAMES = tuple(s.name for s in STEPS)

KERNEL = "python3"
_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


# --------------------------------------------------------------------------- parameter ranges
@dataclass(frozen=True)
class Param:
    """The valid values of a notebook parameter: ``minimum``/``maximum`` (numbers) or ``choices`` (strings)."""

    minimum: float | None = None
    choices: tuple[str, ...] | None = None
    note: str = ""
    maximum: float | None = None

    def check(self, name: str, value: Any) -> None:
        if self.minimum is not None and value < self.minimum:
            raise ParameterError(f"parameter {name!r} = {value!r} is out of range: must be >= {self.minimum:g}"
                                 + (f" ({self.note})" if self.note else ""))
        if self.maximum is not None and value > self.maximum:
            raise ParameterError(f"parameter {name!r} = {value!r} is out of range: must be <= {self.maximum:g}"
                                 + (f" ({self.note})" if self.note else ""))
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"parameter {name!r} = {value!r} is not one of {list(self.choices)}"
                                 + (f" ({self.note})" if self.note else ""))

    def describe(self) -> str:
        if self.minimum is not None:
            upper = f" and <= {self.maximum:g}" if self.maximum is not None else ""
            return f">= {self.minimum:g}{upper}" + (f"; {self.note}" if self.note else "")
        if self.choices is not None:
            return " | ".join(repr(c) for c in self.choices) + (f"; {self.note}" if self.note else "")
        return self.note


# Every int, float and choice parameter of every notebook has its range here (tests check it).
# ``profile`` is checked against paperlib.profiles.PROFILES.
PARAMETERS: dict[str, Param] = {
    "epochs": Param(minimum=0, note="0 keeps the profile's value"),
    "t_max": Param(minimum=0, note="0 keeps the profile's value"),
    "workers": Param(minimum=0, note="0 keeps the profile's value"),
    "threads": Param(minimum=0, note="0 keeps the profile's value"),
    "runs_per_device": Param(minimum=0, note="0 keeps the profile's value"),
    "engine": Param(choices=("process", "dask")),
    "device": Param(choices=("", "auto", "cpu", "cuda"), note="'' keeps the profile's value"),
    "precision": Param(choices=("", "float32", "bf16"), note="'' keeps the profile's value"),
    "repeats": Param(minimum=1, note="timing repetitions"),
    "orders": Param(minimum=1, note="random orders of a simulated search"),
    "trials": Param(minimum=0, note="networks per simulated search; 0: the whole population"),
    "stop_below": Param(minimum=0.0, maximum=1.0, note="a probability"),
    "seed": Param(minimum=0),
    "networks": Param(minimum=0, note="0 keeps the profile file's limit"),
    "scheduler": Param(note="dask scheduler address; '' starts a local cluster"),
}


class ParameterError(ValueError):
    """An unknown, mistyped or out-of-range notebook parameter, or an unknown profile."""


class MissingInputError(FileNotFoundError):
    """Inputs of a step are missing or empty; the message names them and the notebook that makes them.

    In a notebook IPython shows only the message, without a traceback (:meth:`_render_traceback_`).
    """

    def _render_traceback_(self) -> list[str]:
        return f"{type(self).__name__}: {self}".splitlines()


class MissingDatasetError(MissingInputError):
    """A dataset the selected 01_train trains on is missing or malformed (paperlib.train.data's message)."""


def notebook_path(name: str) -> Path:
    return paths.NOTEBOOKS / f"{name}.ipynb"


def get_step(name: str) -> Step:
    for step in STEPS:
        if step.name == name:
            return step
    raise KeyError(f"unknown step {name!r}; the steps are {list(STEP_NAMES)}")


def declared_parameters(name: str) -> dict[str, dict[str, Any]]:
    """``{param: {"type": "int", "default": ..., "help": ...}}`` from a notebook's ``parameters`` cell.

    The cell holds one ``name: type = literal  # comment`` per line.
    """
    import nbformat

    path = notebook_path(name)
    if not path.exists():
        raise ParameterError(f"{paths.relative(path)}: notebook of step {name} does not exist")
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    if not cells or "parameters" not in cells[0].metadata.get("tags", []):
        raise ParameterError(f"{path}: the first code cell is not tagged 'parameters'")
    out: dict[str, dict[str, Any]] = {}
    lines = cells[0].source.splitlines()
    for node in ast.parse(cells[0].source).body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            raise ParameterError(f"{path}: parameters cell line {node.lineno} is not 'name: type = literal'")
        type_name = ast.unparse(node.annotation)
        if type_name not in _TYPES:
            raise ParameterError(f"{path}: parameter {node.target.id} has unsupported type {type_name}")
        line = lines[node.lineno - 1]
        out[node.target.id] = {
            "type": type_name,
            "default": ast.literal_eval(node.value),
            "help": line.split("#", 1)[1].strip() if "#" in line else "",
        }
    return out


def coerce(name: str, raw: str, type_name: str) -> Any:
    """Parse ``raw`` as ``type_name``; a ParameterError names the parameter."""
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "bool":
            low = raw.strip().lower()
            if low in {"1", "true", "yes"}:
                return True
            if low in {"0", "false", "no"}:
                return False
            raise ValueError(raw)
        return raw
    except ValueError:
        raise ParameterError(f"parameter {name!r}: {raw!r} is not a valid {type_name}") from None


def check_parameters(step: str, **values: Any) -> None:
    """Range-check parameter values of notebook ``step`` (:data:`PARAMETERS`); ParameterError names the first bad one.

    Notebooks may call it in their setup cell, so a value typed into the ``parameters`` cell in
    JupyterLab is checked as the runner checks ``-p``.
    """
    for key, value in values.items():
        if key == "profile":
            if value not in PROFILES:
                raise ParameterError(f"unknown profile {value!r}; choose one of {sorted(PROFILES)}")
        elif key in PARAMETERS:
            PARAMETERS[key].check(key, value)


def resolve_parameters(steps: Sequence[str], profile: str, raw: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per notebook, the parameters to pass. Raises ParameterError before anything runs."""
    if profile not in PROFILES:
        raise ParameterError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    declared = {s: declared_parameters(s) for s in steps}
    overrides: dict[str, str] = {}
    for item in raw:
        if "=" not in item:
            raise ParameterError(f"parameter {item!r}: expected key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if key == "profile":
            raise ParameterError("choose the profile with --profile, not -p profile=...")
        if not any(key in d for d in declared.values()):
            known = sorted({k for d in declared.values() for k in d} - {"profile"})
            raise ParameterError(f"unknown parameter {key!r} for notebooks {list(steps)}; known: {known}")
        overrides[key] = value
    per_step: dict[str, dict[str, Any]] = {}
    for s in steps:
        params: dict[str, Any] = {"profile": profile} if "profile" in declared[s] else {}
        for key, value in overrides.items():
            if key in declared[s]:
                params[key] = coerce(key, value, declared[s][key]["type"])
        effective = {k: v["default"] for k, v in declared[s].items()} | params
        try:
            check_parameters(s, **effective)
        except ParameterError as exc:
            raise ParameterError(f"{exc} [notebook {s}]") from None
        per_step[s] = params
    return per_step


# --------------------------------------------------------------------------- inputs
def _profile(name: str) -> Any:
    """The effective profile (with the overrides 01_train recorded) where profiles provides it."""
    from .. import profiles

    getter = getattr(profiles, "effective_profile", None) or profiles.get_profile
    try:
        return getter(name)
    except (KeyError, ValueError) as exc:  # unknown profile, corrupt or invalid overrides.json
        raise ParameterError(f"profile {name!r}: {exc}") from None


def _expand(template: str, profile: str, archs: Sequence[str]) -> list[Path]:
    fields = {"profile": profile, "store": str(paths.store_dir(profile))}
    if "{arch}" in template:
        names = [template.format(arch=paths.safe_name(a), **fields) for a in archs]
    else:
        names = [template.format(**fields)]
    return [Path(n) if Path(n).is_absolute() else paths.ROOT / n for n in names]


def expand_templates(template: str, profile: str) -> list[Path]:
    """The paths a declared input or output template stands for, for every population of ``profile``."""
    return _expand(template, profile, _profile(profile).archs)


def _file_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable input, or None."""
    if not path.exists():
        return "missing"
    if path.is_dir():
        return None if any(path.iterdir()) else "an empty directory"
    if path.stat().st_size == 0:
        return "empty"
    if path.suffix == ".csv" and not path.name.endswith("_skipped.csv"):  # a list of skips may be empty
        with open(path, "rb") as fh:
            lines = [line for _, line in zip(range(2), fh) if line.strip()]
        if len(lines) < 2:
            return "has no data rows"
    return None


def _runs_problem(profile: str) -> str | None:
    """Why the run store does not hold every network of ``runs.csv`` finished, or None."""
    from .. import files

    root = paths.runs_dir(profile)
    if not root.is_dir():
        return "missing"
    if not files.runs_path(profile).exists():
        return None  # runs.csv is an input of its own and reported as such
    try:
        keys = [str(k) for k in files.read_runs(profile)["key"]]
    except (ValueError, files.CorruptFileError) as exc:
        return f"cannot be matched with runs.csv: {exc}"
    bad = []
    for key in keys:
        try:
            status = files.read_json(root / key / "meta.json").get("status")
        except (OSError, ValueError, files.CorruptFileError):
            status = None
        if status not in {"finished", "diverged"}:
            bad.append(key)
    if bad:
        return (f"holds no finished run for {len(bad)} of the {len(keys)} networks of runs.csv "
                f"(first: {bad[0]})")
    return None


def _producer(inp: Input, profile: str | None = None) -> str | None:
    if inp.made_by:
        return inp.made_by.replace("01_train", "01_import") if profile and get_step("01_import").applies_to(
            profile) else inp.made_by
    for step in STEPS:
        if inp.path in step.outputs and (profile is None or step.applies_to(profile)):
            return step.name
    return None


def steps_for(profile: str, only: Sequence[str] = ()) -> list[str]:
    """The steps to run on ``profile``: ``only`` (every step when empty), without the producer of the
    runs that does not apply to it (01_train for an imported profile, 01_import for a trained one).
    ``only`` naming no step but ones that do not apply is a ParameterError."""
    wrong = [s for s in only if not get_step(s).applies_to(profile)]
    if wrong and len(wrong) == len(set(only)):
        other = [s.name for s in STEPS if s.populations != "any" and s.applies_to(profile)]
        raise ParameterError(f"step {wrong[0]} does not apply to profile {profile!r}; its runs come from "
                             f"{other[0] if other else 'another step'}")
    return [s.name for s in STEPS if (not only or s.name in only) and s.applies_to(profile)]


@dataclass(frozen=True)
class Missing:
    """One unusable input of a step."""

    step: str
    path: str  # relative to the project root where possible
    problem: str
    made_by: str | None
    template: str

    def message(self, profile: str) -> str:
        how = ""
        if self.made_by in STEP_NAMES:
            how = (f"; open and run {self.made_by}.ipynb first, or run "
                   f"`python -m paperlib.pipeline --profile {profile} --only {self.made_by}`")
        elif self.made_by:
            how = f"; it is made by {self.made_by}"
        return f"{self.path} is {self.problem}{how}"


def _input_problems(inp: Input, profile: str, archs: Sequence[str]) -> list[tuple[str, str]]:
    if inp.kind == "runs":
        problem = _runs_problem(profile)
        return [(paths.relative(paths.runs_dir(profile)), problem)] if problem else []
    out = []
    for path in _expand(inp.path, profile, archs):
        problem = _file_problem(path)
        if problem:
            out.append((paths.relative(path), problem))
    return out


def check_inputs(step: str, profile: str, made_before: Sequence[str] = ()) -> list[Missing]:
    """The inputs of ``step`` on ``profile`` that are missing or empty.

    Inputs that a step in ``made_before`` declares as outputs are taken as present (the runner
    checks a whole selection before the first step runs).
    """
    made = {o for s in STEPS if s.name in made_before for o in s.outputs}
    archs = _profile(profile).archs
    missing = []
    for inp in get_step(step).inputs:
        options = (inp, *inp.alternatives)
        if any(o.path in made for o in options):
            continue
        problems = _input_problems(inp, profile, archs)
        if problems and any(not _input_problems(alt, profile, archs) for alt in inp.alternatives):
            continue
        missing += [Missing(step, p, why, _producer(inp, profile), inp.path) for p, why in problems]
    return missing


def _missing_message(step: str, profile: str, missing: Sequence[Missing]) -> str:
    lines = [f"step {step} (profile {profile}) cannot run: its inputs are missing or empty"]
    lines += [f"  - {m.message(profile)}" for m in missing[:12]]
    if len(missing) > 12:
        lines.append(f"  ... and {len(missing) - 12} more")
    lines.append(f"Nothing was written. Every step in order: `make reproduce PROFILE={profile}`.")
    return "\n".join(lines)


def require_inputs(step_name: str, profile_name: str) -> None:
    """Stop a notebook before it writes anything when its inputs are missing or empty.

    Call it in the setup cell of every notebook::

        pipeline.require_inputs("04_q1", profile)

    Raises :class:`MissingInputError` naming every missing file and the step (with the command)
    that makes it. Returns None when every input is there.
    """
    missing = check_inputs(step_name, profile_name)
    if missing:
        raise MissingInputError(_missing_message(step_name, profile_name, missing))


def _missing_outputs(step: str, profile: str) -> list[str]:
    archs = _profile(profile).archs
    bad = []
    for template in get_step(step).outputs:
        if template == "{store}/runs":
            problem = _runs_problem(profile)
            if problem:
                bad.append(f"{paths.relative(paths.runs_dir(profile))} ({problem})")
            continue
        for path in _expand(template, profile, archs):
            problem = _file_problem(path)
            if problem:
                bad.append(f"{paths.relative(path)} ({problem})")
    return bad


# --------------------------------------------------------------------------- provenance
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
            "cpu_count": os.cpu_count(),
            "gpu": gpu,
            "isa": kernels.isa_class(),
        },
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_manifest(profile: str) -> dict[str, Any]:
    """The manifest of ``profile`` (``{}`` when there is none).

    A record that still says ``running`` although the runner that wrote it (same host, its
    ``pid``) is gone, killed too hard to write, is returned with status ``interrupted``.
    """
    path = paths.manifest_path(profile)
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        return {}
    if (manifest.get("status") == "running" and manifest.get("host") == socket.gethostname()
            and isinstance(manifest.get("pid"), int) and not _pid_alive(manifest["pid"])):
        manifest["status"] = "interrupted"
        manifest["note"] = "the runner's process ended without finishing the record (killed)"
    return manifest


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


class Interrupted(KeyboardInterrupt):
    """The runner received SIGTERM or SIGHUP."""


class _signals:
    """Turn SIGTERM and SIGHUP into :class:`Interrupted` while the runner works (restored after)."""

    SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))

    def __enter__(self) -> "_signals":
        self.old = {}

        def handler(signum: int, frame: Any) -> None:
            raise Interrupted(signal.Signals(signum).name)

        for s in self.SIGNALS:
            try:
                self.old[s] = signal.signal(s, handler)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)


class _kernel_env:
    """Environment of the notebooks' kernels (see the module docstring), restored after."""

    def __init__(self, progress_file: Path | None = None):
        self.progress_file = progress_file

    def __enter__(self) -> "_kernel_env":
        from .. import progress

        pythonpath = os.environ.get("PYTHONPATH", "")
        parts = [str(paths.CODE)] + [p for p in pythonpath.split(os.pathsep) if p and p != str(paths.CODE)]
        self.new = {"PYTHONPATH": os.pathsep.join(parts), "PAPERLIB_ROOT": str(paths.ROOT),
                    "PAPERLIB_QUIET": "1", "TQDM_DISABLE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
                    progress.ENV: str(self.progress_file) if self.progress_file else None}
        self.old = {k: os.environ.get(k) for k in self.new}
        for k, v in self.new.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        return self

    def __exit__(self, *exc: Any) -> None:
        for k, v in self.old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _kernel_manager_class(folder: Path) -> type | None:
    """A kernel manager whose kernels listen on IPC sockets in ``folder`` (POSIX; None elsewhere:
    papermill's default, TCP on localhost)."""
    if os.name != "posix":
        return None
    from jupyter_client.manager import AsyncKernelManager  # nbclient's default manager

    class LocalSocketKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any):
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", str(folder / "kernel"))  # sockets kernel-1 ... kernel-5, removed at shutdown
            super().__init__(**kwargs)

    return LocalSocketKernelManager


def check_datasets(profile: str) -> None:
    """Load every dataset that 01_train trains ``profile`` on, as 01_train does
    (:func:`paperlib.train.data.load_dataset`); :class:`MissingDatasetError` with paperlib.train.data's
    message for every one that is missing or malformed."""
    from ..train import data
    from ..profiles import get_profile

    P = get_profile(profile)  # 01_train's overrides never change datasets, image sizes or train_limit
    problems = []
    for name, size, limit in dict.fromkeys((pop.dataset, P.image_size[pop.dataset], P.train_limit)
                                           for pop in P.populations):
        try:
            data.load_dataset(name, size, limit)
        except data.DatasetNotFoundError as exc:
            problems.append(f"  - dataset {name}: {exc}")
    if problems:
        raise MissingDatasetError("\n".join([f"step 01_train (profile {profile}) cannot run: a dataset it trains "
                                              "on is missing or malformed", *problems, "Nothing was written."]))


def _effective_spec(profile: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from .. import profiles

    overrides = profiles.load_overrides(profile) if hasattr(profiles, "load_overrides") else {}
    return _profile(profile).to_dict(), overrides


# --------------------------------------------------------------------------- the runner
def preflight(steps: Sequence[str], profile: str, raw_params: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Everything checked before a notebook runs: parameters, ranges, datasets (when 01_train is
    selected), inputs.

    Returns the parameters per step; raises ParameterError or MissingInputError (MissingDatasetError).
    """
    for s in steps:
        if not notebook_path(s).exists():
            raise ParameterError(f"{paths.relative(notebook_path(s))}: notebook of step {s} does not exist")
    per_step = resolve_parameters(steps, profile, raw_params)
    if "01_train" in steps:
        check_datasets(profile)
    order = [s for s in STEP_NAMES if s in steps]
    for i, s in enumerate(order):
        missing = check_inputs(s, profile, made_before=order[:i])
        if missing:
            raise MissingInputError(_missing_message(s, profile, missing))
    return per_step


def run(steps: Sequence[str], profile: str, raw_params: Sequence[str] = (), progress: bool = True) -> int:
    """Run ``steps`` in order; returns the process exit code (0 ok, 1 failed, 130 interrupted).

    Raises ParameterError or MissingInputError (nothing written) when :func:`preflight` fails.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from ..files import atomic_write_json

    steps = [s for s in STEP_NAMES if s in steps and get_step(s).applies_to(profile)]
    per_step = preflight(steps, profile, raw_params)  # may raise: nothing has run yet
    out_dir = paths.ensure(paths.executed_dir(profile))
    paths.ensure(paths.results_dir(profile))
    previous = read_manifest(profile)
    kept = {s["notebook"]: s for s in previous.get("steps", []) if s.get("notebook") in STEP_NAMES} \
        if previous.get("profile") == profile else {}
    for r in kept.values():
        if r.get("status") == "running":  # a runner killed too hard to write
            r["status"] = "interrupted"
    spec, overrides = _effective_spec(profile)
    manifest: dict[str, Any] = {
        "profile": profile,
        "profile_spec": spec,
        "overrides": overrides,
        "command_parameters": list(raw_params),
        "command_steps": list(steps),
        "started": _now(),
        "finished": None,
        "status": "running",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "steps": [],
        **provenance(),
    }

    def save() -> None:
        records = {**kept}
        for r in manifest["steps_this_run"]:
            records[r["notebook"]] = r
        manifest["steps"] = [records[s] for s in STEP_NAMES if s in records]
        manifest["seconds"] = round(sum(r.get("seconds") or 0 for r in manifest["steps"]), 1)
        atomic_write_json(paths.manifest_path(profile), {k: v for k, v in manifest.items() if k != "steps_this_run"})

    manifest["steps_this_run"] = []
    save()
    code = 0
    record: dict[str, Any] | None = None
    t0 = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="paperlib-run-"))  # progress file and kernel sockets
    progress_file = folder / "progress.jsonl" if progress else None
    follower = None
    if progress_file is not None:
        from ..progress import Follower

        progress_file.touch()
        follower = Follower(progress_file, sys.stderr, prefix="      ").start()
    km_class = _kernel_manager_class(folder)
    try:
        with _signals(), _kernel_env(progress_file):
            for i, name in enumerate(steps, 1):
                params = per_step[name]
                print(f"[{i}/{len(steps)}] {name} ({profile}) {params}", flush=True)
                t0 = time.perf_counter()
                record = {"notebook": name, "parameters": params, "started": _now(), "status": "running",
                          "git_commit": manifest["git_commit"]}
                manifest["steps_this_run"].append(record)
                save()
                missing = check_inputs(name, profile)
                if missing:
                    record["status"] = "failed"
                    record["error"] = _missing_message(name, profile, missing)
                    print(f"\nFAILED: {record['error']}", file=sys.stderr, flush=True)
                    code = 1
                else:
                    try:
                        pm.execute_notebook(
                            str(notebook_path(name)),
                            str(out_dir / f"{name}.ipynb"),
                            parameters=params,
                            kernel_name=KERNEL,
                            cwd=str(paths.NOTEBOOKS),
                            progress_bar=False,  # the progress lines say more than cells done
                            log_output=False,
                            **({"kernel_manager_class": km_class} if km_class else {}),
                        )
                        record["status"] = "ok"
                    except PapermillExecutionError as exc:
                        record["status"] = "failed"
                        record["error"] = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
                        print(f"\nFAILED: notebook {name} ({paths.relative(out_dir / (name + '.ipynb'))}), "
                              f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}", file=sys.stderr, flush=True)
                        code = 1
                    except KeyboardInterrupt:
                        raise
                    except Exception as exc:  # kernel died, notebook unreadable, ...
                        record["status"] = "failed"
                        record["error"] = f"{type(exc).__name__}: {exc}"
                        print(f"\nFAILED: notebook {name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                        code = 1
                    executed = out_dir / f"{name}.ipynb"
                    if executed.exists():
                        _strip_machine_paths(executed)
                    if not code:
                        bad = _missing_outputs(name, profile)
                        if bad:
                            record["status"] = "failed"
                            record["error"] = "did not write its declared outputs: " + ", ".join(bad)
                            print(f"\nFAILED: notebook {name} {record['error']}", file=sys.stderr, flush=True)
                            code = 1
                if follower is not None:
                    follower.flush()
                record["finished"] = _now()
                record["seconds"] = round(time.perf_counter() - t0, 1)
                manifest["profile_spec"], manifest["overrides"] = _effective_spec(profile)
                save()
                if code:
                    break
                print(f"      {name} done in {record['seconds']:.1f} s", flush=True)
    except KeyboardInterrupt as exc:
        reason = str(exc) or "SIGINT"
        if record is not None and record.get("status") == "running":
            record["status"] = "interrupted"
            record["error"] = f"interrupted ({reason})"
            record["finished"] = _now()
            record["seconds"] = round(time.perf_counter() - t0, 1)
        manifest["finished"] = _now()
        manifest["status"] = "interrupted"
        manifest["interrupted_by"] = reason
        save()
        print(f"\nINTERRUPTED ({reason}); manifest {paths.relative(paths.manifest_path(profile))} "
              "says so", file=sys.stderr, flush=True)
        return 130
    finally:
        if follower is not None:
            follower.stop()
        shutil.rmtree(folder, ignore_errors=True)
    manifest["finished"] = _now()
    manifest["status"] = "failed" if code else "ok"
    save()
    return code


def _list(profile: str) -> None:
    for step in STEPS:
        print(f"{step.name}: {step.title}")
        if not notebook_path(step.name).exists():
            print(f"    (notebook {paths.relative(notebook_path(step.name))} does not exist)")
        else:
            for k, v in declared_parameters(step.name).items():
                rng = PARAMETERS[k].describe() if k in PARAMETERS else ""
                print(f"    -p {k}=<{v['type']}>  (default {v['default']!r}{'; ' + rng if rng else ''})  {v['help']}")
        for i in step.inputs:
            alt = "".join(f" or {a.path}" for a in i.alternatives)
            print(f"    <- {i.path.format(profile=profile, arch='<arch>', store='<store>')}{alt.format(profile=profile, store='<store>')}")
        for o in step.outputs:
            print(f"    -> {o.format(profile=profile, arch='<arch>', store='<store>')}")


def _profile_argument(value: str) -> str:
    """A profile name, or the path of a profile file (registered, and passed on to the notebooks' kernels
    through ``PAPERLIB_PROFILES``): its name."""
    if not value.endswith((".toml", ".json")) or value in PROFILES:
        return value
    from ..sources import profile_file

    path = Path(value).resolve()
    if not path.is_file():
        raise ParameterError(f"profile file {value} does not exist")
    try:
        plan = profile_file.load(path, set(PROFILES) - set(profile_file.IMPORTED))
    except profile_file.ProfileFileError as exc:
        raise ParameterError(str(exc)) from None
    PROFILES[plan.profile.name] = plan.profile
    os.environ["PAPERLIB_PROFILES"] = os.pathsep.join(p for p in (os.environ.get("PAPERLIB_PROFILES"), str(path)) if p)
    return plan.profile.name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paperlib.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default", help=f"one of {sorted(PROFILES)} (default: default)")
    parser.add_argument("--only", action="append", choices=STEP_NAMES, metavar="NAME",
                        help=f"run only this notebook (repeatable): {', '.join(STEP_NAMES)}")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                        help="override a notebook parameter (ranges: --list)")
    parser.add_argument("--list", action="store_true",
                        help="list notebooks, parameters and their ranges, inputs and outputs, then exit")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress lines (runs, graphs, evaluations done and the time left) on stderr")
    parser.add_argument("--write-headers", action="store_true",
                        help="regenerate every notebook's header (what it reads and rewrites) from STEPS, then exit")
    args = parser.parse_args(argv)
    try:
        args.profile = _profile_argument(args.profile)
        steps = steps_for(args.profile, args.only or ())
        if args.list:
            _list(args.profile)
            return 0
        if args.write_headers:
            from ..notebooks import write_headers

            for path in write_headers():
                print(f"rewrote {paths.relative(path)}")
            return 0
        return run(steps, args.profile, args.parameter, progress=not args.no_progress)
    except (ParameterError, MissingInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
