"""The paper's published numbers and claims, set beside ours.

The paper's numbers are transcribed once into ``results/published/`` (``table1.csv``,
``table2.csv``, ``claims.csv``; read by :func:`paperlib.files.read_published`). Nothing about
the paper is typed in code: its numbers, and the claims our readings quote, come from those files.

Matching our rows to the paper's
--------------------------------
A population of a profile matches a column of the paper when its architecture's display name
equals the paper's (a trailing ``-IN``, which names the Tiny-ImageNet populations of the
``paper`` profile, is ignored). When the profile's dataset is one of the paper's (``cifar10``,
``tiny-imagenet``) only that dataset's column matches; for any other dataset (the ``digits`` of
the ``smoke`` and ``default`` profiles) the paper's CIFAR-10 column is shown as a *reference
only*: same architecture, different data and scale, so agreement is not expected. Columns say
which dataset the paper's number describes (``paper_dataset``, ``same_dataset``).

:func:`describe_agreement` (Q1) and :func:`describe_q3` (Q3) compare a run's result files with
the paper's claims, in plain text.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import files
from . import tables
from ..profiles import Profile, as_profile
from .render import CLASSIFIER_LABELS, DATASET_LABELS, fmt_mean_std

#: Paper dataset used as a reference for datasets the paper does not have.
REFERENCE_DATASET = "cifar10"


def paper_arch_name(arch: str) -> str:
    """The paper's name of one of our architectures (drops a trailing ``-IN``)."""
    return arch[:-3] if arch.endswith("-IN") else arch


def paper_dataset_for(dataset: str, published: pd.DataFrame) -> tuple[str, bool]:
    """(paper dataset whose numbers stand beside ``dataset``, whether it is the same dataset)."""
    if dataset in set(published["dataset"]):
        return dataset, True
    return REFERENCE_DATASET, False


def table1_reference(published: pd.DataFrame, dataset: str, arch: str) -> dict[str, Any]:
    """The ``paper_*`` columns of Table 1 for one of our populations (empty where the paper has no row)."""
    pd_key, same = paper_dataset_for(dataset, published)
    ref = published[(published["dataset"] == pd_key) & (published["arch"] == paper_arch_name(arch))]
    r = ref.iloc[0] if len(ref) else None
    return {
        "paper_dataset": DATASET_LABELS[pd_key] if r is not None else "",
        "same_dataset": bool(same) if r is not None else False,
        "paper_early_stop_min": r["early_stop_min"] if r is not None else np.nan,
        "paper_early_stop_max": r["early_stop_max"] if r is not None else np.nan,
        "paper_acc_min": r["acc_min"] if r is not None else np.nan,
        "paper_acc_max": r["acc_max"] if r is not None else np.nan,
        "paper_threshold": r["acc_threshold"] if r is not None else np.nan,
    }


def table2_reference(published: pd.DataFrame, dataset: str, arch: str, classifier: str,
                     feature_set: str) -> dict[str, Any]:
    """The ``paper_*`` columns of one Table 2 cell (empty where the paper has no number)."""
    pd_key, same = paper_dataset_for(dataset, published)
    ref = published[(published["dataset"] == pd_key) & (published["arch"] == paper_arch_name(arch))
                     & (published["classifier"] == classifier) & (published["feature_set"] == feature_set)]
    r = ref.iloc[0] if len(ref) else None
    return {
        "paper_dataset": DATASET_LABELS[pd_key] if r is not None else "",
        "same_dataset": bool(same) if r is not None else False,
        "paper_accuracy": r["accuracy"] if r is not None else np.nan,
        "paper_note": (r["note"] if isinstance(r["note"], str) else "") if r is not None else "",
    }


def without_counterpart(feature_sets: list[str]) -> list[str]:
    """The feature sets among ``feature_sets`` that the paper's Table 2 has no row for."""
    theirs = set(files.read_published("table2.csv")["feature_set"])
    return [f for f in feature_sets if f not in theirs]


def claim(name: str) -> str:
    """The text of one of the paper's claims (``results/published/claims.csv``)."""
    claims = files.published_claims()
    if name not in claims.index:
        raise KeyError(f"results/published/claims.csv has no claim {name!r}; known: {sorted(claims.index)}")
    return str(claims[name])


def _best_graph(at: pd.DataFrame) -> float:
    return at.loc[at["feature_set"].isin(tables.GRAPH_FEATURES), "accuracy_mean"].max()


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
    q1 = tables.aggregate_q1(files.read_table(p, "q1.csv"))
    lines = []
    datasets = sorted(set(t2["dataset"]))
    same = t2.loc[t2["paper_dataset"] != "", "same_dataset"].astype(bool)
    lines.append(f"Profile '{p.name}': dataset(s) {', '.join(datasets)}; signature mode in Table 2: "
                 f"{', '.join(sorted(set(t2.loc[t2['feature_set'].isin(tables.GRAPH_FEATURES), 'mode'].astype(str))))}.")
    if len(same) and not same.all():
        lines.append("The paper's numbers shown beside ours come from CIFAR-10/Tiny-ImageNet at full scale: "
                     "a reference, not a target.")
    lines.append("")
    counts = {"beats_weights": 0, "beats_curve": 0, "rolled_beats_unrolled": 0, "n": 0}
    for (dataset, arch, clf), at in t2.groupby(["dataset", "arch", "classifier"], sort=False):
        graph = _best_graph(at)
        weights = at.loc[at["feature_set"].isin(tables.WEIGHT_BASELINES), "accuracy_mean"].max()
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
    g = q1[q1["feature_set"].isin(tables.GRAPH_FEATURES)]
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
