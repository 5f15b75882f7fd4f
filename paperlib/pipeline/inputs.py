"""The inputs and outputs of a step: present and non-empty, or the step does not run.

A step never writes over committed results from missing data. Right before a step runs, its
inputs are checked again (an earlier step may have failed to make them); a notebook opened in
JupyterLab makes the same check in its setup cell with :func:`require_inputs`. After a step, its
declared outputs must exist and be non-empty, or the step counts as failed.

When 01_train is selected, every dataset the profile trains on
is loaded once by :func:`paperlib.train.data.load_dataset`, the check 01_train itself makes, before any
notebook runs; a missing or malformed one exits with status 2 and paperlib.train.data's message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .. import paths
from ..steps import STEP_NAMES, STEPS, Input, get_step, producer
from .parameters import ParameterError


class MissingInputError(FileNotFoundError):
    """Inputs of a step are missing or empty; the message names them and the notebook that makes them.

    In a notebook IPython shows only the message, without a traceback (:meth:`_render_traceback_`).
    """

    def _render_traceback_(self) -> list[str]:
        return f"{type(self).__name__}: {self}".splitlines()


class MissingDatasetError(MissingInputError):
    """A dataset the selected 01_train trains on is missing or malformed (paperlib.train.data's message)."""


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
        missing += [Missing(step, p, why, producer(inp, profile), inp.path) for p, why in problems]
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

