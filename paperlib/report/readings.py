"""Plain-words readings of Q1, Q2 and Q3, computed from the result files (nothing typed by hand).

The paper's claims they test are quoted from ``results/published/claims.csv``
(:func:`paperlib.report.published.claim`).

Each reading states a claim, then says whether it holds in this run, per architecture and
classifier, using only what the result files support:

* a difference counts only when the corrected resampled t-test of Table 2 says it is
  significant (p < 0.05, :mod:`paperlib.evaluate.stats`);
* a cell where some fold seed predicted a single class is not read as a result;
* an accuracy counts as "above chance" only when it exceeds the majority-class rate by more
  than its spread over seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import files
from ..evaluate.stats import aggregate_q1, as_fraction
from ..profile_types import Profile
from ..profiles import as_profile
from .published import claim, without_counterpart
from .render import CLASSIFIER_LABELS, FEATURE_LABELS, _ordered, fmt_mean_std
from .tables import GRAPH_FEATURES, WEIGHT_BASELINES

ALPHA = 0.05
WEIGHTS = ("B_Wl", "B_What", "B_Wprime")


def _verdict(n_yes: int, n: int) -> str:
    if n == 0:
        return "cannot be judged (no cell)"
    if n_yes == n:
        return f"holds in all {n}"
    if n_yes == 0:
        return f"does not hold in any of the {n}"
    return f"holds in {n_yes} of {n}"


def _sig(r: pd.Series, b: str) -> int:
    """+1 / -1 / 0: significantly above / below / not different from baseline ``b``, by the mark rule of
    :mod:`paperlib.report.replicates` (significant in every population replicate, in one direction)."""
    from .replicates import mark_direction

    return mark_direction(r, b, ALPHA)


def q1_reading(profile: Profile | str) -> str:
    """What holds and what does not in Table 2 of this run, in plain words (from ``table2.csv``)."""
    p = as_profile(profile)
    t2 = files.read_table(p, "table2.csv")
    if "vs_learning-curve_p" not in t2.columns:
        return "table2.csv has no paired tests (written by an older version); re-run 04_q1."
    lines = []
    cells = t2.groupby(["dataset", "arch", "classifier"], sort=False)
    n_cells = cells.ngroups
    const = t2[t2["n_single_class"].fillna(0) > 0]
    from .replicates import MARK_RULE

    n_rep = int(t2["n_replicates"].max()) if "n_replicates" in t2 and t2["n_replicates"].notna().any() else 1
    lines.append(f"Table 2 of profile '{p.name}': {n_cells} columns x classifiers, {n_rep} population replicate(s). "
                 f"Significance: {MARK_RULE}; only such marks enter the readings below.")
    if len(const):
        lines.append(f"Single-class predictors (not results): {len(const)} cell(s): "
                     + ", ".join(f"{r['arch']}/{CLASSIFIER_LABELS.get(r['classifier'], r['classifier'])}/"
                                 f"{FEATURE_LABELS.get(r['feature_set'], r['feature_set'])}"
                                 for _, r in const.iterrows()) + ".")
    else:
        lines.append("No cell of Table 2 comes from a single-class predictor.")
    lines.append("")
    beats_weights, beats_curve, loses_curve, adds, comb_n, above_chance = 0, 0, 0, 0, 0, 0
    per = []
    for (dataset, arch, clf), at in cells:
        at = at.set_index("feature_set")
        ours = [f for f in ("deg", "evec") if f in at.index]
        if not ours:
            continue
        # Ours beats every weight baseline significantly (with either signature)
        bw = any(all(_sig(at.loc[o], b) > 0 for b in WEIGHTS if f"vs_{b}_p" in at.columns
                     and np.isfinite(at.loc[o].get(f"vs_{b}_p", np.nan))) and
                 any(np.isfinite(at.loc[o].get(f"vs_{b}_p", np.nan)) for b in WEIGHTS) for o in ours)
        bc = any(_sig(at.loc[o], "learning-curve") > 0 for o in ours)
        lc = all(_sig(at.loc[o], "learning-curve") < 0 for o in ours)
        combos = [c for c in ("learning-curve+deg", "learning-curve+evec") if c in at.index]
        add = any(_sig(at.loc[c], "learning-curve") > 0 for c in combos)
        best = max(ours, key=lambda o: at.loc[o, "accuracy_mean"])
        r = at.loc[best]
        chance = (r["accuracy_mean"] - r["accuracy_std"] > r.get("majority_accuracy", np.nan)) and \
            not r.get("n_single_class", 0)
        beats_weights += bw
        beats_curve += bc
        loses_curve += lc
        comb_n += bool(combos)
        adds += add
        above_chance += bool(chance)
        per.append(f"  {arch:>10s} {CLASSIFIER_LABELS.get(clf, clf)}: best of Ours {r['accuracy_mean']:.2f} "
                   f"(majority {r.get('majority_accuracy', np.nan):.2f}); vs all weight baselines: "
                   f"{'significantly above' if bw else 'not significantly above'}; vs learning curve: "
                   + {1: "significantly above", -1: "significantly below", 0: "no significant difference"}[
                       max((_sig(at.loc[o], 'learning-curve') for o in ours), key=abs, default=0)]
                   + ("; graph added to the learning curve: " + ("yes" if add else "no") if combos else ""))
    n = len(per)
    left_out = " (a baseline the paper left out)" if without_counterpart(["learning-curve"]) else ""
    lines += [
        f"Ours above chance (accuracy minus its spread above the majority rate, no single class): "
        f"{_verdict(above_chance, n)}.",
        f"The paper's claim \"{claim('q1_baselines')}\" {_verdict(beats_weights, n)} "
        "(significantly above every weight baseline, per architecture and classifier).",
        f"'Ours beats the learning curve'{left_out} {_verdict(beats_curve, n)}; "
        f"the learning curve is significantly better than both of ours in {loses_curve} of {n}.",
        f"'The graph carries information the learning curve does not' (learning curve + Ours significantly "
        f"above the learning curve alone) {_verdict(adds, comb_n)}.",
        "",
        *per,
    ]
    return "\n".join(lines)


def q2_reading(profile: Profile | str) -> str:
    """What holds and what does not in Q2 (last t of each transfer), from ``q2.csv`` of every replicate.

    'Above chance' follows the mark rule of :mod:`paperlib.report.replicates`: it must hold in every
    population replicate (each replicate's mean minus its spread over seeds above that replicate's
    majority rate, no single-class seed). The numbers shown are the means over replicates.
    """
    p = as_profile(profile)
    q2s = [files.read_table(rp, "q2.csv") for rp in p.replicate_profiles()]
    q2 = q2s[0]
    if len(q2) == 0:
        reasons = files.skipped_reasons(p, "q2")
        return "No transfer could be evaluated: " + ("; ".join(f"{a}: {r}" for a, r in reasons.items())
                                                     or "q2.csv is empty") + "."
    for q in q2s:
        q["accuracy"] = as_fraction(q["accuracy"])
    n_rep = len(q2s)
    lines = [f"Q2 of profile '{p.name}', at the last t of each transfer, plain mode, mean ± std over seeds"
             + (f" (means over {n_rep} population replicates; rep. ±: spread between them)" if n_rep > 1 else "")
             + ". 'Above chance' = mean minus std above the test population's majority rate, no single-class seed"
             + (", in every replicate." if n_rep > 1 else ".")]
    verdicts = {"paper": [0, 0], "size-aware": [0, 0]}
    for name in [t.name for t in p.transfers if (q2["transfer"] == t.name).any()]:
        ats = []
        for q in q2s:
            sub = q[(q["transfer"] == name) & (q["mode"] == "plain")]
            ats.append(sub[sub["t"] == sub["t"].max()] if len(sub) else sub)
        at = ats[0]
        t_last = int(at["t"].max())
        majs = [float(a["majority_accuracy"].mean()) if "majority_accuracy" in a and len(a) else float("nan")
                for a in ats]
        lines.append(f"\n{name}: {at['train_archs'].iloc[0]} -> {at['test_arch'].iloc[0]}, t={t_last}, "
                     f"majority rate {np.nanmean(majs):.2f}")
        for fs in ("deg", "evec", "deg-sa", "evec-sa", "learning-curve"):
            for clf in p.classifiers:
                gs = [(a[(a["feature_set"] == fs) & (a["classifier"] == clf)], maj) for a, maj in zip(ats, majs)]
                gs = [(g, maj) for g, maj in gs if len(g)]
                if not gs:
                    continue
                ms = [g["accuracy"].mean() for g, _ in gs]
                ss = [g["accuracy"].std(ddof=1) if len(g) > 1 else 0.0 for g, _ in gs]
                n_const = sum(int(g["single_class"].sum()) for g, _ in gs)
                n_rows = sum(len(g) for g, _ in gs)
                ok = len(gs) == n_rep and all((m - sd > maj) and not g["single_class"].any()
                                              for (g, maj), m, sd in zip(gs, ms, ss))
                m, sd = float(np.mean(ms)), float(np.mean(ss))
                kind = "size-aware" if fs.endswith("-sa") else ("paper" if fs in ("deg", "evec") else None)
                if kind:
                    verdicts[kind][0] += ok
                    verdicts[kind][1] += 1
                bal = [g["balanced_accuracy"].mean() for g, _ in gs if "balanced_accuracy" in g]
                lines.append(f"  {FEATURE_LABELS.get(fs, fs):<38s} {CLASSIFIER_LABELS.get(clf, clf)} {m:.2f} ± {sd:.2f}"
                             + (f" (rep. ± {np.std(ms, ddof=1):.2f})" if len(ms) > 1 else "")
                             + (f", balanced {np.mean(bal):.2f}" if bal else "")
                             + (f" [single class in {n_const}/{n_rows} seeds: not a result]" if n_const else "")
                             + (" above chance" if ok else " not above chance"))
    lines += ["",
              f"The paper's claims \"{claim('q2_deeper')}\" and \"{claim('q2_older')}\": "
              f"{_verdict(*verdicts['paper'])} (transfer x signature x classifier above chance).",
              f"Our size-aware signatures (our addition) are above chance: {_verdict(*verdicts['size-aware'])}."]
    return "\n".join(lines)


def majority_rates(profile: Profile | str) -> dict[str, float]:
    """Per architecture, the accuracy of always predicting the larger class (from ``q1.csv``)."""
    q1 = files.read_table(profile, "q1.csv")
    out = {}
    for arch, sub in q1.groupby("arch", sort=False):
        n, h = float(sub["n_networks"].iloc[0]), float(sub["n_high"].iloc[0])
        out[arch] = max(h, n - h) / n if n else float("nan")
    return out


def describe_q2(profile: Profile | str) -> str:
    """Q2 at the last t of every transfer, with the majority-class rate of the test population."""
    p = as_profile(profile)
    q2 = files.read_table(p, "q2.csv")
    q2["accuracy"] = as_fraction(q2["accuracy"])
    try:
        majority = majority_rates(p)
    except FileNotFoundError:
        majority = {}
    lines = [f"Profile '{p.name}': accuracy on the unseen test population at the last t "
             "(mean ± std over seeds), per feature set and classifier, plain mode for graph signatures."]
    if len(q2) == 0:
        reasons = files.skipped_reasons(p, "q2")
        lines.append("No transfer could be evaluated: "
                     + ("; ".join(f"{a}: {r}" for a, r in reasons.items()) or "q2.csv is empty") + ".")
        return "\n".join(lines)
    order = [t.name for t in p.transfers]
    for name in _ordered(q2["transfer"].unique(), order):
        sub = q2[q2["transfer"] == name]
        t_last = int(sub["t"].max())
        at = sub[(sub["t"] == t_last) & (sub["mode"] == "plain")]
        test = str(sub["test_arch"].iloc[0])
        train = str(sub["train_archs"].iloc[0])
        if {"n_test", "n_high_test"} <= set(sub.columns):
            n, h = float(sub["n_test"].iloc[0]), float(sub["n_high_test"].iloc[0])
            maj = max(h, n - h) / n if n else float("nan")
        else:
            maj = majority.get(test, float("nan"))
        lines.append(f"\n{name}: train {train} -> test {test}, t={t_last}; majority class of {test}: {maj:.2f}")
        g = at.groupby(["feature_set", "classifier"], sort=False)["accuracy"].agg(["mean", "std"]).reset_index()
        for fs in _ordered(g["feature_set"].unique(), list(FEATURE_LABELS)):
            cells = [f"{CLASSIFIER_LABELS.get(r['classifier'], r['classifier'])} {fmt_mean_std(r['mean'], r['std'])}"
                     for _, r in g[g["feature_set"] == fs].iterrows()]
            lines.append(f"  {FEATURE_LABELS.get(fs, fs):<14s} " + " | ".join(cells))
    return "\n".join(lines)


# --------------------------------------------------------------------------- Table 2 and Q3 against the paper

def _best_graph(at: pd.DataFrame) -> float:
    return at.loc[at["feature_set"].isin(GRAPH_FEATURES), "accuracy_mean"].max()


def describe_agreement(profile: Profile | str) -> str:
    """Where Table 2 and Figure 3 of this run agree with the paper's claims, read from the files.

    Compares, per architecture and classifier: our graph signatures against the weight
    baselines, against the learning curve (not in the paper), the unrolled against the rolled
    graph, and the first t at which a graph signature reaches 80% accuracy; the paper's claims
    beside them are read from ``results/published/claims.csv``. Ends with the cells that
    have a paper number, ours beside it.
    """
    p = as_profile(profile)
    t2 = files.read_table(p, "table2.csv")
    q1 = aggregate_q1(files.read_table(p, "q1.csv"))
    lines = []
    datasets = sorted(set(t2["dataset"]))
    same = t2.loc[t2["paper_dataset"] != "", "same_dataset"].astype(bool)
    lines.append(f"Profile '{p.name}': dataset(s) {', '.join(datasets)}; signature mode in Table 2: "
                 f"{', '.join(sorted(set(t2.loc[t2['feature_set'].isin(GRAPH_FEATURES), 'mode'].astype(str))))}.")
    if len(same) and not same.all():
        lines.append("The paper's numbers shown beside ours come from CIFAR-10/Tiny-ImageNet at full scale: "
                     "a reference, not a target.")
    lines.append("")
    counts = {"beats_weights": 0, "beats_curve": 0, "rolled_beats_unrolled": 0, "n": 0}
    for (dataset, arch, clf), at in t2.groupby(["dataset", "arch", "classifier"], sort=False):
        graph = _best_graph(at)
        weights = at.loc[at["feature_set"].isin(WEIGHT_BASELINES), "accuracy_mean"].max()
        curve = at.loc[at["feature_set"] == "learning-curve", "accuracy_mean"].max()
        unrolled = at.loc[at["feature_set"].str.startswith("unroll"), "accuracy_mean"].max()
        rolled = graph
        counts["n"] += 1
        counts["beats_weights"] += bool(graph > weights)
        counts["beats_curve"] += bool(graph > curve)
        counts["rolled_beats_unrolled"] += bool(rolled > unrolled)
        lines.append(
            f"{arch:>10s} {CLASSIFIER_LABELS.get(clf, clf)} t={int(at['t'].iloc[0]):<3d} best graph signature "
            f"{graph:.2f} | best weight baseline {weights:.2f} | learning curve {curve:.2f} | best unrolled {unrolled:.2f}"
        )
    n = counts["n"]
    claims = files.published_claims()
    no_curve = "learning-curve" in without_counterpart(["learning-curve"])
    lines += [
        "",
        f"Graph signature above the best weight baseline: {counts['beats_weights']}/{n} (architecture x classifier). "
        f"Paper: {claims.get('q1_baselines', '')}",
        f"Graph signature above the learning-curve baseline: {counts['beats_curve']}/{n}"
        + ("; the paper has no such baseline." if no_curve else "."),
        f"Rolled above unrolled: {counts['rolled_beats_unrolled']}/{n}. Paper: {claims.get('q1_unrolled', '')}",
    ]
    lines.append("")
    lines.append("First t at which a graph signature (any mode) reaches 0.80 mean accuracy. "
                 f"Paper: {claims.get('q1_fast', '')}")
    g = q1[q1["feature_set"].isin(GRAPH_FEATURES)]
    for (dataset, arch), sub in g.groupby(["dataset", "arch"], sort=False):
        for clf, s in sub.groupby("classifier", sort=False):
            best_t = s.groupby("t")["accuracy_mean"].max()
            hit = best_t[best_t >= 0.8]
            lines.append(f"  {arch:>10s} {CLASSIFIER_LABELS.get(clf, clf)}: "
                         + (f"t={int(hit.index.min())}" if len(hit) else f"never up to t={int(best_t.index.max())} "
                            f"(max {best_t.max():.2f})"))
    matched = t2[(t2["paper_dataset"] != "")]
    if len(matched):
        lines.append("")
        lines.append("Cells with a paper number (ours mean ± std | paper):")
        for _, r in matched.iterrows():
            paper = r["paper_note"] if r["paper_note"] else f"{r['paper_accuracy']:.2f}"
            tag = "" if r["same_dataset"] else f" [{r['paper_dataset']}, reference only]"
            lines.append(f"  {r['arch']:>10s} {CLASSIFIER_LABELS.get(r['classifier'], r['classifier'])} "
                         f"{r['label']:<12s} {fmt_mean_std(r['accuracy_mean'], r['accuracy_std'])} | {paper}{tag}")
    return "\n".join(lines)


def _fmt_sec(x: Any) -> str:
    return f"{x:.3g}" if x is not None and np.isfinite(x) else "not built"


def describe_q3(profile: Profile | str) -> str:
    """Q3 per architecture: training to early stopping against the graph features, read from ``q3.csv``."""
    p = as_profile(profile)
    q3 = files.read_table(p, "q3.csv")
    claims = files.published_claims()
    lines = [f"Profile '{p.name}', measured on this machine (seconds):"]
    for _, r in q3.iterrows():
        lines.append(
            f"  {r['arch']:>10s}: training to early stopping {r['train_to_early_stop_seconds']:.3g} | "
            f"rolled S1+S2 for t={int(r['t_needed'])} {r['rolled_total_seconds']:.3g} "
            f"(training / rolled = {r['rolled_speedup']:.3g}) | unrolled matrix-free "
            f"{r['unrolled_matfree_total_seconds']:.3g} "
            f"| unrolled explicit {_fmt_sec(r['unrolled_explicit_total_seconds'])} | rolled features of one snapshot "
            f"= {r['rolled_overhead_per_epoch']:.2g} training epochs"
        )
    faster_r = int((q3["rolled_total_seconds"] < q3["train_to_early_stop_seconds"]).sum())
    faster_u = q3.loc[q3["unrolled_matfree_total_seconds"] < q3["train_to_early_stop_seconds"], "arch"].tolist()
    lines += [
        "",
        f"Rolled features faster than training to early stopping: {faster_r}/{len(q3)} architectures. "
        f"Paper: {claims.get('q3_rolled', '')}",
        f"Unrolled (matrix-free) faster than training for: {', '.join(faster_u) or 'none'}. "
        f"Paper: {claims.get('q3_unrolled', '')}",
        "t rule: " + "; ".join(sorted(set(q3["t_rule"].astype(str)))),
    ]
    return "\n".join(lines)
