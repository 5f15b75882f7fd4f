"""What the runner checks about a profile's populations before the notebooks that need it start.

* :func:`skipped_steps`: a step that has nothing to do on a profile is skipped, not failed:
  ``05_q2`` on a profile without ``transfers`` (Q2 trains on some populations and tests on
  another; a one-population profile has none). The runner says so and runs every other step.
* :func:`class_problems`: Q1 (``04_q1``) cross-validates every population in ``n_folds`` grouped
  folds, which needs at least ``n_folds`` networks of each class ("high": final accuracy at or
  above the population's ``threshold``, not diverged) and configurations enough
  (:func:`paperlib.evaluate.evaluation.class_problem`, the check 04 itself makes). The labels are
  known once the runs are (``runs.csv``), so for an imported profile the runner makes this check
  right after ``01_import`` (or before the first step when ``runs.csv`` exists and 01_import is not
  selected), before ``02_graph`` spends its time, whenever a step of :data:`CLASS_STEPS` is
  selected. A population that fails it stops the run with a
  message naming the profile fields to change. Where the folds are possible but a class will have
  fewer than :data:`paperlib.evaluate.tuning.INNER_FOLDS` members in an outer training fold (the
  inner search then uses fewer folds for it), one note says so once.
* :func:`import_warnings`: what 01_import found about ``t_max`` and ``epochs``
  (:func:`paperlib.sources.importer.horizon_warnings`), for the runner to print.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from .. import files
from .parameters import ParameterError


#: the steps that evaluate the high/low classes of every population (the class check applies when one is selected)
CLASS_STEPS = ("04_q1", "05_q2", "07_early_stopping")


class PopulationError(ParameterError):
    """A population that the selected steps cannot evaluate (too few networks of a class for ``n_folds``)."""


def _profile(name: str) -> Any:
    from .inputs import _profile as effective

    return effective(name)


def skipped_steps(profile: str, steps: Sequence[str]) -> dict[str, str]:
    """The selected steps that have nothing to do on ``profile``, with the reason."""
    P = _profile(profile)
    out = {}
    if "05_q2" in steps and not P.transfers:
        out["05_q2"] = (f"profile {profile!r} has no transfers; Q2 trains on some populations and tests on "
                        "another: add a [[transfers]] table (name, train = [populations], test = population) to "
                        "the profile file to run it")
    return out


def class_problems(profile: str) -> tuple[list[str], list[str]]:
    """``(errors, notes)`` about the classes of every population of ``profile`` in ``runs.csv``.

    An error: a population that Q1 cannot cross-validate in ``n_folds`` folds (04_q1 would skip
    it, and fail when no population is left). A note: a class with fewer than ``INNER_FOLDS``
    members in some outer training fold.
    """
    from ..evaluate.evaluation import class_problem
    from ..evaluate.tuning import INNER_FOLDS
    from ..features.population import configuration_groups, population_labels

    P = _profile(profile)
    runs = files.read_runs(profile)
    errors, notes = [], []
    for pop in P.populations:
        df = runs[runs["arch"] == pop.arch]
        y = population_labels(df["final_acc"].to_numpy(), files.diverged(df).to_numpy(), pop.threshold)
        high, low = int(y.sum()), int(len(y) - y.sum())
        why = class_problem(y, configuration_groups(df), P.n_folds) if len(df) else "no networks"
        if why:
            why = why.removeprefix(f"{high} high / {low} low networks: ")
            errors.append(f"population {pop.arch}: {len(df)} networks, {high} high (final accuracy >= threshold "
                          f"{pop.threshold:g}) and {low} low: {why}. Q1 cross-validates in n_folds = {P.n_folds} "
                          "grouped folds and needs at least that many networks of each class: change threshold "
                          f"(population {pop.arch}) or n_folds ([analysis]) in the profile file, or import more "
                          "networks (limit, where)")
            continue
        smallest = min(high, low)
        in_training = smallest - math.ceil(smallest / P.n_folds)
        if in_training < INNER_FOLDS:
            notes.append(f"population {pop.arch}: {high} high / {low} low networks; an outer training fold of "
                         f"n_folds = {P.n_folds} holds about {in_training} of the smaller class, fewer than the "
                         f"{INNER_FOLDS} inner folds of the hyperparameter search, which uses fewer folds there")
    return errors, notes


def class_message(profile: str, errors: Sequence[str], before: str) -> str:
    lines = [f"profile {profile}: Q1 (04_q1, and 05_q2, 07_early_stopping after it) cannot evaluate every "
             f"population, so nothing from {before} on runs:"]
    lines += [f"  - {e}" for e in errors]
    lines.append("The imported runs are kept; after changing the profile file, rerun from 01_import "
                 "(unchanged networks are not read again).")
    return "\n".join(lines)


def import_warnings(profile: str) -> list[str]:
    """The warnings 01_import recorded in ``metrics.json`` (its ``import`` section)."""
    return list(files.read_metrics(profile).get("import", {}).get("warnings", []))
