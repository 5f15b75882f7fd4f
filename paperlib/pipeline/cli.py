"""The command line: ``python -m paperlib.pipeline``.

``python -m paperlib.pipeline`` executes the numbered notebooks in order with
papermill, on one profile::
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from .. import paths
from ..profiles import PROFILES
from ..steps import STEP_NAMES, STEPS, notebook_path
from .inputs import MissingInputError, steps_for
from .parameters import PARAMETERS, ParameterError, declared_parameters
from .runner import run


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
    from .. import profile_files

    path = Path(value).resolve()
    if not path.is_file():
        raise ParameterError(f"profile file {value} does not exist")
    try:
        plan = profile_files.load(path, set(PROFILES) - set(profile_files.IMPORTED))
    except profile_files.ProfileFileError as exc:
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

