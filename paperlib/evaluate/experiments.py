"""Q1 and Q2: predicting high/low final accuracy from the first t epochs (step S4).

Both questions run through one evaluator (:mod:`paperlib.evaluate.evaluation`: tasks, grouped nested
cross-validation, tuned classifiers, read-outs) and one planner (:func:`plan`), which also
yields the combinations it skips, with their reasons.

* **Q1**, per population: repeated grouped cross-validation (``n_folds`` folds, one
  repetition per fold seed of the profile).
* **Q2**, per transfer of the profile: train on whole populations, test on another one;
  the repetitions are over the same seeds (inner splits, MLP initialisation).

Feature sets: the profile's, plus the combined sets ``learning-curve+deg`` and
``learning-curve+evec`` (does the graph add anything to the learning curve?) where both
parts are available; Q2 adds the size-aware signatures ``deg-sa`` and ``evec-sa`` (our
addition, :mod:`paperlib.features.sets`). A feature set whose width differs between the
populations of a transfer (``B_Wl`` across different last layers) cannot transfer and is
skipped with that reason.

**Reduction forced by the time budget** (:data:`SWEEP`). Every t is evaluated only for the
sets that Figures 3 and 4 draw against t: the SVM for ``deg``, ``evec`` (and, in Q2,
``deg-sa``, ``evec-sa``) in every mode and the learning curve; the MLP (L-BFGS to convergence
costs one to two orders of magnitude more than libsvm per fit) for the plain mode of the
graph signatures only, at every other t (1, 3, 5, ... and the last). Every other feature set
and mode is evaluated at the last t only, which is all that Table 2 and its paired tests
need. ``full=True`` sweeps everything. The choice is recorded
in ``metrics.json`` (``q1.protocol.svm_every_t`` / ``mlp_every_t``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from .. import files
from .evaluation import ROW_KEYS, Networks, Plan, Skip, Task, run_tasks, usable_ts
from .tuning import protocol as eval_protocol
from ..features.sets import COMBINED, SIZE_AWARE_SETS, feature_set
from ..features.population import PopulationFeatures, load_population
from ..files import Q1_COLUMNS, Q2_COLUMNS, SKIP_COLUMNS, update_metrics
from ..profile_types import Profile

N_JOBS = 2
#: per classifier, the (mode, feature set) pairs evaluated at every t; None: all of them
_FIGURE_SETS = ("deg", "evec", "deg-sa", "evec-sa")  # the sets Figures 3 and 4 draw against t
SWEEP: dict[str, set[tuple[str, str]] | None] = {
    "svm": {(m, s) for m in ("plain", "wavg", "expavg") for s in _FIGURE_SETS} | {("plain", "learning-curve")},
    "mlp": {("plain", s) for s in _FIGURE_SETS},
}
#: the MLP's sweep takes every other t (1, 3, 5, ...) and the last one
MLP_SWEEP_STEP = 2


def feature_sets_for(profile: Profile, experiment: str) -> list[str]:
    """The profile's feature sets, then the combined ones (Q1, Q2) and the size-aware ones (Q2 only)."""
    names = list(profile.feature_sets)
    for name in COMBINED:
        if all(p in names for p in feature_set(name).parts) and name not in names:
            names.append(name)
    if experiment == "q2":
        for name in SIZE_AWARE_SETS:
            if all(p in names for p in feature_set(name).parts) and name not in names:
                names.append(name)
    return names


def _modes(profile: Profile, name: str) -> tuple[str, ...]:
    return tuple(m for m in profile.modes if m in feature_set(name).modes)


def _ts_for(clf: str, mode: str, name: str, ts: list[int], full: bool) -> list[int]:
    sweep = SWEEP.get(clf)
    if full or sweep is None:
        return ts
    if (mode, name) not in sweep:
        return ts[-1:]
    if clf == "mlp":
        return sorted(set(ts[::MLP_SWEEP_STEP]) | set(ts[-1:]))
    return ts


def plan(profile: Profile, experiment: str, full: bool = False,
         features: dict[str, PopulationFeatures] | None = None) -> Plan:
    """Every task of ``experiment`` ("q1" or "q2") and every skipped combination with its reason.

    ``features`` (arch -> features) defaults to the cached features of the profile.
    """
    cache = dict(features or {})

    def get(arch: str) -> PopulationFeatures:
        if arch not in cache:
            cache[arch] = load_population(profile, arch)
        return cache[arch]

    if experiment == "q1":
        setups = [("q1", (get(pop.arch),), None, min(pop.t_max, get(pop.arch).t_available))
                  for pop in profile.populations]
    elif experiment == "q2":
        setups = []
        for tr in profile.transfers:
            train, test = tuple(get(a) for a in tr.train), get(tr.test)
            t_max = min([test.t_available, profile.population(tr.test).t_max]
                        + [min(f.t_available, profile.population(f.arch).t_max) for f in train])
            setups.append((tr.name, train, test, t_max))
    else:
        raise ValueError(f"unknown experiment {experiment!r}; use 'q1' or 'q2'")

    out = Plan()
    for name_, train, test, t_max in setups:
        ts = list(range(1, t_max + 1))
        target = test if test is not None else train[0]
        for fs in feature_sets_for(profile, experiment):
            for mode in _modes(profile, fs):
                for clf in profile.classifiers:
                    def skip(reason: str, t: int | None = None) -> None:
                        out.skipped.append(Skip(experiment, name_, target.dataset, target.arch, fs, mode, clf, t,
                                                reason))

                    missing = [f.arch for f in (*train, *([test] if test is not None else [])) if not f.available(fs)]
                    if missing:
                        skip("; ".join(f"{a}: {get(a).why_missing(fs)}" for a in missing))
                        continue
                    if test is not None:
                        widths = {f.arch: f.width(fs) for f in (*train, test)}
                        if len(set(widths.values())) > 1:
                            skip(f"per-epoch widths differ across architectures ({widths}): cannot transfer")
                            continue
                    if not ts:
                        skip("no trained epoch available")
                        continue
                    task = Task(experiment, name_, tuple(networks(f, fs) for f in train),
                                networks(test, fs) if test is not None else None, fs, mode, clf,
                                tuple(_ts_for(clf, mode, fs, ts, full)), tuple(profile.fold_seeds),
                                profile.n_folds, profile.alpha, profile.include_epoch0)
                    ok, bad = usable_ts(task)
                    for t, why in bad:
                        skip(why, t)
                    if ok:
                        out.tasks.append(Task(**{**task.__dict__, "ts": tuple(ok)}))
    return out


def networks(f: PopulationFeatures, name: str) -> Networks:
    """What the evaluator reads of population ``f`` for feature set ``name``: arrays only."""
    return Networks(arch=f.arch, dataset=f.dataset, threshold=f.threshold, keys=f.keys, X=f.matrix(name),
                    width=f.width(name), temporal=feature_set(name).temporal, y=f.labels, groups=f.groups,
                    final_acc=f.final_acc, alive=np.stack([f.alive(t) for t in range(f.t_available + 1)], axis=1))


def _skipped_frame(skipped: list[Skip]) -> pd.DataFrame:
    return pd.DataFrame([s.row() for s in skipped], columns=SKIP_COLUMNS)


def _fit_summary(df: pd.DataFrame) -> dict[str, Any]:
    out = {}
    for clf, g in df.groupby("classifier"):
        out[clf] = {"fits": int(g["n_fits"].sum()), "not_converged": int(g["n_not_converged"].sum())}
    return out


# --------------------------------------------------------------------------- Q1
def run_q1(profile: Profile, n_jobs: int = N_JOBS, full: bool = False) -> pd.DataFrame:
    """Q1 on every population, t, feature set, mode and classifier of the profile.

    Writes ``results/<profile>/q1.csv`` (one row per dataset, arch, feature set, mode,
    classifier, t and fold seed; columns :data:`Q1_COLUMNS`), the skipped combinations to
    ``q1_skipped.csv``, and the headline numbers to the ``q1`` section of ``metrics.json``.
    Nothing is written when no task can run (the inputs are then degenerate).
    """
    p = plan(profile, "q1", full)
    if not p.tasks:
        raise ValueError(f"profile {profile.name!r}: no Q1 combination can be evaluated: "
                         + "; ".join(sorted({f"{s.arch}: {s.reason}" for s in p.skipped}))[:2000])
    rows = run_tasks(p.tasks, n_jobs, "Q1")
    df = pd.DataFrame(rows).rename(columns={"seed": "fold_seed"})[Q1_COLUMNS]
    df = df.sort_values(["dataset", "arch", "feature_set", "mode", "classifier", "t", "fold_seed"],
                        kind="stable").reset_index(drop=True)
    files.write_table(profile, "q1.csv", df)
    skipped = files.write_table(profile, "q1_skipped.csv", _skipped_frame(p.skipped))
    if p.skipped:
        warnings.warn(f"Q1 skipped {len(p.skipped)} combination(s); see {skipped}", stacklevel=2)
    update_metrics(profile.name, "q1", q1_headline(profile, df, len(p.skipped), full))
    return df


def _plain_at_last_t(last: pd.DataFrame) -> dict[str, Any]:
    """``{feature_set: {classifier: {...}}}`` of the plain mode (no mode is picked on test scores)."""
    out: dict[str, Any] = {}
    plain = last[last["mode"] == "plain"]
    for (name, clf), h in plain.groupby(["feature_set", "classifier"]):
        out.setdefault(name, {})[clf] = {"accuracy": round(float(h["accuracy"].mean()), 4),
                                         "std": round(float(h["accuracy"].std(ddof=0)), 4),
                                         "balanced_accuracy": round(float(h["balanced_accuracy"].mean()), 4),
                                         "single_class_seeds": int(h["single_class"].astype(bool).sum()),
                                         "spearman": round(float(h["spearman"].mean()), 4)}
    return out


def protocol(profile: Profile, full: bool = False) -> dict[str, Any]:
    return {"n_folds": profile.n_folds, "fold_seeds": list(profile.fold_seeds), **eval_protocol(),
            "alpha": profile.alpha, "include_epoch0": profile.include_epoch0,
            **{f"{clf}_every_t": "all" if full or SWEEP[clf] is None else sorted(
                f"{name}/{mode}" for mode, name in SWEEP[clf]) for clf in SWEEP},
            "mlp_sweep_t": "all" if full else f"every {MLP_SWEEP_STEP}nd t from 1, and the last"}


def q1_headline(profile: Profile, df: pd.DataFrame, n_skipped: int, full: bool = False) -> dict[str, Any]:
    """Per architecture, at its last t: mean and spread over fold seeds of every feature set (plain mode)."""
    out: dict[str, Any] = {"n_rows": int(len(df)), "n_skipped": n_skipped,
                           "protocol": protocol(profile, full), "fits": _fit_summary(df), "per_arch": {}}
    for arch, g in df.groupby("arch", sort=False):
        last = g[g["t"] == g["t"].max()]
        out["per_arch"][arch] = {"t": int(g["t"].max()),
                                 "majority_accuracy": round(float(last["majority_accuracy"].mean()), 4),
                                 "n_networks": int(last["n_networks"].iloc[0]), "n_high": int(last["n_high"].iloc[0]),
                                 "n_decided": int(last["n_decided"].iloc[0]),
                                 **_plain_at_last_t(last)}
    return out


# --------------------------------------------------------------------------- Q2
def run_q2(profile: Profile, n_jobs: int = N_JOBS, full: bool = False) -> pd.DataFrame:
    """Q2 on every transfer of the profile.

    Writes ``results/<profile>/q2.csv`` (one row per transfer, feature set, mode, classifier,
    t and seed; columns :data:`Q2_COLUMNS`), the skipped combinations to ``q2_skipped.csv``
    and the ``q2`` section of ``metrics.json``.
    """
    p = plan(profile, "q2", full)
    rows = run_tasks(p.tasks, n_jobs, "Q2")
    df = pd.DataFrame(rows, columns=ROW_KEYS).rename(columns={
        "arch": "test_arch", "n_networks": "n_test", "n_high": "n_high_test", "threshold": "test_threshold"})
    df = df[Q2_COLUMNS].sort_values(["transfer", "feature_set", "mode", "classifier", "t", "seed"],
                                    kind="stable").reset_index(drop=True)
    files.write_table(profile, "q2.csv", df)
    files.write_table(profile, "q2_skipped.csv", _skipped_frame(p.skipped))
    update_metrics(profile.name, "q2", q2_headline(df, len(p.skipped)) | {
        "protocol": protocol(profile, full)})
    return df


def q2_headline(df: pd.DataFrame, n_skipped: int) -> dict[str, Any]:
    """Per transfer, at its last t: mean and spread over seeds of every feature set (plain mode)."""
    out: dict[str, Any] = {"n_rows": int(len(df)), "n_skipped": n_skipped,
                           "fits": _fit_summary(df) if len(df) else {}, "per_transfer": {}}
    for transfer, g in df.groupby("transfer", sort=False):
        last = g[g["t"] == g["t"].max()]
        out["per_transfer"][transfer] = {"train": g["train_archs"].iloc[0], "test": g["test_arch"].iloc[0],
                                         "t": int(g["t"].max()),
                                         "majority_accuracy": round(float(last["majority_accuracy"].mean()), 4),
                                         **_plain_at_last_t(last)}
    return out
