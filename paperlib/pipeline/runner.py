"""The pipeline, declared once, and its headless runner.

``python -m paperlib.pipeline`` executes the numbered notebooks in order with
papermill, on one profile::

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
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from .. import paths
from ..steps import STEP_NAMES, get_step, notebook_path
from .checks import CLASS_STEPS, PopulationError, class_message, class_problems, import_warnings, skipped_steps
from .inputs import MissingInputError, _missing_message, _missing_outputs, check_datasets, check_inputs
from .kernel import KERNEL, Interrupted, _kernel_env, _kernel_manager_class, _signals
from ..files import read_manifest
from .manifest import _effective_spec, _now, _strip_machine_paths, provenance
from .parameters import ParameterError, resolve_parameters


def preflight(steps: Sequence[str], profile: str, raw_params: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Everything checked before a notebook runs: parameters, ranges, datasets (when 01_train is
    selected), the networks per class of an imported profile whose ``runs.csv`` exists (when a step
    of :data:`checks.CLASS_STEPS` is selected without 01_import; after 01_import the runner makes it),
    inputs.

    Returns the parameters per step; raises ParameterError (PopulationError) or MissingInputError
    (MissingDatasetError).
    """
    for s in steps:
        if not notebook_path(s).exists():
            raise ParameterError(f"{paths.relative(notebook_path(s))}: notebook of step {s} does not exist")
    per_step = resolve_parameters(steps, profile, raw_params)
    if "01_train" in steps:
        check_datasets(profile)
    order = [s for s in STEP_NAMES if s in steps]
    if any(s in CLASS_STEPS for s in order) and "01_import" not in order \
            and get_step("01_import").applies_to(profile) and paths.results_dir(profile).joinpath("runs.csv").exists():
        errors, _ = class_problems(profile)  # made right after 01_import when it is selected
        if errors:
            raise PopulationError(class_message(profile, errors, order[0]))
    for i, s in enumerate(order):
        missing = check_inputs(s, profile, made_before=order[:i])
        if missing:
            raise MissingInputError(_missing_message(s, profile, missing))
    return per_step


def _select(steps: Sequence[str], profile: str) -> tuple[list[str], dict[str, str]]:
    """The steps to run, in order, and those skipped with the reason (:func:`checks.skipped_steps`);
    a selection of nothing but skipped steps is a ParameterError."""
    steps = [s for s in STEP_NAMES if s in steps and get_step(s).applies_to(profile)]
    skips = skipped_steps(profile, steps)
    if skips and len(skips) == len(steps):
        name, why = next(iter(skips.items()))
        raise ParameterError(f"step {name} cannot run: {why}")
    return [s for s in steps if s not in skips], skips


def _after_import(profile: str, following: Sequence[str]) -> str | None:
    """Print 01_import's warnings; the reason the run stops before the ``following`` steps (the class check,
    when one of them evaluates the classes), or None."""
    for warning in import_warnings(profile):
        print(f"      warning: {warning}", flush=True)
    if not any(s in CLASS_STEPS for s in following):
        return None
    errors, notes = class_problems(profile)
    for note in notes:
        print(f"      note: {note}", flush=True)
    return class_message(profile, errors, following[0]) if errors else None


def run(steps: Sequence[str], profile: str, raw_params: Sequence[str] = (), progress: bool = True) -> int:
    """Run ``steps`` in order; returns the process exit code (0 ok, 1 failed, 2 stopped by a check of the
    imported populations after 01_import, 130 interrupted).

    Raises ParameterError or MissingInputError (nothing written) when :func:`preflight` fails.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from ..files import atomic_write_json

    steps, skips = _select(steps, profile)
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
        **({"skipped_steps": skips} if skips else {}),
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
    for name, why in skips.items():
        print(f"skipped: {name}: {why}", flush=True)
    try:
        with _signals() as signals, _kernel_env(progress_file):
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
                        if signals.received:  # the client may return as if the notebook had finished
                            raise Interrupted(signals.received)
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
                    except BaseException:  # e.g. the client's event loop cancelled by the interrupt
                        if signals.received:
                            raise Interrupted(signals.received) from None
                        raise
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
                if name == "01_import":
                    stop = _after_import(profile, steps[i:])
                    if stop:
                        manifest["error"] = stop
                        print(f"\nSTOPPED before {steps[i]}: {stop}", file=sys.stderr, flush=True)
                        code = 2
                        break
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
    for name, why in skips.items():
        print(f"skipped: {name} ({why.split(';')[0]})", flush=True)
    return code

