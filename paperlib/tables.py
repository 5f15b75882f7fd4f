"""Tables 1 and 2 of the paper, regenerated, with the paper's published numbers beside ours.

Every table is written three times under ``results/<profile>/``: ``tableN.csv`` (tidy,
machine-readable, one row per cell of the table), ``tableN.md`` (Markdown, as shown in the
README) and ``tableN.tex`` (a ``booktabs`` tabular). The paper's numbers are read from
``results/published/`` (transcribed from the paper; see the README there).

Matching our rows to the paper's
--------------------------------
A population of a profile matches a column of the paper when its architecture's display name
equals the paper's (a trailing ``-IN``, which names the Tiny-ImageNet populations of the
``paper`` profile, is ignored). When the profile's dataset is one of the paper's (``cifar10``,
``tiny-imagenet``) only that dataset's column matches; for any other dataset (the ``digits`` of
the ``smoke`` and ``default`` profiles) the paper's CIFAR-10 column is shown as a *reference
only*: same architecture, different data and scale, so agreement is not expected. Columns say
which dataset the paper's number describes (``paper_dataset``, ``same_dataset``).

The comparison texts (:func:`describe_agreement`, :func:`describe_q2`, :func:`describe_q3`)
are computed from the result files, so the notebooks never type a number; the paper's claims
they quote are read from ``results/published/claims.csv``. Markdown/LaTeX rendering lives in
:mod:`paperlib.render`, the plain-words readings of Q1/Q2 in :mod:`paperlib.readings`, and the
paired test of Table 2 in :mod:`paperlib.stats`.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from . import files, paths
from .files import parse_bool  # noqa: F401  (re-exported: readings and tests use tables.parse_bool)
from .metrics import update_metrics
from .profiles import Profile, get_profile

#: The paper's name of a dataset key.
DATASET_LABELS = {"cifar10": "CIFAR-10", "tiny-imagenet": "ImageNet", "digits": "digits"}
#: Paper dataset used as a reference for datasets the paper does not have.
REFERENCE_DATASET = "cifar10"
#: Row order and printed labels of the feature sets of Table 2.
FEATURE_LABELS = {
    "B_Wl": "B_Wl",
    "B_What": "B_What",
    "B_Wprime": "B_Wprime",
    "learning-curve": "learning curve",
    "unroll-deg": "unroll-deg",
    "unroll-evec": "unroll-evec",
    "deg": "Ours-deg",
    "evec": "Ours-evec",
    "learning-curve+deg": "learning curve + Ours-deg",
    "learning-curve+evec": "learning curve + Ours-evec",
    "deg-sa": "Ours-deg, size-aware (our addition)",
    "evec-sa": "Ours-evec, size-aware (our addition)",
}
#: Short names used in the significance marks of Table 2.
SHORT_LABELS = {"B_Wl": "Wl", "B_What": "What", "B_Wprime": "W'", "learning-curve": "LC"}
#: Paired comparisons of Table 2: (method, the baselines it is tested against).
COMPARISONS: dict[str, tuple[str, ...]] = {
    "deg": ("B_Wl", "B_What", "B_Wprime", "learning-curve"),
    "evec": ("B_Wl", "B_What", "B_Wprime", "learning-curve"),
    "learning-curve+deg": ("learning-curve",),
    "learning-curve+evec": ("learning-curve",),
}
GRAPH_FEATURES = ("deg", "evec")
WEIGHT_BASELINES = ("B_Wl", "B_What", "B_Wprime")
CLASSIFIER_LABELS = {"svm": "SVM", "mlp": "MLP"}

TABLE1_COLUMNS = [
    "dataset", "arch", "n_networks", "n_finished", "n_diverged", "n_high", "threshold",
    "early_stop_min", "early_stop_max", "acc_min", "acc_max",
    "paper_dataset", "same_dataset", "paper_early_stop_min", "paper_early_stop_max",
    "paper_acc_min", "paper_acc_max", "paper_threshold",
]
TABLE2_COLUMNS = [
    "dataset", "arch", "t", "classifier", "feature_set", "label", "mode", "n_networks", "n_high",
    "accuracy_mean", "accuracy_std", "n_seeds", "best", "balanced_accuracy_mean", "majority_accuracy",
    "n_single_class", "n_decided",
    *[f"vs_{b}_{k}" for b in SHORT_LABELS for k in ("diff", "p")],
    "paper_dataset", "same_dataset", "paper_accuracy", "paper_note",
]


# --------------------------------------------------------------------------- utilities
def as_profile(profile: Profile | str) -> Profile:
    """A :class:`Profile` from a profile or its name."""
    return get_profile(profile) if isinstance(profile, str) else profile


def read_result(profile: Profile | str, name: str) -> pd.DataFrame:
    """``results/<profile>/<name>``; a missing file is an error that says which notebook writes it."""
    p = as_profile(profile)
    path = paths.results_dir(p.name) / name
    if not path.exists():
        from .pipeline import STEPS

        writers = [s.name for s in STEPS if f"results/{{profile}}/{name}" in s.outputs]
        hint = f"; run notebook {writers[0]} first" if writers else ""
        raise FileNotFoundError(f"{path} does not exist{hint}")
    return pd.read_csv(path)


def read_published(name: str) -> pd.DataFrame:
    """A transcribed table of the paper, ``results/published/<name>``."""
    return pd.read_csv(paths.PUBLISHED / name, keep_default_na=False, na_values=[""])


def paper_arch_name(arch: str) -> str:
    """The paper's name of one of our architectures (drops a trailing ``-IN``)."""
    return arch[:-3] if arch.endswith("-IN") else arch


def paper_dataset_for(dataset: str, published: pd.DataFrame) -> tuple[str, bool]:
    """(paper dataset whose numbers stand beside ``dataset``, whether it is the same dataset)."""
    if dataset in set(published["dataset"]):
        return dataset, True
    return REFERENCE_DATASET, False


def as_fraction(acc: pd.Series) -> pd.Series:
    """Accuracies as fractions in [0, 1] (a column in percent is divided by 100)."""
    acc = acc.astype(float)
    return acc / 100.0 if acc.max(skipna=True) > 1.0 + 1e-9 else acc


# rendering lives in paperlib.render; re-exported here for existing callers
from .render import (_fmt_num, _range, fmt_mean_std, tex_escape, to_latex, to_markdown,  # noqa: E402,F401
                     write_table_files)


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
    published = read_published("table1.csv")
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
        pd_key, same = paper_dataset_for(dataset, published)
        ref = published[(published["dataset"] == pd_key) & (published["arch"] == paper_arch_name(arch))]
        r = ref.iloc[0] if len(ref) else None
        rows.append({
            "dataset": dataset, "arch": arch,
            "n_networks": int(len(sub)), "n_finished": int(len(ok)), "n_diverged": int(diverged.sum()),
            "n_high": int((acc >= threshold).sum()), "threshold": threshold,
            "early_stop_min": ok["early_stop_epoch"].min() if len(ok) else np.nan,
            "early_stop_max": ok["early_stop_epoch"].max() if len(ok) else np.nan,
            "acc_min": ok["final_acc"].min() if len(ok) else np.nan,
            "acc_max": ok["final_acc"].max() if len(ok) else np.nan,
            "paper_dataset": DATASET_LABELS[pd_key] if r is not None else "",
            "same_dataset": bool(same) if r is not None else False,
            "paper_early_stop_min": r["early_stop_min"] if r is not None else np.nan,
            "paper_early_stop_max": r["early_stop_max"] if r is not None else np.nan,
            "paper_acc_min": r["acc_min"] if r is not None else np.nan,
            "paper_acc_max": r["acc_max"] if r is not None else np.nan,
            "paper_threshold": r["acc_threshold"] if r is not None else np.nan,
        })
    return pd.DataFrame(rows, columns=TABLE1_COLUMNS)


def table1_display(t1: pd.DataFrame) -> pd.DataFrame:
    """The printed form of Table 1 (strings)."""
    rows = []
    for _, r in t1.iterrows():
        paper_label = ""
        if r["paper_dataset"]:
            paper_label = r["paper_dataset"] + ("" if r["same_dataset"] else " (reference only)")
        rows.append({
            "dataset": DATASET_LABELS.get(r["dataset"], r["dataset"]),
            "arch": r["arch"],
            "networks": str(int(r["n_networks"])),
            "diverged": str(int(r["n_diverged"])),
            "high": str(int(r["n_high"])),
            "early stop": _range(r["early_stop_min"], r["early_stop_max"], 0),
            "acc. range (%)": _range(r["acc_min"], r["acc_max"]),
            "threshold (%)": _fmt_num(r["threshold"], 1),
            "paper": paper_label or "–",
            "paper early stop": _range(r["paper_early_stop_min"], r["paper_early_stop_max"], 0),
            "paper acc. range (%)": _range(r["paper_acc_min"], r["paper_acc_max"]),
            "paper threshold (%)": _fmt_num(r["paper_threshold"], 1),
        })
    return pd.DataFrame(rows)


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
    runs = read_result(p, "runs.csv") if runs_df is None else runs_df
    t1 = table1_frame(p, runs)
    notes = [
        "Ranges are over networks that finished; diverged networks (NaN/inf loss or weights) are "
        "counted apart and labelled low. `high`: final test accuracy at or above the threshold.",
        "The paper does not give the number of networks per population.",
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


# --------------------------------------------------------------------------- Table 2
def aggregate_q1(q1: pd.DataFrame, by: Sequence[str] = ("dataset", "arch", "feature_set", "mode", "classifier", "t"),
                 seed_col: str = "fold_seed") -> pd.DataFrame:
    """Mean and standard deviation (ddof=1) of the accuracy over fold seeds.

    Returns one row per group with ``accuracy_mean``, ``accuracy_std`` (0 for a single seed) and
    ``n_seeds``, plus ``n_networks`` and ``n_high`` when present.
    """
    q1 = q1.copy()
    q1["accuracy"] = as_fraction(q1["accuracy"])
    g = q1.groupby(list(by), sort=False, dropna=False)
    out = g["accuracy"].agg(accuracy_mean="mean", accuracy_std="std", n_seeds="count").reset_index()
    out["accuracy_std"] = out["accuracy_std"].fillna(0.0)
    for extra in ("n_networks", "n_high", "n_decided", "spearman"):
        if extra in q1.columns:
            out[extra] = g[extra].mean().to_numpy() if extra == "spearman" else g[extra].first().to_numpy()
    if "balanced_accuracy" in q1.columns:
        out["balanced_accuracy_mean"] = g["balanced_accuracy"].mean().to_numpy()
    if "majority_accuracy" in q1.columns:
        out["majority_accuracy"] = g["majority_accuracy"].mean().to_numpy()
    if "single_class" in q1.columns:
        q1["single_class"] = parse_bool(q1["single_class"])
        out["n_single_class"] = q1.groupby(list(by), sort=False, dropna=False)["single_class"].sum().to_numpy()
    return out


def paired_tests(q1: pd.DataFrame, dataset: str, arch: str, classifier: str, t: int, mode: str = "plain"
                 ) -> dict[tuple[str, str], Any]:
    """Corrected resampled t-tests (:mod:`paperlib.stats`) of :data:`COMPARISONS` at one Table 2 cell.

    Per-fold accuracies of the two methods are paired by fold seed and fold (the evaluator's folds
    depend only on the labels, configurations and seed, so both methods saw the same splits; rows
    whose fold sizes differ are not paired). Returns ``{(method, baseline): PairedTest}``.
    """
    from .stats import corrected_resampled_ttest, parse_folds

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


def mark_best(frame: pd.DataFrame, value: str, within: Sequence[str], tol: float = 1e-12) -> pd.Series:
    """Boolean Series: the row(s) with the largest ``value`` within each group of ``within``.

    Ties (within ``tol``) are all marked; missing values are never marked.
    """
    best = frame.groupby(list(within), dropna=False)[value].transform("max")
    return (frame[value].notna() & (frame[value] >= best - tol)).astype(bool)


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
    published = read_published("table2.csv")
    agg = aggregate_q1(q1)
    rows = []
    for dataset, arch in _ordered_pops(p, zip(agg["dataset"], agg["arch"])):
        sub = agg[(agg["dataset"] == dataset) & (agg["arch"] == arch)]
        t_last = int(sub["t"].max())
        at = sub[sub["t"] == t_last]
        pd_key, same = paper_dataset_for(dataset, published)
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
                ref = published[(published["dataset"] == pd_key) & (published["arch"] == paper_arch_name(arch))
                                & (published["classifier"] == clf) & (published["feature_set"] == fs)]
                r = ref.iloc[0] if len(ref) else None
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
                       for b in SHORT_LABELS for k in ("diff", "p")},
                    "paper_dataset": DATASET_LABELS[pd_key] if r is not None else "",
                    "same_dataset": bool(same) if r is not None else False,
                    "paper_accuracy": r["accuracy"] if r is not None else np.nan,
                    "paper_note": (r["note"] if isinstance(r["note"], str) else "") if r is not None else "",
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


def significance_marks(r: pd.Series, alpha: float = 0.05) -> str:
    """``">Wl <LC"``: the baselines a method beats (>) or loses to (<) significantly in its Table 2 cell."""
    marks = []
    for b, short in SHORT_LABELS.items():
        p, d = r.get(f"vs_{b}_p", np.nan), r.get(f"vs_{b}_diff", np.nan)
        if p is not None and np.isfinite(p) and p < alpha and d != 0:
            marks.append((">" if d > 0 else "<") + short)
    return " ".join(marks)


def _ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    values = list(values)
    return [v for v in order if v in values] + sorted(v for v in values if v not in order)


def _column_name(dataset: str, arch: str, multi: bool) -> str:
    return f"{DATASET_LABELS.get(dataset, dataset)} {arch}" if multi else arch


def table2_display(t2: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The printed form of Table 2 and its mask of best entries.

    Rows: classifier x feature set; per architecture a column of ours (mean ± std over fold
    seeds) and, where the paper has the cell, a column of the paper's number.
    """
    pops = list(dict.fromkeys(zip(t2["dataset"], t2["arch"])))
    multi = len({d for d, _ in pops}) > 1
    keys = list(dict.fromkeys(zip(t2["classifier"], t2["feature_set"])))
    table: dict[str, list[str]] = {"classifier": [], "features": []}
    bold: dict[str, list[bool]] = {"classifier": [], "features": []}
    for clf, fs in keys:
        table["classifier"].append(CLASSIFIER_LABELS.get(clf, clf))
        table["features"].append(FEATURE_LABELS.get(fs, fs))
        bold["classifier"].append(False)
        bold["features"].append(False)
    for dataset, arch in pops:
        sub = t2[(t2["dataset"] == dataset) & (t2["arch"] == arch)].set_index(["classifier", "feature_set"])
        t_last = int(sub["t"].iloc[0])
        name = f"{_column_name(dataset, arch, multi)} (t={t_last})"
        table[name], bold[name] = [], []
        has_paper = sub["paper_dataset"].astype(bool).any()
        if has_paper:
            ref = sub[sub["paper_dataset"].astype(bool)].iloc[0]
            pname = f"paper {ref['paper_dataset']} {paper_arch_name(arch)}" + ("" if ref["same_dataset"] else " (ref.)")
            table[pname], bold[pname] = [], []
        for key in keys:
            r = sub.loc[key] if key in sub.index else None
            table[name].append(_cell(r))
            bold[name].append(bool(r["best"]) and not _constant(r) if r is not None else False)
            if has_paper:
                if r is None or not r["paper_dataset"]:
                    table[pname].append("")
                elif r["paper_note"]:
                    table[pname].append(r["paper_note"])
                else:
                    table[pname].append(f"{r['paper_accuracy']:.2f}")
                bold[pname].append(False)
    # one row per classifier: the majority-class rate of the networks evaluated at t
    for clf in dict.fromkeys(c for c, _ in keys):
        for col in table:
            if col == "classifier":
                table[col].append(CLASSIFIER_LABELS.get(clf, clf))
            elif col == "features":
                table[col].append("majority class (reference)")
            elif col.startswith("paper "):
                table[col].append("")
            else:
                table[col].append("")
            bold[col].append(False)
    for dataset, arch in pops:
        sub = t2[(t2["dataset"] == dataset) & (t2["arch"] == arch)]
        name = f"{_column_name(dataset, arch, multi)} (t={int(sub['t'].iloc[0])})"
        for k, clf in enumerate(dict.fromkeys(c for c, _ in keys)):
            maj = sub.loc[sub["classifier"] == clf, "majority_accuracy"] if "majority_accuracy" in sub else pd.Series()
            maj = maj.dropna()
            row = len(keys) + k
            table[name][row] = f"{maj.mean():.2f}" if len(maj) else "–"
    return pd.DataFrame(table), pd.DataFrame(bold)


def _constant(r: pd.Series) -> bool:
    n = r.get("n_single_class", 0)
    return bool(n is not None and np.isfinite(n) and n > 0)


def _cell(r: pd.Series | None) -> str:
    """``"0.81 ± 0.03 >Wl <LC"``, with ``[1 class k/n]`` when some fold seeds predicted a single class."""
    if r is None:
        return "–"
    text = fmt_mean_std(r["accuracy_mean"], r["accuracy_std"])
    if text == "–":
        return text
    marks = significance_marks(r)
    if marks:
        text += f" {marks}"
    if _constant(r):
        text += f" [1 class {int(r['n_single_class'])}/{int(r['n_seeds'])}]"
    return text


def skipped_reasons(profile: Profile | str, experiment: str = "q1") -> dict[str, str]:
    """Per architecture, why the experiment skipped it (from ``<experiment>_skipped.csv``, if any)."""
    path = paths.results_dir(as_profile(profile).name) / f"{experiment}_skipped.csv"
    if not path.exists():
        return {}
    skipped = pd.read_csv(path)
    key = "arch" if "arch" in skipped.columns else skipped.columns[0]
    return {str(a): str(g["reason"].iloc[0]) for a, g in skipped.groupby(key, sort=False)} \
        if "reason" in skipped.columns else {}


def missing_archs(profile: Profile | str, frame: pd.DataFrame, experiment: str = "q1") -> dict[str, str]:
    """Architectures of the profile without a row in ``frame``, with the reason recorded for them."""
    p = as_profile(profile)
    present = set(frame["arch"]) if "arch" in frame.columns else set()
    reasons = skipped_reasons(p, experiment)
    return {a: reasons.get(a, f"no rows in {experiment}.csv") for a in p.archs if a not in present}


def write_table2(profile: Profile | str, mode: str = "plain") -> pd.DataFrame:
    """Write Table 2 (``results/<profile>/table2.{csv,md,tex}``) from ``q1.csv``; return its tidy frame.

    Also records the table's headline numbers in ``results/<profile>/metrics.json`` (section
    ``table2``). See :func:`table2_frame` for what each cell holds.
    """
    p = as_profile(profile)
    q1 = read_result(p, "q1.csv")
    missing = missing_archs(p, q1)
    if len(q1) == 0:
        raise ValueError(f"q1.csv of profile {p.name!r} has no rows, so there is no Table 2: "
                         + "; ".join(f"{a}: {r}" for a, r in missing.items()))
    t2 = table2_frame(p, q1, mode=mode)
    display, bold = table2_display(t2)
    n_seeds = int(t2["n_seeds"].max()) if len(t2) else 0
    notes = [
        f"Ours: classification accuracy (high/low final accuracy) at the last epoch t of each architecture, "
        f"mean ± standard deviation over {n_seeds} fold seeds of stratified, configuration-grouped "
        f"{p.n_folds}-fold cross-validation; "
        f"signature mode: {mode}{' (per cell, the mode with the highest mean)' if mode == 'best' else ''}.",
        "Bold: the best mean of each column within a classifier's block (never a single-class predictor). "
        "`[1 class k/n]`: in k of the n fold seeds the classifier predicted one class for every network "
        "(a constant predictor: compare with the majority-class row, it is not a result).",
        "`>Wl`, `<LC`, ...: Ours (or learning curve + Ours) is significantly above (>) or below (<) that "
        "baseline in this column: corrected resampled t-test (Nadeau & Bengio, 2003) over the per-fold "
        "accuracies of all fold seeds, two-sided, p < 0.05. Wl/What/W' = B_Wl/B_What/B_Wprime, LC = learning curve.",
        "Folds are grouped by configuration (seed twins in one fold) and only networks still training at t "
        "are evaluated (`n_decided` in table2.csv counts those left out).",
        "The paper reports one number per cell (no spread), OOM where the unrolled graph did not fit in memory, "
        "and does not state the signature mode; its t differs from ours.",
        "`learning curve` (test accuracy of epochs 1..t) and `unroll-evec` have no counterpart in the paper.",
    ]
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


# --------------------------------------------------------------------------- readings
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
    t2 = read_result(p, "table2.csv")
    for col in ("paper_note", "paper_dataset"):
        t2[col] = t2[col].astype(object).where(t2[col].notna(), "")
    q1 = aggregate_q1(read_result(p, "q1.csv"))
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
    claims = read_published("claims.csv").set_index("claim")["text"]
    lines += [
        "",
        f"Graph signature above the best weight baseline: {counts['beats_weights']}/{n} (architecture x classifier). "
        f"Paper: {claims.get('q1_baselines', '')}",
        f"Graph signature above the learning-curve baseline: {counts['beats_curve']}/{n}; the paper has no such baseline.",
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


def majority_rates(profile: Profile | str) -> dict[str, float]:
    """Per architecture, the accuracy of always predicting the larger class (from ``q1.csv``)."""
    q1 = read_result(profile, "q1.csv")
    out = {}
    for arch, sub in q1.groupby("arch", sort=False):
        n, h = float(sub["n_networks"].iloc[0]), float(sub["n_high"].iloc[0])
        out[arch] = max(h, n - h) / n if n else float("nan")
    return out


def describe_q2(profile: Profile | str) -> str:
    """Q2 at the last t of every transfer, with the majority-class rate of the test population."""
    p = as_profile(profile)
    q2 = read_result(p, "q2.csv")
    q2["accuracy"] = as_fraction(q2["accuracy"])
    try:
        majority = majority_rates(p)
    except FileNotFoundError:
        majority = {}
    lines = [f"Profile '{p.name}': accuracy on the unseen test population at the last t "
             "(mean ± std over seeds), per feature set and classifier, plain mode for graph signatures."]
    if len(q2) == 0:
        reasons = skipped_reasons(p, "q2")
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


def _fmt_sec(x: Any) -> str:
    return f"{x:.3g}" if x is not None and np.isfinite(x) else "not built"


def describe_q3(profile: Profile | str) -> str:
    """Q3 per architecture: training to early stopping against the graph features, read from ``q3.csv``."""
    p = as_profile(profile)
    q3 = read_result(p, "q3.csv")
    claims = read_published("claims.csv").set_index("claim")["text"]
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


def show(name: str, profile: Profile | str):
    """The Markdown file of a table (``results/<profile>/<name>.md``) for display in a notebook."""
    from IPython.display import Markdown

    return Markdown((paths.results_dir(as_profile(profile).name) / f"{name}.md").read_text())
