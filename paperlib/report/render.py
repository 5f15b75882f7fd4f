"""Rendering of tables: labels, the printed forms of Tables 1 and 2, Markdown and LaTeX.

Pure formatting: nothing here reads a result file or knows the paper's numbers
(:mod:`paperlib.report.tables` builds the tidy frames, :mod:`paperlib.report.published` sets the paper's
numbers beside ours, :mod:`paperlib.report.readings` writes the texts); :func:`write_table_files`
hands the three forms of a table to :mod:`paperlib.files`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .. import files, paths
from ..files import PAIRED_BASELINES, atomic_write_text


#: The paper's name of a dataset key.
DATASET_LABELS = {"cifar10": "CIFAR-10", "tiny-imagenet": "ImageNet", "digits": "digits"}
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
CLASSIFIER_LABELS = {"svm": "SVM", "mlp": "MLP"}


def paper_arch_name(arch: str) -> str:
    """The paper's name of one of our architectures (drops a trailing ``-IN``)."""
    return arch[:-3] if arch.endswith("-IN") else arch


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
    csv = files.write_table(profile, f"{name}.csv", tidy)
    md_text = f"{caption}\n\n{to_markdown(display, bold)}"
    if notes:
        md_text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    out = paths.results_dir(profile)
    atomic_write_text(out / f"{name}.md", md_text)
    atomic_write_text(out / f"{name}.tex", to_latex(display, caption=caption, label=f"tab:{name}", bold=bold))
    return [csv, out / f"{name}.md", out / f"{name}.tex"]


# --------------------------------------------------------------------------- Tables 1 and 2, printed
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


def mark_best(frame: pd.DataFrame, value: str, within: Sequence[str], tol: float = 1e-12) -> pd.Series:
    """Boolean Series: the row(s) with the largest ``value`` within each group of ``within``.

    Ties (within ``tol``) are all marked; missing values are never marked.
    """
    best = frame.groupby(list(within), dropna=False)[value].transform("max")
    return (frame[value].notna() & (frame[value] >= best - tol)).astype(bool)


def mark_direction(r: pd.Series, b: str, alpha: float = 0.05) -> int:
    """+1 / -1 / 0: the method is above / below / not different from baseline ``b`` by the mark rule of
    :mod:`paperlib.report.replicates`.

    ``vs_<b>_p`` below ``alpha`` (the largest p over the replicates in a combined table), and, where the
    row has ``vs_<b>_agree``, the same direction in every replicate.
    """
    p, d = r.get(f"vs_{b}_p", np.nan), r.get(f"vs_{b}_diff", np.nan)
    agree = r.get(f"vs_{b}_agree", True)
    if p is None or not np.isfinite(p) or p >= alpha or d is None or not np.isfinite(d) or d == 0:
        return 0
    if agree is not None and not (isinstance(agree, float) and np.isnan(agree)) and not bool(agree):
        return 0
    return 1 if d > 0 else -1


def significance_marks(r: pd.Series, alpha: float = 0.05) -> str:
    """``">Wl <LC"``: the baselines a method beats (>) or loses to (<) significantly in its Table 2 cell,
    by the mark rule of :mod:`paperlib.report.replicates` (significant in every replicate, one direction)."""
    marks = []
    for b in PAIRED_BASELINES:
        direction = mark_direction(r, b, alpha)
        if direction:
            marks.append((">" if direction > 0 else "<") + SHORT_LABELS[b])
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
    rep = r.get("replicate_std", np.nan)
    if rep is not None and np.isfinite(rep):  # the spread between population replicates, apart from the folds'
        text += f" (rep. ± {rep:.2f})"
    marks = significance_marks(r)
    if marks:
        text += f" {marks}"
    if _constant(r):
        text += f" [1 class {int(r['n_single_class'])}/{int(r['n_seeds'])}]"
    return text


def show(name: str, profile: Any):
    """The Markdown file of a table (``results/<profile>/<name>.md``) for display in a notebook."""
    from IPython.display import Markdown

    return Markdown((paths.results_dir(profile if isinstance(profile, str) else profile.name) / f"{name}.md").read_text())


# --------------------------------------------------------------------------- in a notebook
def _md_escape(text: str) -> str:
    """Plain text safe inside Markdown: no HTML, emphasis, math or strike-through by accident."""
    text = text.replace("&", "&amp;").replace("->", "→").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "\\*~$":  # the backslash first
        text = text.replace(ch, "\\" + ch)
    return text


def reading_markdown(text: str) -> str:
    """A plain-text reading (lines, blank lines, indented rows) as Markdown.

    Every unindented line is a paragraph of its own (``- `` lines stay list items); indented
    rows, which were aligned in columns for a terminal, become list items (nested under a
    preceding ``- `` item), their runs of spaces an em dash.
    """
    import re

    out: list[str] = []
    under_item = False
    for raw in text.splitlines():
        if not raw.strip():
            out.append("")
            under_item = False
            continue
        line = _md_escape(re.sub(r"\s{2,}", " — ", raw.strip()))
        if not raw[:1].isspace() and line.startswith("- "):
            out.append(line)
            under_item = True
        elif raw[:1].isspace():
            if out and out[-1] and not out[-1].lstrip().startswith("- "):
                out.append("")
            out.append(("  - " if under_item else "- ") + line)
        else:
            out += ["", line, ""]
            under_item = False
    md = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", md).strip() + "\n"


def reading(text: str):
    """A reading for display in a notebook (:func:`reading_markdown` as IPython Markdown)."""
    from IPython.display import Markdown

    return Markdown(reading_markdown(text))


def table2_markdown(t2: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    """Table 2 for a notebook: one table per classifier, the paper's number under ours in each cell.

    The same cells as ``table2.md`` (:func:`table2_display`), folded so that the table has one
    column per architecture and reads at a normal window width.
    """
    display, bold = table2_display(t2)
    ours = [c for c in display.columns if c not in ("classifier", "features") and not c.startswith("paper ")]
    paper_of: dict[str, str | None] = {}
    cols = list(display.columns)
    for c in ours:
        nxt = cols[cols.index(c) + 1] if cols.index(c) + 1 < len(cols) else None
        paper_of[c] = nxt if nxt is not None and nxt.startswith("paper ") else None
    parts = []
    for clf in dict.fromkeys(display["classifier"]):
        rows = display.index[display["classifier"] == clf]
        header = ["features"] + [c + (f"<br>{_md_escape(_paper_header(paper_of[c], c))}" if paper_of[c] else "")
                                 for c in ours]
        lines = [f"**{_md_escape(clf)}**", "", "| " + " | ".join(header) + " |",
                 "|:--" + "|--:" * len(ours) + "|"]
        for i in rows:
            cells = [_md_escape(display.at[i, "features"])]
            for c in ours:
                cell = _md_escape(display.at[i, c])
                if bold.at[i, c] and cell not in ("", "–"):
                    cell = f"**{cell}**"
                paper = display.at[i, paper_of[c]] if paper_of[c] else ""
                if paper:
                    cell += f"<br>paper {_md_escape(paper)}"
                cells.append(cell)
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    text = "\n\n".join(parts) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


def _paper_header(paper: str, ours: str) -> str:
    """``"paper: CIFAR-10 (ref.)"`` from ``"paper CIFAR-10 LeNet (ref.)"`` under the column ``"LeNet (t=9)"``."""
    arch = ours.split(" (t=")[0].split()[-1]
    words = [w for w in paper.removeprefix("paper ").split() if w != arch]
    return "paper: " + " ".join(words)


def show_table2(profile: Any, t2: pd.DataFrame | None = None):
    """Table 2 for display in a notebook (:func:`table2_markdown`, with the notes of ``table2.md``)."""
    from IPython.display import Markdown

    name = profile if isinstance(profile, str) else profile.name
    if t2 is None:
        t2 = files.read_table(name, "table2.csv")
    md = (paths.results_dir(name) / "table2.md").read_text()
    notes = [line[2:] for line in md.splitlines() if line.startswith("- ")]
    caption = md.splitlines()[0] if md else ""
    return Markdown(f"{caption}\n\n" + table2_markdown(t2, notes))


def training_summary(runs: pd.DataFrame):
    """What a call of :func:`paperlib.train.populations.train_profile` did, per population, for a notebook.

    One Markdown line (networks trained, resumed, retrained and skipped; wall time) and a table
    per population with the summed training time of the networks trained this time.
    """
    from IPython.display import Markdown

    info = runs.attrs.get("training", {})
    actions = info.get("actions", {})
    kinds = ("trained", "resumed", "retrained", "skipped")
    act = runs["key"].map(actions).fillna("skipped")
    rows = []
    for arch, sub in runs.groupby("arch", sort=False):
        a = act[sub.index]
        worked = sub[a != "skipped"]
        rows.append([arch, str(len(sub))] + [str(int((a == k).sum())) for k in kinds]
                    + [f"{worked['train_seconds'].sum() / 60:.1f}" if len(worked) else "–"])
    counts = {k: int((act == k).sum()) for k in kinds}
    wall = info.get("wall_seconds")
    line = (f"**Training:** {len(runs)} networks: {counts['trained']} trained, {counts['resumed']} resumed from their "
            f"last complete epoch, {counts['retrained']} retrained (damaged snapshots), {counts['skipped']} skipped "
            "(already finished)" + (f"; {wall / 60:.1f} min wall time." if wall is not None else "."))
    frame = pd.DataFrame(rows, columns=["population", "networks", *kinds, "training time this run (min, summed)"])
    note = ("Runs of all populations train side by side, so a population's time is the sum over its networks "
            "trained or resumed in this run (– when all were skipped).")
    return Markdown(f"{line}\n\n{to_markdown(frame)}\n{note}\n")
