"""The pipeline, declared once, and its headless runner.

``python -m paperlib.pipeline`` executes the numbered notebooks in order with
papermill, on one profile::

    python -m paperlib.pipeline                      # all notebooks, default profile
    python -m paperlib.pipeline --profile smoke      # the fast profile of the tests
    python -m paperlib.pipeline --only 04_q1         # one notebook (repeatable)
    python -m paperlib.pipeline -p epochs=5          # override a notebook parameter

Before anything runs, every ``-p key=value`` is checked against the ``parameters``
cells of the selected notebooks: an unknown name, or a value that does not parse as
the declared type (``int``, ``float``, ``bool``, ``str``), is an error that names it.
papermill itself would only warn and pass ``2.0`` for an ``int``. A parameter goes to
every selected notebook that declares it.

Executed notebooks go to ``results/executed/<profile>/``; a provenance record
(``results/<profile>/manifest.json``) is written with every run, failed runs included.
The runner stops at the first failing notebook, prints its name and the failing
cell's error, and exits non-zero.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import paths
from .profiles import PROFILES
from .store import atomic_write_json


@dataclass(frozen=True)
class Step:
    """One notebook of the pipeline and the outputs it writes (relative to the repo root;
    ``{profile}`` is replaced by the profile's name)."""

    name: str
    title: str
    outputs: tuple[str, ...]


STEPS: tuple[Step, ...] = (
    Step("01_train", "Train populations, snapshot every epoch; Table 1",
         ("results/{profile}/runs.csv", "results/{profile}/table1.csv", "results/{profile}/table1.md")),
    Step("02_graph", "Rolled and unrolled graphs, centralities of every snapshot (S1, S2)",
         ("results/{profile}/centralities.csv", "results/{profile}/graph_sizes.csv",
          "figures/{profile}/fig1.png", "figures/{profile}/fig1.pdf")),
    Step("03_features", "Graph signatures, baselines and the learning-curve baseline (S3)",
         ("results/{profile}/features.csv",)),
    Step("04_q1", "Q1: performance prediction per architecture; Table 2, Figure 3",
         ("results/{profile}/q1.csv", "results/{profile}/table2.csv", "results/{profile}/table2.md",
          "results/{profile}/table2.tex", "figures/{profile}/fig3.png", "figures/{profile}/fig3.pdf")),
    Step("05_q2", "Q2: generalising to unseen depths, architectures and widths; Figure 4",
         ("results/{profile}/q2.csv", "figures/{profile}/fig4.png", "figures/{profile}/fig4.pdf")),
    Step("06_q3", "Q3: cost of the graph features next to training; Figure 5",
         ("results/{profile}/q3.csv", "figures/{profile}/fig5.png", "figures/{profile}/fig5.pdf")),
)
STEP_NAMES = tuple(s.name for s in STEPS)

KERNEL = "python3"
_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


class ParameterError(ValueError):
    """An unknown or mistyped notebook parameter."""


def notebook_path(name: str) -> Path:
    return paths.NOTEBOOKS / f"{name}.ipynb"


def declared_parameters(name: str) -> dict[str, dict[str, Any]]:
    """``{param: {"type": "int", "default": ..., "help": ...}}`` from a notebook's ``parameters`` cell.

    The cell holds one ``name: type = literal  # comment`` per line.
    """
    import nbformat

    path = notebook_path(name)
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
        per_step[s] = params
    return per_step


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=paths.ROOT, capture_output=True, text=True,
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
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "python": sys.version.split()[0],
        "packages": versions,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpu_count": os.cpu_count(),
            "gpu": gpu,
        },
    }


def _strip_machine_paths(path: Path) -> None:
    """Make an executed notebook speak only of the repository: paths relative to its root,
    the environment's prefix as ``<env>``."""
    text = path.read_text()
    for prefix, repl in ((sys.prefix, "<env>"), (str(paths.ROOT) + os.sep, ""), (str(paths.ROOT), ".")):
        text = text.replace(prefix, repl)
    path.write_text(text)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run(steps: Sequence[str], profile: str, raw_params: Sequence[str] = (), progress: bool = True) -> int:
    """Run ``steps`` in order; returns the process exit code."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from .profiles import get_profile

    per_step = resolve_parameters(steps, profile, raw_params)  # may raise: nothing has run yet
    out_dir = paths.ensure(paths.executed_dir(profile))
    paths.ensure(paths.results_dir(profile))
    manifest: dict[str, Any] = {
        "profile": profile,
        "profile_spec": get_profile(profile).to_dict(),
        "command_parameters": list(raw_params),
        "started": _now(),
        "finished": None,
        "status": "running",
        "steps": [],
        **provenance(),
    }
    atomic_write_json(paths.manifest_path(profile), manifest)
    code = 0
    for i, name in enumerate(steps, 1):
        params = per_step[name]
        print(f"[{i}/{len(steps)}] {name} ({profile}) {params}", flush=True)
        t0 = time.perf_counter()
        record: dict[str, Any] = {"notebook": name, "parameters": params, "started": _now()}
        try:
            pm.execute_notebook(
                str(notebook_path(name)),
                str(out_dir / f"{name}.ipynb"),
                parameters=params,
                kernel_name=KERNEL,
                cwd=str(paths.NOTEBOOKS),
                progress_bar=progress,
                log_output=False,
            )
            record["status"] = "ok"
            _strip_machine_paths(out_dir / f"{name}.ipynb")
        except PapermillExecutionError as exc:
            record["status"] = "failed"
            record["error"] = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
            print(f"\nFAILED: notebook {name} ({out_dir / (name + '.ipynb')}), "
                  f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}", file=sys.stderr, flush=True)
            code = 1
        except Exception as exc:  # kernel died, notebook unreadable, ...
            record["status"] = "failed"
            record["error"] = f"{type(exc).__name__}: {exc}"
            print(f"\nFAILED: notebook {name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            code = 1
        record["finished"] = _now()
        record["seconds"] = round(time.perf_counter() - t0, 1)
        manifest["steps"].append(record)
        atomic_write_json(paths.manifest_path(profile), manifest)
        if code:
            break
        print(f"      {name} done in {record['seconds']:.1f} s", flush=True)
    manifest["finished"] = _now()
    manifest["status"] = "failed" if code else "ok"
    manifest["seconds"] = round(sum(s["seconds"] for s in manifest["steps"]), 1)
    atomic_write_json(paths.manifest_path(profile), manifest)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paperlib.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default", help=f"one of {sorted(PROFILES)} (default: default)")
    parser.add_argument("--only", action="append", choices=STEP_NAMES, metavar="NAME",
                        help=f"run only this notebook (repeatable): {', '.join(STEP_NAMES)}")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                        help="override a notebook parameter")
    parser.add_argument("--list", action="store_true", help="list notebooks, parameters and outputs, then exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    steps = [s for s in STEP_NAMES if not args.only or s in args.only]
    if args.list:
        for step in STEPS:
            print(f"{step.name}: {step.title}")
            for k, v in declared_parameters(step.name).items():
                print(f"    -p {k}=<{v['type']}>  (default {v['default']!r})  {v['help']}")
            for o in step.outputs:
                print(f"    -> {o.format(profile=args.profile)}")
        return 0
    try:
        return run(steps, args.profile, args.parameter, progress=not args.no_progress)
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
