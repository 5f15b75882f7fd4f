"""Step 07: the simulated searches of :mod:`paperlib.stopping.search` on every population of a profile,
their files (``early_stopping.csv`` and ``.md``, the fitted predictors, ``metrics.json``) and their
reading.
"""


from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from .. import files, kernels, paths
from ..files import EARLY_STOPPING_COLUMNS as SUMMARY_COLUMNS, atomic_write_text
from .predictor import PREDICTOR_KINDS, RunPredictor, fit_population, population_array
from .search import (C_DEFAULT, MIN_RESOURCE, N_FOLD_SEEDS, N_FOLDS, N_STARTUP, PRUNER_LABELS, PRUNERS, REDUCTION_FACTOR,
                     cross_fit_proba, groups_from_runs, search_data, simulate, summarise)


# --------------------------------------------------------------------------- a profile
def _profile(profile: Any):
    if not isinstance(profile, str):
        return profile
    from .. import profiles

    if hasattr(profiles, "effective_profile"):
        return profiles.effective_profile(profile)
    return profiles.get_profile(profile)


def decision_window(feats: Any, pop: Any, t_min: int = 1) -> list[int]:
    """Epochs ``t_min..t_max`` at which pruners decide: up to the population's ``t_max`` and the cached epochs."""
    n_epochs = next(iter(feats.arrays.values())).shape[1]
    t_max = min(int(pop.t_max), n_epochs - 1)
    return list(range(int(t_min), t_max + 1))


def run_population(feats: Any, pop: Any, n_repeats: int = 200, n_trials: int = 0, n_folds: int = N_FOLDS,
                   n_fold_seeds: int = N_FOLD_SEEDS, stop_below: float = 0.5, t_min: int = 1, C: float = C_DEFAULT,
                   n_startup: int = N_STARTUP, min_resource: int = MIN_RESOURCE,
                   reduction_factor: int = REDUCTION_FACTOR, seed: int = 0) -> tuple[pd.DataFrame, dict[str, str]]:
    """Simulated searches on one population; returns the summary rows and the skipped pruners (why).

    Runs with one BLAS thread: the fits are tiny, and threads only add contention (16x slower on 2
    busy cores).
    """
    kernels.check("the simulated searches")
    with threadpool_limits(1):
        return _run_population(feats, pop, n_repeats, n_trials, n_folds, n_fold_seeds, stop_below, t_min, C,
                               n_startup, min_resource, reduction_factor, seed)


def _run_population(feats, pop, n_repeats, n_trials, n_folds, n_fold_seeds, stop_below, t_min, C, n_startup,
                    min_resource, reduction_factor, seed) -> tuple[pd.DataFrame, dict[str, str]]:
    data = search_data(feats)
    ts = decision_window(feats, pop, t_min)
    if not ts:
        raise ValueError(f"paperlib.stopping.pruning: {pop.arch}: no epoch to decide at (t_min={t_min}, t_max={pop.t_max})")
    probas: dict[str, list[np.ndarray]] = {}
    skipped: dict[str, str] = {}
    for kind, names in PREDICTOR_KINDS.items():
        absent = [nm for nm in names if nm not in feats.arrays]
        if absent:
            skipped[kind] = f"feature set(s) {absent} not available"
            continue
        A = population_array(feats, names)
        widths = tuple(int(feats.arrays[nm].shape[2]) for nm in names)

        def make(names=names, widths=widths) -> RunPredictor:
            return RunPredictor(feature_sets=names, widths=widths, t_min=ts[0], t_max=ts[-1], C=C,
                                threshold=float(feats.threshold))

        probas[kind] = [cross_fit_proba(A, data.labels, data.alive, data.groups, n_folds, s, make, ts)[0]
                        for s in range(n_fold_seeds)]
    pruners = [p for p in PRUNERS if p not in skipped]
    runs = simulate(data, ts, probas, n_repeats, n_trials, seed, pruners, stop_below, n_startup,
                    min_resource, reduction_factor)
    summary = summarise(runs)
    n = len(data.labels)
    summary.insert(0, "dataset", feats.dataset)
    summary.insert(1, "arch", feats.arch)
    summary = summary.assign(n_networks=n, n_high=int(data.labels.sum()),
                             n_trials=n if n_trials <= 0 else min(n_trials, n), n_repeats=n_repeats, n_folds=n_folds,
                             t_min=ts[0], t_max=ts[-1], stop_below=stop_below)
    return summary[SUMMARY_COLUMNS], skipped


def predictor_path(profile: str, arch: str, kind: str):
    """``results/<profile>/predictors/<arch>.<kind>`` (``.json`` + ``.npz``)."""
    if kind not in PREDICTOR_KINDS:
        raise KeyError(f"paperlib.stopping.pruning: unknown predictor kind {kind!r}; choose one of {sorted(PREDICTOR_KINDS)}")
    return paths.results_dir(profile) / "predictors" / f"{paths.safe_name(arch)}.{kind}"


def check_settings(n_repeats: int, n_trials: int, n_folds: int, n_fold_seeds: int, stop_below: float, t_min: int,
                   C: float, n_startup: int, min_resource: int, reduction_factor: int, seed: int) -> None:
    """ValueError naming every setting out of range."""
    bad = [f"{name}={value!r} must be {rule}" for name, value, ok, rule in (
        ("n_repeats", n_repeats, n_repeats >= 1, ">= 1"), ("n_trials", n_trials, n_trials >= 0, ">= 0 (0: all)"),
        ("n_folds", n_folds, n_folds >= 2, ">= 2"), ("n_fold_seeds", n_fold_seeds, n_fold_seeds >= 1, ">= 1"),
        ("stop_below", stop_below, 0.0 <= stop_below <= 1.0, "a probability in [0, 1]"),
        ("t_min", t_min, t_min >= 1, ">= 1"), ("C", C, C > 0, "> 0"), ("n_startup", n_startup, n_startup >= 0, ">= 0"),
        ("min_resource", min_resource, min_resource >= 1, ">= 1"),
        ("reduction_factor", reduction_factor, reduction_factor >= 2, ">= 2"), ("seed", seed, seed >= 0, ">= 0"))
        if not ok]
    if bad:
        raise ValueError("paperlib.stopping.pruning: " + "; ".join(bad))


def run_early_stopping(profile: Any, n_repeats: int = 200, n_trials: int = 0, n_folds: int = N_FOLDS,
                       n_fold_seeds: int = N_FOLD_SEEDS, stop_below: float = 0.5, t_min: int = 1, C: float = C_DEFAULT,
                       n_startup: int = N_STARTUP, min_resource: int = MIN_RESOURCE,
                       reduction_factor: int = REDUCTION_FACTOR, seed: int = 0) -> pd.DataFrame:
    """The early-stopping study on every population of ``profile``; writes its files.

    Writes ``results/<profile>/early_stopping.csv`` (columns :data:`SUMMARY_COLUMNS`), the
    Markdown table ``early_stopping.md``, the ``early_stopping`` section of ``metrics.json``, and
    for every population and predictor kind a predictor fitted on all its networks,
    ``results/<profile>/predictors/<arch>.<kind>.json|.npz`` (for :mod:`paperlib.stopping.hooks`). Nothing
    is written when a population's features are missing (FileNotFoundError names the step).
    """
    from ..features.population import load_population
    from ..files import update_metrics

    check_settings(n_repeats, n_trials, n_folds, n_fold_seeds, stop_below, t_min, C, n_startup, min_resource,
                   reduction_factor, seed)
    P = _profile(profile)
    loaded = [(pop, load_population(P, pop.arch)) for pop in P.populations]  # fails before any write
    for _, feats in loaded:
        if getattr(feats, "groups", None) is None:
            feats.groups = groups_from_runs(P.name, feats.keys)
    from ..progress import Progress

    frames, skipped, fitted = [], {}, []
    bar = Progress("early stopping", len(loaded), unit="populations")
    for pop, feats in loaded:
        summary, why = run_population(feats, pop, n_repeats, n_trials, n_folds, n_fold_seeds, stop_below, t_min,
                                      C, n_startup, min_resource, reduction_factor, seed)
        frames.append(summary)
        skipped.update({f"{pop.arch}/{k}": v for k, v in why.items()})
        ts = decision_window(feats, pop, t_min)
        side = P.image_size.get(pop.dataset) if hasattr(P, "image_size") else None
        from ..train.data import DATASETS

        shape = (int(DATASETS[pop.dataset].in_channels), int(side), int(side)) if side else None
        for kind in PREDICTOR_KINDS:
            if kind not in why:
                kernels.check("the early-stopping predictor")
                with threadpool_limits(1):
                    fitted.append((pop.arch, kind, fit_population(feats, kind, t_max=ts[-1], t_min=ts[0], C=C,
                                                                  input_shape=shape)))
        bar.update()
    bar.close()
    df = pd.concat(frames, ignore_index=True)
    files.write_table(P, "early_stopping.csv", df)
    atomic_write_text(paths.results_dir(P.name) / "early_stopping.md", early_stopping_markdown(df))
    for arch, kind, pred in fitted:
        pred.save(predictor_path(P.name, arch, kind))
    update_metrics(P.name, "early_stopping", headline(df) | {"skipped": skipped, "parameters": {
        "n_repeats": n_repeats, "n_trials": n_trials, "n_folds": n_folds, "n_fold_seeds": n_fold_seeds,
        "stop_below": stop_below, "t_min": t_min, "C": C, "n_startup": n_startup, "min_resource": min_resource,
        "reduction_factor": reduction_factor, "seed": seed}})
    return df


def read_early_stopping(profile: Any) -> pd.DataFrame:
    """``results/<profile>/early_stopping.csv``; missing: says which notebook writes it."""
    return files.read_table(profile, "early_stopping.csv")


# --------------------------------------------------------------------------- table, reading, figure
def early_stopping_display(df: pd.DataFrame) -> pd.DataFrame:
    """One row per population and pruner, formatted."""
    rows = []
    for r in df.itertuples(index=False):
        rows.append({
            "population": f"{r.arch} ({r.n_high}/{r.n_networks} high)",
            "pruner": PRUNER_LABELS.get(r.pruner, r.pruner),
            "compute saved": f"{r.saved_pct:.0f}%",
            "regret (points)": f"{r.regret_mean:.1f} ± {r.regret_std:.1f}",
            "searches without regret": f"{100 * r.no_regret_share:.0f}%",
            "high runs stopped": f"{100 * r.high_stopped_mean:.0f}%",
            "low runs stopped": f"{100 * r.low_stopped_mean:.0f}%",
        })
    return pd.DataFrame(rows)


def early_stopping_markdown(df: pd.DataFrame) -> str:
    """The Markdown table with its caption and notes."""
    first = df.iloc[0]
    caption = (f"**Early stopping in a simulated search** ({int(first.n_repeats)} random orders of "
               f"{int(first.n_trials)} networks per population; decisions after epochs "
               f"{int(first.t_min)}..{int(first.t_max)}; predictors stop when P(high) < {first.stop_below:g}, "
               "cross-fitted by configuration).")
    notes = ["compute saved: epochs not trained, against no pruning; regret: best final accuracy without "
             "pruning minus the best among the runs not stopped (mean ± sd over searches).",
             "high runs stopped: share of the runs that would have ended above the threshold and were stopped."]
    table = early_stopping_display(df).to_markdown(index=False, disable_numparse=True)
    return f"{caption}\n\n{table}\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def headline(df: pd.DataFrame) -> dict[str, Any]:
    """Per population and pruner: compute saved (%), mean regret, high runs stopped."""
    out: dict[str, Any] = {}
    for r in df.itertuples(index=False):
        out.setdefault(r.arch, {})[r.pruner] = {"saved_pct": round(float(r.saved_pct), 1),
                                                "regret": round(float(r.regret_mean), 2),
                                                "high_stopped": round(float(r.high_stopped_mean), 3)}
    return {"per_arch": out}


def reading(df: pd.DataFrame, tolerance: float = 1.0) -> str:
    """A plain reading: per population, which pruner saves most compute at a mean regret within
    ``tolerance`` accuracy points, and how the predictors compare with the learning-curve pruners."""
    lines = []
    for arch, g in df.groupby("arch", sort=False):
        g = g.set_index("pruner")
        ok = g[(g.index != "none") & (g["regret_mean"] <= tolerance)]
        if len(ok):
            best = ok["saved_pct"].idxmax()
            lines.append(f"- {arch}: within {tolerance:g} point(s) of mean regret, {PRUNER_LABELS[best]} saves the "
                         f"most compute ({ok.loc[best, 'saved_pct']:.0f}% of the epochs, mean regret "
                         f"{ok.loc[best, 'regret_mean']:.2f}, {100 * ok.loc[best, 'high_stopped_mean']:.0f}% of the "
                         "high runs stopped).")
        else:
            lines.append(f"- {arch}: every pruner loses more than {tolerance:g} point(s) of best accuracy on average.")
        n_high, n = int(g["n_high"].iloc[0]), int(g["n_networks"].iloc[0])
        k = int(g["n_folds"].iloc[0])
        if min(n_high, n - n_high) < k:
            lines.append(f"  Only {n_high} high and {n - n_high} low networks: fewer than the {k} cross-fitting "
                         "folds, so some predictors were fitted on one class and stop all or none; this "
                         "population cannot show what a predictor can do.")
        if {"graph", "curve"} <= set(g.index):
            gr, cu = g.loc["graph"], g.loc["curve"]
            lines.append(f"  graph signatures: {gr.saved_pct:.0f}% saved, regret {gr.regret_mean:.2f}; learning curve: "
                         f"{cu.saved_pct:.0f}% saved, regret {cu.regret_mean:.2f}.")
    return "\n".join(lines)


__all__ = ["check_settings", "decision_window", "early_stopping_display", "early_stopping_markdown", "headline",
           "predictor_path", "read_early_stopping", "reading", "run_early_stopping", "run_population"]
