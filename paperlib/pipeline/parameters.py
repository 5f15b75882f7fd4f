"""Notebook parameters: read from each notebook's ``parameters`` cell, typed and range-checked.

Every ``-p key=value`` is checked against the ``parameters``
cells of the selected notebooks (an unknown name, or a value that does not parse as the declared
type, is an error that names it; papermill itself would only warn and pass ``2.0`` for an
``int``) and against the ranges of :data:`PARAMETERS`; the notebooks' own defaults must be in
range too. Then every input of every selected step must exist and be non-empty, unless an
earlier selected step makes it. Any of these problems exits with status 2 before a notebook
runs, and the message names the parameter, or the missing file and the step (and command) that
makes it. Nothing is written in that case, the manifest included.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Sequence

from .. import paths
from ..profiles import PROFILES
from ..steps import notebook_path

_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


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
    "replicates": Param(minimum=0, note="population replicates; 0 keeps the profile's value"),
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

