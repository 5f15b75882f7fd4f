"""The command line of the pipeline: ``python -m paperlib.pipeline``.

It runs the numbered notebooks of one profile in order with papermill, after checking every
parameter against the notebooks and every input against :data:`paperlib.steps.STEPS`; its
``--help`` (:data:`DESCRIPTION`, :func:`_epilog`) is plain text, for a terminal.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
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


DESCRIPTION = """\
Runs the pipeline that regenerates the paper's figures and tables: the numbered notebooks
(01_train or 01_import, 02_graph ... 07_early_stopping) of one profile, in order, with
papermill. Parameters (-p) and the inputs of every step are checked before any notebook runs;
a wrong parameter, a missing input or a missing dataset stops it with exit status 2 and names
the step or command that makes what is missing. Outputs go to results/<profile>/ and
figures/<profile>/, executed notebooks to results/executed/<profile>/, provenance to
results/<profile>/manifest.json."""


def _epilog() -> str:
    """The profiles, built-in apart from the profile files of imported populations, and examples."""
    from .. import profile_files

    builtin = [name for name in PROFILES if profile_files.plan_of(name) is None]
    imported = [name for name in PROFILES if profile_files.plan_of(name) is not None]

    def item(name: str, what: str) -> list[str]:
        return textwrap.wrap(what, 96, initial_indent=f"  {name:<20}", subsequent_indent=" " * 22) or [f"  {name}"]

    lines = ["built-in profiles (trained by 01_train; paperlib/profiles.py):"]
    for name in builtin:
        lines += item(name, PROFILES[name].description)
    lines += ["", "profile files of imported populations (01_import instead of 01_train): examples in profiles/,",
              "more in $PAPERLIB_PROFILES, or the path of a .toml or .json file:"]
    for name in imported:
        lines += item(name, f"{PROFILES[name].description} ({paths.relative(profile_files.plan_of(name).file)})")
    if not imported:
        lines.append("  (none found)")
    lines += ["", "examples:",
              "  python -m paperlib.pipeline                                    every step of the default profile",
              "  python -m paperlib.pipeline --profile smoke                    the fast profile (minutes)",
              "  python -m paperlib.pipeline --only 04_q1                       Table 2 and Fig. 3 from the committed data",
              "  python -m paperlib.pipeline --profile smoke -p epochs=3        override a parameter (ranges: --list)",
              "  python -m paperlib.pipeline --profile path/to/my-zoo.toml      import and analyse your own checkpoints"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paperlib.pipeline", description=DESCRIPTION, epilog=_epilog(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default",
                        help="a profile's name or the path of a profile file (default: default; the list below)")
    parser.add_argument("--only", action="append", choices=STEP_NAMES, metavar="NAME",
                        help=f"run only this notebook (repeatable): {', '.join(STEP_NAMES)}")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                        help="override a notebook parameter (ranges: --list)")
    parser.add_argument("--list", action="store_true",
                        help="list notebooks, parameters and their ranges, inputs and outputs, then exit")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress lines (runs, graphs, evaluations done and the time left) on stderr")
    parser.add_argument("--write-headers", action="store_true",
                        help="regenerate every notebook's header (what it reads and rewrites) from STEPS and the "
                             "parameters table of docs/profiles.md, then exit")
    args = parser.parse_args(argv)
    try:
        args.profile = _profile_argument(args.profile)
        steps = steps_for(args.profile, args.only or ())
        if args.list:
            _list(args.profile)
            return 0
        if args.write_headers:
            from ..notebooks import write_headers, write_parameters_table

            for path in [*write_headers(), write_parameters_table()]:
                if path is not None:
                    print(f"rewrote {paths.relative(path)}")
            return 0
        return run(steps, args.profile, args.parameter, progress=not args.no_progress)
    except (ParameterError, MissingInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

