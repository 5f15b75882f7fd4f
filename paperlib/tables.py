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
are computed from the result files, so the notebooks never type a number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from . import paths
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
    "accuracy_mean", "accuracy_std", "n_seeds", "best",
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


def fmt_mean_std(mean: float, std: float, digits: int = 2) -> str:
    """``"0.93 ± 0.02"``; ``"–"`` for a missing mean; the spread is left out when undefined."""
    if mean is None or not np.isfinite(mean):
        return "–"
    if std is None or not np.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _fmt_num(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)) or (isinstance(x, float) and float(x).is_integer() and abs(x) >= 1):
        return str(int(x))
    return f"{x:.{digits}f}"


def _range(lo: Any, hi: Any, digits: int = 1) -> str:
    if lo is None or hi is None or (isinstance(lo, float) and not np.isfinite(lo)):
        return "–"
    a, b = _fmt_num(lo, digits), _fmt_num(hi, digits)
    return a if a == b else f"{a}–{b}"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    """Escape LaTeX's special characters; ``±`` and ``–`` become math/en-dash."""
    out = "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))
    return out.replace("±", r"$\pm$").replace("–", "--").replace("→", r"$\rightarrow$")


def to_latex(frame: pd.DataFrame, caption: str = "", label: str = "",
             bold: pd.DataFrame | None = None) -> str:
    """A ``booktabs`` LaTeX table of a frame of strings (index dropped).

    Written here rather than with ``DataFrame.to_latex`` so that the output is the same across
    pandas versions and needs no template engine. ``bold`` (same shape, booleans) marks cells
    set in bold.
    """
    cols = list(frame.columns)
    align = "l" * min(2, len(cols)) + "r" * max(0, len(cols) - 2)
    lines = [r"\begin{table}[t]", r"\centering", r"\small"]
    if caption:
        lines.append(rf"\caption{{{tex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(tex_escape(c) for c in cols) + r" \\",
              r"\midrule"]
    for i in range(len(frame)):
        cells = []
        for j, c in enumerate(cols):
            text = tex_escape(frame.iat[i, j])
            if bold is not None and bool(bold.iat[i, j]):
                text = rf"\textbf{{{text}}}"
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def to_markdown(frame: pd.DataFrame, bold: pd.DataFrame | None = None) -> str:
    """A GitHub Markdown table (via tabulate) of a frame of strings; ``bold`` marks cells."""
    shown = frame.copy().astype(object)
    if bold is not None:
        for i in range(len(shown)):
            for j in range(shown.shape[1]):
                if bool(bold.iat[i, j]) and shown.iat[i, j] not in ("", "–"):
                    shown.iat[i, j] = f"**{shown.iat[i, j]}**"
    return shown.to_markdown(index=False, disable_numparse=True) + "\n"


def write_table_files(profile: str, name: str, tidy: pd.DataFrame, display: pd.DataFrame,
                      caption: str, notes: Sequence[str] = (), bold: pd.DataFrame | None = None) -> list[Path]:
    """Write ``<name>.csv`` (tidy), ``<name>.md`` and ``<name>.tex`` (display) under ``results/<profile>``."""
    out = paths.ensure(paths.results_dir(profile))
    csv = out / f"{name}.csv"
    tidy.to_csv(csv, index=False, float_format="%.6g", lineterminator="\n")
    md_text = f"{caption}\n\n{to_markdown(display, bold)}"
    if notes:
        md_text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    (out / f"{name}.md").write_text(md_text)
    (out / f"{name}.tex").write_text(to_latex(display, caption=caption, label=f"tab:{name}", bold=bold))
    return [csv, out / f"{name}.md", out / f"{name}.tex"]


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
        diverged = sub["diverged"].astype(str).str.lower().isin({"true", "1"}) | (sub["status"] == "diverged")
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
    for extra in ("n_networks", "n_high", "spearman"):
        if extra in q1.columns:
            out[extra] = g[extra].mean().to_numpy() if extra == "spearman" else g[extra].first().to_numpy()
    return out


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
                rows.append({
                    "dataset": dataset, "arch": arch, "t": t_last, "classifier": clf, "feature_set": fs,
                    "label": FEATURE_LABELS.get(fs, fs),
                    "mode": c["mode"] if c is not None else "",
                    "n_networks": n_net, "n_high": n_high,
                    "accuracy_mean": c["accuracy_mean"] if c is not None else np.nan,
                    "accuracy_std": c["accuracy_std"] if c is not None else np.nan,
                    "n_seeds": int(c["n_seeds"]) if c is not None else 0,
                    "paper_dataset": DATASET_LABELS[pd_key] if r is not None else "",
                    "same_dataset": bool(same) if r is not None else False,
                    "paper_accuracy": r["accuracy"] if r is not None else np.nan,
                    "paper_note": (r["note"] if isinstance(r["note"], str) else "") if r is not None else "",
                })
    t2 = pd.DataFrame(rows, columns=[c for c in TABLE2_COLUMNS if c != "best"])
    t2.insert(TABLE2_COLUMNS.index("best"), "best", mark_best(t2, "accuracy_mean", ["dataset", "arch", "classifier"])
              if len(t2) else pd.Series(dtype=bool))
    return t2


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
            table[name].append(fmt_mean_std(r["accuracy_mean"], r["accuracy_std"]) if r is not None else "–")
            bold[name].append(bool(r["best"]) if r is not None else False)
            if has_paper:
                if r is None or not r["paper_dataset"]:
                    table[pname].append("")
                elif r["paper_note"]:
                    table[pname].append(r["paper_note"])
                else:
                    table[pname].append(f"{r['paper_accuracy']:.2f}")
                bold[pname].append(False)
    return pd.DataFrame(table), pd.DataFrame(bold)


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
        f"mean ± standard deviation over {n_seeds} fold seeds of stratified {p.n_folds}-fold cross-validation; "
        f"signature mode: {mode}{' (per cell, the mode with the highest mean)' if mode == 'best' else ''}.",
        "Bold: the best mean of each column within a classifier's block.",
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
    return {
        "mode": mode,
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
    baselines (the paper: graph signatures win everywhere but VGG), against the learning curve
    (not in the paper), the unrolled against the rolled graph, and the first t at which a graph
    signature reaches 80% accuracy (the paper: fewer than 10 epochs). Ends with the cells that
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
    lines += [
        "",
        f"Graph signature above the best weight baseline: {counts['beats_weights']}/{n} (architecture x classifier); "
        "the paper: all but VGG.",
        f"Graph signature above the learning-curve baseline: {counts['beats_curve']}/{n}; the paper has no such baseline.",
        f"Rolled above unrolled: {counts['rolled_beats_unrolled']}/{n}; the paper: rolled better where unrolled fit in memory.",
    ]
    lines.append("")
    lines.append("First t at which a graph signature (any mode) reaches 0.80 mean accuracy (the paper: t < 10):")
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
