"""Tables 1 and 2 of the paper, regenerated, with the paper's published numbers beside ours.

Every table is written three times under ``results/<profile>/``: ``tableN.csv`` (tidy,
machine-readable, one row per cell of the table; its columns are promised in
:mod:`paperlib.files`), ``tableN.md`` (Markdown, as shown in ``docs/results.md``) and ``tableN.tex`` (a
``booktabs`` tabular).

This module computes the tidy frames from the result files: Table 1 from ``runs.csv``, Table 2
from ``q1.csv`` (mean and spread over fold seeds, the paired tests of :mod:`paperlib.evaluate.stats`).
The paper's numbers beside ours come from :mod:`paperlib.report.published`; the printed forms from
:mod:`paperlib.report.render`; the plain-words readings are :mod:`paperlib.report.readings`.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .. import files
from . import published
from ..evaluate.stats import aggregate_q1
from ..files import PAIRED_BASELINES, TABLE1_COLUMNS, TABLE2_COLUMNS, update_metrics
from ..profiles import as_profile
from ..profile_types import Profile
from .render import FEATURE_LABELS, CLASSIFIER_LABELS, _ordered, mark_best, significance_marks, table1_display, \
    table2_display, write_table_files

#: Paired comparisons of Table 2: (method, the baselines it is tested against).
COMPARISONS: dict[str, tuple[str, ...]] = {
    "deg": PAIRED_BASELINES,
    "evec": PAIRED_BASELINES,
    "learning-curve+deg": ("learning-curve",),
    "learning-curve+evec": ("learning-curve",),
}
GRAPH_FEATURES = ("deg", "evec")
WEIGHT_BASELINES = ("B_Wl", "B_What", "B_Wprime")


# rendering lives in paperlib.report.render; re-exported here for existing callers


def _ordered_pops(p: Profile, present: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(dataset, arch) pairs in the profile's order, then any others found in the data."""
    present = list(dict.fromkeys(present))
    order = [(pop.dataset, pop.arch) for pop in p.populations if (pop.dataset, pop.arch) in present]
    return order + sorted(set(present) - set(order))


# --------------------------------------------------------------------------- Table 1
def table1_frame(profile: Profile | str, runs: pd.DataFrame) -> pd.DataFrame:
    """Table 1 as a tidy frame: one row per dataset and architecture.

    Early-stopping epoch and final test accuracy (%) ranges are over the networks that
    finished (diverged ones are counted in ``n_diverged`` and left out of the ranges);
    ``n_high`` counts networks whose final accuracy is at least the threshold (diverged
    networks are low). The paper's values stand beside ours (see the module docstring).
    """
    p = as_profile(profile)
    paper = files.read_published("table1.csv")
    rows = []
    for dataset, arch in _ordered_pops(p, zip(runs["dataset"], runs["arch"])):
        sub = runs[(runs["dataset"] == dataset) & (runs["arch"] == arch)]
        diverged = files.diverged(sub)
        ok = sub[~diverged]
        try:
            threshold = p.population(arch).threshold
        except KeyError:
            threshold = float("nan")
        acc = sub["final_acc"].astype(float).where(~diverged, -np.inf)
        rows.append({
            "dataset": dataset, "arch": arch,
            "n_networks": int(len(sub)), "n_finished": int(len(ok)), "n_diverged": int(diverged.sum()),
            "n_high": int((acc >= threshold).sum()), "threshold": threshold,
            "early_stop_min": ok["early_stop_epoch"].min() if len(ok) else np.nan,
            "early_stop_max": ok["early_stop_epoch"].max() if len(ok) else np.nan,
            "acc_min": ok["final_acc"].min() if len(ok) else np.nan,
            "acc_max": ok["final_acc"].max() if len(ok) else np.nan,
            **published.table1_reference(paper, dataset, arch),
        })
    return pd.DataFrame(rows, columns=TABLE1_COLUMNS)


def write_table1(profile: Profile | str, runs_df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Write Table 1 (``results/<profile>/table1.{csv,md,tex}``) and return its tidy frame.

    Parameters
    ----------
    profile
        The profile (or its name).
    runs_df
        The population index (``runs.csv``); read from the results folder when omitted.
    """
    p = as_profile(profile)
    runs = files.read_runs(p) if runs_df is None else runs_df
    t1 = table1_frame(p, runs)
    notes = [
        "Ranges are over networks that finished; diverged networks (NaN/inf loss or weights) are "
        "counted apart and labelled low. `high`: final test accuracy at or above the threshold.",
        published.claim("table1_networks"),
    ]
    if not t1["same_dataset"].all() and (t1["paper_dataset"] != "").any():
        notes.append("Paper columns marked *reference only* describe the paper's CIFAR-10 network of the same "
                     "name, not the dataset of this row: a different dataset and scale.")
    write_table_files(p.name, "table1", t1, table1_display(t1),
                      caption=f"Table 1. The populations of profile '{p.name}', with the paper's Table 1 beside them.",
                      notes=notes)
    update_metrics(p.name, "table1", {
        r["arch"]: {"n_networks": int(r["n_networks"]), "n_high": int(r["n_high"]),
                    "n_diverged": int(r["n_diverged"]),
                    "acc_min": _round(r["acc_min"]), "acc_max": _round(r["acc_max"])}
        for _, r in t1.iterrows()
    })
    return t1


def write_table1_pooled(profile: Profile) -> pd.DataFrame:
    """Table 1 over the networks of every replicate (``results/<profile>/table1_pooled.{csv,md,tex}``)."""
    from .replicates import pooled_runs

    t1 = table1_frame(profile, pooled_runs(profile))
    write_table_files(profile.name, "table1_pooled", t1, table1_display(t1),
                      caption=f"Table 1, pooled. The networks of all {profile.replicates} population replicate(s) "
                              f"of profile '{profile.name}' (replicate r trains the same grid with seeds derived "
                              "from r); each replicate's own Table 1 is table1.md in its folder.",
                      notes=["Ranges are over networks that finished; diverged networks are counted apart."])
    return t1


# --------------------------------------------------------------------------- Table 2


def paired_tests(q1: pd.DataFrame, dataset: str, arch: str, classifier: str, t: int, mode: str = "plain"
                 ) -> dict[tuple[str, str], Any]:
    """Corrected resampled t-tests (:mod:`paperlib.evaluate.stats`) of :data:`COMPARISONS` at one Table 2 cell.

    Per-fold accuracies of the two methods are paired by fold seed and fold (the evaluator's folds
    depend only on the labels, configurations and seed, so both methods saw the same splits; rows
    whose fold sizes differ are not paired). Returns ``{(method, baseline): PairedTest}``.
    """
    from ..evaluate.stats import corrected_resampled_ttest, parse_folds

    if "fold_accuracy" not in q1.columns:
        return {}
    sub = q1[(q1["dataset"] == dataset) & (q1["arch"] == arch) & (q1["classifier"] == classifier)
             & (q1["t"] == t)]
    seed_col = "fold_seed" if "fold_seed" in sub.columns else "seed"

    def folds(fs: str) -> dict[Any, tuple]:
        rows = sub[(sub["feature_set"] == fs) & (sub["mode"] == (mode if fs in GRAPH_FEATURES else "plain"))]
        out = {}
        for _, r in rows.iterrows():
            if isinstance(r["fold_accuracy"], str) and r["fold_accuracy"]:
                out[r[seed_col]] = (parse_folds(r["fold_accuracy"], r["fold_sizes"]), r["fold_sizes"])
        return out

    tests = {}
    for a, baselines in COMPARISONS.items():
        fa = folds(a)
        if not fa:
            continue
        for b in baselines:
            fb = folds(b)
            diffs, n_tr, n_te = [], [], []
            for seed, ((acc_a, tr, te), sizes) in fa.items():
                if seed in fb and fb[seed][1] == sizes:
                    diffs.append(acc_a - fb[seed][0][0])
                    n_tr.append(tr)
                    n_te.append(te)
            if diffs:
                tests[(a, b)] = corrected_resampled_ttest(np.concatenate(diffs), float(np.mean(np.concatenate(n_tr))),
                                                          float(np.mean(np.concatenate(n_te))))
    return tests


def table2_frame(profile: Profile | str, q1: pd.DataFrame, mode: str = "plain") -> pd.DataFrame:
    """Table 2 as a tidy frame: one row per architecture x classifier x feature set, at the last t.

    ``t`` is the largest number of epochs found in ``q1`` for the architecture. Graph feature
    sets are shown in signature ``mode`` (``"plain"`` by default: a mode chosen by looking at
    these very scores would flatter them); ``mode="best"`` takes, per cell, the mode with the
    highest mean and records it. Baselines have one mode (plain). ``best`` marks the largest
    mean accuracy per architecture and classifier (the best entry of each column of a
    classifier's block).
    """
    p = as_profile(profile)
    paper = files.read_published("table2.csv")
    agg = aggregate_q1(q1)
    rows = []
    for dataset, arch in _ordered_pops(p, zip(agg["dataset"], agg["arch"])):
        sub = agg[(agg["dataset"] == dataset) & (agg["arch"] == arch)]
        t_last = int(sub["t"].max())
        at = sub[sub["t"] == t_last]
        n_net = at["n_networks"].iloc[0] if "n_networks" in at else np.nan
        n_high = at["n_high"].iloc[0] if "n_high" in at else np.nan
        for clf in _ordered(at["classifier"].unique(), list(CLASSIFIER_LABELS)):
            for fs in _ordered(at["feature_set"].unique(), list(FEATURE_LABELS)):
                cell = at[(at["classifier"] == clf) & (at["feature_set"] == fs)]
                if mode == "best":
                    cell = cell.sort_values(["accuracy_mean", "mode"], ascending=[False, True]).head(1)
                else:
                    pick = cell[cell["mode"] == mode]
                    cell = pick if len(pick) else cell[cell["mode"] == "plain"]
                c = cell.iloc[0] if len(cell) else None
                tests = paired_tests(q1, dataset, arch, clf, t_last, mode if mode != "best" else "plain")
                rows.append({
                    "dataset": dataset, "arch": arch, "t": t_last, "classifier": clf, "feature_set": fs,
                    "label": FEATURE_LABELS.get(fs, fs),
                    "mode": c["mode"] if c is not None else "",
                    "n_networks": n_net, "n_high": n_high,
                    "accuracy_mean": c["accuracy_mean"] if c is not None else np.nan,
                    "accuracy_std": c["accuracy_std"] if c is not None else np.nan,
                    "n_seeds": int(c["n_seeds"]) if c is not None else 0,
                    "balanced_accuracy_mean": _get(c, "balanced_accuracy_mean"),
                    "majority_accuracy": _get(c, "majority_accuracy"),
                    "n_single_class": int(_get(c, "n_single_class", 0)),
                    "n_decided": _get(c, "n_decided"),
                    **{f"vs_{b}_{k}": (getattr(tests[(fs, b)], "mean_difference" if k == "diff" else "p_value")
                                       if (fs, b) in tests else np.nan)
                       for b in PAIRED_BASELINES for k in ("diff", "p")},
                    **published.table2_reference(paper, dataset, arch, clf, fs),
                })
    t2 = pd.DataFrame(rows, columns=[c for c in TABLE2_COLUMNS if c != "best"])
    # a single-class predictor is never "best": its accuracy is the majority rate, not a result
    t2["_eligible"] = t2["accuracy_mean"].where(t2["n_single_class"].fillna(0) == 0)
    t2.insert(TABLE2_COLUMNS.index("best"), "best", mark_best(t2, "_eligible", ["dataset", "arch", "classifier"])
              if len(t2) else pd.Series(dtype=bool))
    return t2.drop(columns="_eligible")


def _get(row: Any, key: str, default: Any = np.nan) -> Any:
    if row is None or key not in row.index:
        return default
    v = row[key]
    return default if v is None or (isinstance(v, float) and not np.isfinite(v)) else v


def missing_archs(profile: Profile | str, frame: pd.DataFrame, experiment: str = "q1") -> dict[str, str]:
    """Architectures of the profile without a row in ``frame``, with the reason recorded for them."""
    p = as_profile(profile)
    present = set(frame["arch"]) if "arch" in frame.columns else set()
    reasons = files.skipped_reasons(p, experiment)
    return {a: reasons.get(a, f"no rows in {experiment}.csv") for a in p.archs if a not in present}


def write_table2(profile: Profile | str, mode: str = "plain") -> pd.DataFrame:
    """Write Table 2 (``results/<profile>/table2.{csv,md,tex}``) from ``q1.csv``; return its tidy frame.

    Across the profile's population replicates (:mod:`paperlib.report.replicates`): each replicate's
    :func:`table2_frame` from its own ``q1.csv``, combined by
    :func:`paperlib.report.replicates.combine_table2` (mean over replicates, fold spread and replicate
    spread apart, marks only where they hold in every replicate); the noise floor goes to
    ``noise_floor.csv``. Also records the table's headline numbers in ``results/<profile>/metrics.json``
    (section ``table2``).
    """
    from .replicates import MARK_RULE, combine_table2, write_noise_floor

    p = as_profile(profile)
    reps = p.replicate_profiles()
    q1s = [files.read_table(rp, "q1.csv") for rp in reps]
    q1 = q1s[0]
    missing = missing_archs(p, q1)
    for rp, q in zip(reps, q1s):
        if len(q) == 0:
            raise ValueError(f"q1.csv of profile {rp.name!r} has no rows, so there is no Table 2: "
                             + "; ".join(f"{a}: {r}" for a, r in missing_archs(rp, q).items()))
    frames = [table2_frame(rp, q, mode=mode) for rp, q in zip(reps, q1s)]
    t2 = combine_table2(frames)[TABLE2_COLUMNS]
    write_noise_floor(p, frames, t2)
    display, bold = table2_display(t2)
    n_seeds = int(max(f["n_seeds"].max() for f in frames)) if len(t2) else 0
    rep_note = (f"; the mean over {len(reps)} population replicates (the same grid retrained with seeds derived "
                "from the replicate), the ± the fold-seed spread averaged over them, and `(rep. ± s)` the standard "
                "deviation between the replicates' means (noise_floor.md: how far a cell moves between replicates)"
                if len(reps) > 1 else "; one population replicate (the spread between retrained populations is "
                "not measured: see noise_floor.md)")
    notes = [
        f"Ours: classification accuracy (high/low final accuracy) at the last epoch t of each architecture, "
        f"mean ± standard deviation over {n_seeds} fold seeds of stratified, configuration-grouped "
        f"{p.n_folds}-fold cross-validation{rep_note}; "
        f"signature mode: {mode}{' (per cell, the mode with the highest mean)' if mode == 'best' else ''}.",
        "Bold: the best mean of each column within a classifier's block (never a single-class predictor). "
        "`[1 class k/n]`: in k of the n fold seeds the classifier predicted one class for every network "
        "(a constant predictor: compare with the majority-class row, it is not a result).",
        "`>Wl`, `<LC`, ...: Ours (or learning curve + Ours) is significantly above (>) or below (<) that "
        f"baseline in this column: {MARK_RULE} (two-sided). Wl/What/W' = B_Wl/B_What/B_Wprime, LC = learning curve.",
        "Folds are grouped by configuration (seed twins in one fold) and only networks still training at t "
        "are evaluated (`n_decided` in table2.csv counts those left out).",
        published.claim("table2_reporting") + " Its t differs from ours.",
    ]
    ours_only = published.without_counterpart(list(dict.fromkeys(t2["feature_set"])))
    if ours_only:
        notes.append(", ".join(f"`{FEATURE_LABELS.get(f, f)}`" for f in ours_only) + " have no counterpart in the paper"
                     + (" (`learning curve`: test accuracy of epochs 1..t)." if "learning-curve" in ours_only else "."))
    for arch, reason in missing.items():
        notes.append(f"{arch} is not in the table: {reason}.")
    if (t2["paper_dataset"] != "").any() and not t2.loc[t2["paper_dataset"] != "", "same_dataset"].all():
        notes.append("Paper columns marked (ref.) are the paper's CIFAR-10 network of the same name: a different "
                     "dataset and scale, shown for reference, not as a target.")
    write_table_files(p.name, "table2", t2, display, bold=bold,
                      caption=f"Table 2. Classification accuracy at the last t, profile '{p.name}', "
                              "with the paper's Table 2 beside it.",
                      notes=notes)
    update_metrics(p.name, "table2", table2_metrics(t2, mode))
    return t2


def table2_metrics(t2: pd.DataFrame, mode: str) -> dict[str, Any]:
    """Headline numbers of Table 2 for ``metrics.json``."""
    acc: dict[str, dict[str, dict[str, float | None]]] = {}
    best: dict[str, dict[str, list[str]]] = {}
    for _, r in t2.iterrows():
        acc.setdefault(r["classifier"], {}).setdefault(r["feature_set"], {})[r["arch"]] = _round(r["accuracy_mean"])
        if r["best"]:
            best.setdefault(r["classifier"], {}).setdefault(r["arch"], []).append(r["feature_set"])
    matched = t2[t2["paper_accuracy"].notna() & t2["accuracy_mean"].notna()]
    significant: dict[str, dict[str, dict[str, str]]] = {}
    for _, r in t2.iterrows():
        marks = significance_marks(r)
        if marks:
            significant.setdefault(r["classifier"], {}).setdefault(r["arch"], {})[r["feature_set"]] = marks
    majority = {a: _round(g["majority_accuracy"].mean()) for a, g in t2.groupby("arch", sort=False)} \
        if "majority_accuracy" in t2 else {}
    return {
        "mode": mode,
        "majority_accuracy": majority,
        "single_class_cells": int((t2["n_single_class"].fillna(0) > 0).sum()) if "n_single_class" in t2 else 0,
        "significant_vs_baselines": significant,
        "t": {a: int(t) for a, t in t2.groupby("arch", sort=False)["t"].first().items()},
        "accuracy_mean": acc,
        "best_feature_set": best,
        "paper_cells_compared": int(len(matched)),
        "paper_cells_same_dataset": int(matched["same_dataset"].sum()),
        "mean_difference_vs_paper": _round((matched["accuracy_mean"] - matched["paper_accuracy"]).mean())
        if len(matched) else None,
    }


def _round(x: Any, digits: int = 4) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return round(x, digits) if np.isfinite(x) else None
