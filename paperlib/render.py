"""Rendering of tables: Markdown, LaTeX and the files ``results/<profile>/<name>.{csv,md,tex}``.

Pure formatting: nothing here reads result files or knows the paper's numbers
(:mod:`paperlib.tables` builds the frames, :mod:`paperlib.readings` the texts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import paths
from .store import atomic_write_bytes


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
    atomic_write_bytes(csv, tidy.to_csv(index=False, float_format="%.6g", lineterminator="\n").encode())
    md_text = f"{caption}\n\n{to_markdown(display, bold)}"
    if notes:
        md_text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    atomic_write_bytes(out / f"{name}.md", md_text.encode())
    atomic_write_bytes(out / f"{name}.tex", to_latex(display, caption=caption, label=f"tab:{name}", bold=bold).encode())
    return [csv, out / f"{name}.md", out / f"{name}.tex"]
