"""Population replicates: Table 1 pooled, Table 2 and the figures across replicates, the noise floor.

A profile with ``replicates = R`` trains its grid R times (:meth:`paperlib.profile_types.Profile.replicate`):
replicate 0 is the profile itself (``results/<profile>/``), replicate r >= 1 lies under
``results/<profile>/r<r>/`` with its own ``runs.csv``, features and ``q1.csv``/``q2.csv``.

Across replicates (:func:`combine_table2`), a cell of Table 2 is

* ``accuracy_mean``: the mean over replicates of each replicate's mean over fold seeds;
* ``accuracy_std``: the spread over fold seeds (standard deviation, ``ddof=1``), averaged over replicates;
* ``replicate_std``: the spread between replicates, the standard deviation (``ddof=1``) of the
  replicates' cell means (NaN with one replicate), shown apart from the fold spread.

The mark rule, the same in Table 2, Q2 and every reading: a method is marked significantly above
(below) a baseline only when the corrected resampled t-test (Nadeau & Bengio, 2003) of that
replicate's per-fold differences gives p < 0.05 *in every replicate*, with the mean difference of
the same sign in all of them. ``vs_<b>_p`` of the combined table is therefore the largest p over
the replicates, ``vs_<b>_agree`` whether all replicates' differences have one sign, and
``vs_<b>_diff`` the mean difference over replicates. This is a conjunction of per-replicate tests,
not a test whose variance includes the replicates: an intersection-union test (Berger, 1982,
"Multiparameter hypothesis testing and acceptance sampling", Technometrics 24(4); Berger & Hsu,
1996, Statistical Science 11(4)), which keeps the level 0.05 of each test for the claim "the
difference holds, in this direction, in every replicate" without any correction. It is
conservative (a true difference must show in each retrained population), and with one replicate
it is exactly the single test.

The noise floor (:func:`noise_floor`): per architecture, over every pair of replicates and every
cell of Table 2, the absolute difference of the cell's mean accuracy between the two replicates
(median and maximum), and the same for the paired differences ``vs_<b>_diff``; beside them, the
size ``|vs_<b>_diff|`` of the effects Table 2 marks. It is written to ``results/<profile>/noise_floor.csv``.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .. import files
from ..evaluate.stats import ALPHA
from ..files import PAIRED_BASELINES
from ..profile_types import Profile
from .render import mark_best, mark_direction  # noqa: F401  (mark_direction: the mark rule, used here and by the readings)

CELL = ["dataset", "arch", "classifier", "feature_set"]

#: The rule every table states (captions, readings): one sentence, the same everywhere.
MARK_RULE = (f"a mark only where the corrected resampled t-test (Nadeau & Bengio, 2003) over the per-fold "
             f"accuracies of all fold seeds gives p < {ALPHA} in every population replicate, with the "
             "difference of the same sign in all of them (an intersection-union test, Berger 1982)")


def read_replicates(profile: Profile, name: str) -> list[pd.DataFrame]:
    """``name`` (a table of :mod:`paperlib.files`) of every replicate, replicate 0 first."""
    return [files.read_table(rp, name) for rp in profile.replicate_profiles()]


def pooled_runs(profile: Profile) -> pd.DataFrame:
    """``runs.csv`` of every replicate in one frame, with a ``replicate`` column."""
    return pd.concat([files.read_runs(rp).assign(replicate=r) for r, rp in enumerate(profile.replicate_profiles())],
                     ignore_index=True)


def _sign_agree(d: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(d)) and (np.all(d > 0) or np.all(d < 0)))


def combine_table2(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One Table 2 across replicates from each replicate's :func:`paperlib.report.tables.table2_frame`.

    A cell present in only some replicates is kept with ``n_replicates`` counting them; its marks
    then need every replicate (a missing test means no mark). See the module docstring for the
    columns and the mark rule.
    """
    if not frames:
        raise ValueError("combine_table2: no replicate given")
    tagged = pd.concat([f.assign(_rep=r) for r, f in enumerate(frames)], ignore_index=True)
    n_rep = len(frames)
    rows = []
    for _, g in tagged.groupby(CELL, sort=False):
        first = g.iloc[0]
        ts = set(g["t"].astype(int))
        if len(ts) > 1:
            raise ValueError(f"Table 2 cell {tuple(first[CELL])}: the replicates reach different last t {sorted(ts)}")
        acc = g["accuracy_mean"].to_numpy(dtype=float)
        row = first.to_dict()
        row.update({
            "accuracy_mean": float(np.nanmean(acc)) if np.isfinite(acc).any() else np.nan,
            "accuracy_std": float(g["accuracy_std"].mean()),
            "replicate_std": float(np.std(acc[np.isfinite(acc)], ddof=1)) if np.isfinite(acc).sum() > 1 else np.nan,
            "n_replicates": int(np.isfinite(acc).sum()),
            "mode": "/".join(dict.fromkeys(str(m) for m in g["mode"])),
        })
        for c in ("n_networks", "n_high", "n_seeds", "n_single_class", "n_decided"):
            row[c] = g[c].sum(min_count=1)
        for c in ("balanced_accuracy_mean", "majority_accuracy"):
            row[c] = g[c].mean()
        for b in PAIRED_BASELINES:
            d = g[f"vs_{b}_diff"].to_numpy(dtype=float)
            p = g[f"vs_{b}_p"].to_numpy(dtype=float)
            complete = len(g) == n_rep and np.isfinite(p).all()
            row[f"vs_{b}_diff"] = float(np.mean(d)) if np.isfinite(d).any() else np.nan
            row[f"vs_{b}_p"] = float(np.max(p)) if complete else np.nan
            row[f"vs_{b}_agree"] = _sign_agree(d) if complete else False
        rows.append(row)
    out = pd.DataFrame(rows).drop(columns=["_rep", "best"], errors="ignore")
    out["_eligible"] = out["accuracy_mean"].where(out["n_single_class"].fillna(0) == 0)
    out["best"] = mark_best(out, "_eligible", ["dataset", "arch", "classifier"]) if len(out) else False
    return out.drop(columns="_eligible")


def noise_floor(frames: Sequence[pd.DataFrame], combined: pd.DataFrame) -> pd.DataFrame:
    """Per architecture: how far a Table 2 cell moves between replicates, beside the marked effect sizes.

    ``cell_noise_*``: ``|accuracy_mean_r - accuracy_mean_s|`` over every pair of replicates r < s and
    every cell (classifier x feature set) both have; ``diff_noise_*``: the same for each paired
    difference ``vs_<b>_diff``; ``marked_effect_*``: ``|vs_<b>_diff|`` of the comparisons the combined
    table marks (:func:`mark_direction`). NaN where there is nothing to measure (one replicate, no mark).
    """
    cols = ["accuracy_mean"] + [f"vs_{b}_diff" for b in PAIRED_BASELINES]
    pairs = []
    for fa, fb in itertools.combinations(frames, 2):
        m = fa[CELL + cols].merge(fb[CELL + cols], on=CELL, suffixes=("_a", "_b"))
        pairs.append(m.assign(**{f"abs_{c}": (m[f"{c}_a"] - m[f"{c}_b"]).abs() for c in cols}))
    moved = pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame(columns=CELL)
    rows = []
    for (dataset, arch), g in combined.groupby(["dataset", "arch"], sort=False):
        sub = moved[(moved["dataset"] == dataset) & (moved["arch"] == arch)] if len(moved) else moved
        cell_d = sub["abs_accuracy_mean"].to_numpy(float) if len(sub) else np.array([])
        diff_d = sub[[f"abs_{c}" for c in cols[1:]]].to_numpy(float).ravel() if len(sub) else np.array([])
        cell_d, diff_d = cell_d[np.isfinite(cell_d)], diff_d[np.isfinite(diff_d)]
        marked = np.array([abs(r[f"vs_{b}_diff"]) for _, r in g.iterrows() for b in PAIRED_BASELINES
                           if mark_direction(r, b)])
        rows.append({
            "dataset": dataset, "arch": arch, "n_replicates": len(frames),
            "n_cell_differences": int(len(cell_d)),
            "cell_noise_median": _stat(np.median, cell_d), "cell_noise_max": _stat(np.max, cell_d),
            "diff_noise_median": _stat(np.median, diff_d), "diff_noise_max": _stat(np.max, diff_d),
            "n_marked": int(len(marked)),
            "marked_effect_min": _stat(np.min, marked), "marked_effect_median": _stat(np.median, marked),
        })
    return pd.DataFrame(rows, columns=files.NOISE_FLOOR_COLUMNS)


def _stat(fn: Any, x: np.ndarray) -> float:
    return float(fn(x)) if len(x) else np.nan


def write_noise_floor(profile: Profile, frames: Sequence[pd.DataFrame], combined: pd.DataFrame) -> pd.DataFrame:
    """:func:`noise_floor`, written to ``results/<profile>/noise_floor.{csv,md}`` and the ``noise_floor``
    section of ``metrics.json``; returns the frame."""
    from ..files import atomic_write_text, update_metrics
    from .. import paths
    from .render import to_markdown

    nf = noise_floor(frames, combined)
    files.write_table(profile, "noise_floor.csv", nf)
    rnd = lambda v: round(float(v), 4) if np.isfinite(v) else None  # noqa: E731
    update_metrics(profile.name, "noise_floor", {"n_replicates": len(frames), "per_arch": {
        r["arch"]: {k: rnd(r[k]) for k in ("cell_noise_median", "cell_noise_max", "diff_noise_median", "diff_noise_max",
                                           "marked_effect_min", "marked_effect_median")} | {"n_marked": int(r["n_marked"])}
        for _, r in nf.iterrows()}})
    shown = nf.copy()
    for c in nf.columns:
        if c.endswith(("_median", "_max", "_min")):
            shown[c] = nf[c].map(lambda v: "–" if not np.isfinite(v) else f"{v:.3f}")
    shown = shown.astype(str)
    note = ("Noise floor: per architecture, |difference| of a Table 2 cell's mean accuracy between two population "
            "replicates (cell_noise), and of a paired difference vs a baseline (diff_noise), over every pair of "
            f"replicates and every cell; marked_effect: |mean difference| of the comparisons Table 2 marks ({MARK_RULE}).")
    if len(frames) < 2:
        note += " With one replicate the noise floor cannot be measured (–): set the profile's replicates to 2 or more."
    atomic_write_text(paths.results_dir(profile.name) / "noise_floor.md",
                      f"Noise floor of profile '{profile.name}' ({len(frames)} replicate(s)).\n\n"
                      f"{to_markdown(shown)}\n- {note}\n")
    return nf


def aggregate_across(profile: Profile, name: str, by: Sequence[str], seed_col: str) -> pd.DataFrame:
    """:func:`paperlib.evaluate.stats.aggregate_q1` of table ``name`` in every replicate, combined.

    ``accuracy_mean``: mean over replicates; ``accuracy_std``: the fold-seed spread averaged over
    replicates; ``replicate_std``: standard deviation of the replicates' means (NaN with one);
    ``n_single_class``: summed. The figures draw the first as a line, the second as a band and the
    third as error bars.
    """
    from ..evaluate.stats import aggregate_q1

    aggs = [aggregate_q1(df, by=by, seed_col=seed_col).assign(_rep=r)
            for r, df in enumerate(read_replicates(profile, name))]
    both = pd.concat(aggs, ignore_index=True)
    if len(aggs) == 1:
        return aggs[0].drop(columns="_rep").assign(replicate_std=np.nan, n_replicates=1)
    g = both.groupby(list(by), sort=False, dropna=False)
    out = g.agg(accuracy_mean=("accuracy_mean", "mean"), accuracy_std=("accuracy_std", "mean"),
                replicate_std=("accuracy_mean", lambda s: s.std(ddof=1) if s.notna().sum() > 1 else np.nan),
                n_replicates=("accuracy_mean", "count")).reset_index()
    for c in ("n_networks", "n_high", "n_seeds", "n_single_class"):
        if c in both:
            out[c] = g[c].sum(min_count=1).to_numpy()
    for c in ("majority_accuracy", "balanced_accuracy_mean"):
        if c in both:
            out[c] = g[c].mean().to_numpy()
    return out


# --------------------------------------------------------------------------- early stopping (07)
def early_stopping_across(summaries: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per population and pruner, the early-stopping summary of every replicate combined.

    ``saved_pct`` and ``regret_mean``: means over replicates; ``saved_pct_rep_std`` and
    ``regret_rep_std``: the standard deviation between replicates (NaN with one); ``regret_worst``:
    the largest mean regret of a replicate (what :func:`early_stopping_reading` holds against the
    tolerance, so a reading must hold in every replicate).
    """
    both = pd.concat([s.assign(_rep=r) for r, s in enumerate(summaries)], ignore_index=True)
    g = both.groupby(["arch", "pruner"], sort=False)
    sd = lambda s: s.std(ddof=1) if s.notna().sum() > 1 else np.nan  # noqa: E731
    out = g.agg(n_replicates=("_rep", "nunique"), saved_pct=("saved_pct", "mean"), saved_pct_rep_std=("saved_pct", sd),
                regret_mean=("regret_mean", "mean"), regret_rep_std=("regret_mean", sd),
                regret_worst=("regret_mean", "max"), high_stopped_mean=("high_stopped_mean", "mean"))
    return out.reset_index()


def early_stopping_reading(summaries: Sequence[pd.DataFrame], tolerance: float = 1.0) -> str:
    """The reading of 07 across replicates: the mark rule's analogue for early stopping.

    With one replicate, :func:`paperlib.stopping.pruning.reading`. With several, a pruner counts as
    "within ``tolerance`` point(s) of mean regret" only when it is so in every replicate
    (``regret_worst``); among those, the one with the largest mean compute saved is named, with the
    spread between replicates beside each number.
    """
    from ..stopping.pruning import reading
    from ..stopping.search import PRUNER_LABELS

    if len(summaries) == 1:
        return reading(summaries[0], tolerance)
    comb = early_stopping_across(summaries)
    lines = [f"Across {len(summaries)} population replicates: means, with ± the spread between replicates; a "
             f"pruner is within {tolerance:g} point(s) of mean regret only when it is so in every replicate."]
    for arch, g in comb.groupby("arch", sort=False):
        g = g.set_index("pruner")
        ok = g[(g.index != "none") & (g["regret_worst"] <= tolerance) & (g["n_replicates"] == len(summaries))]
        if len(ok):
            b = ok["saved_pct"].idxmax()
            r = ok.loc[b]
            lines.append(f"- {arch}: {PRUNER_LABELS.get(b, b)} saves the most compute ({r.saved_pct:.0f}% ± "
                         f"{r.saved_pct_rep_std:.0f} of the epochs, mean regret {r.regret_mean:.2f} ± "
                         f"{r.regret_rep_std:.2f}, worst replicate {r.regret_worst:.2f}).")
        else:
            lines.append(f"- {arch}: no pruner stays within {tolerance:g} point(s) of mean regret in every replicate.")
        if {"graph", "curve"} <= set(g.index):
            gr, cu = g.loc["graph"], g.loc["curve"]
            lines.append(f"  graph signatures: {gr.saved_pct:.0f}% ± {gr.saved_pct_rep_std:.0f} saved, regret "
                         f"{gr.regret_mean:.2f} ± {gr.regret_rep_std:.2f}; learning curve: {cu.saved_pct:.0f}% ± "
                         f"{cu.saved_pct_rep_std:.0f} saved, regret {cu.regret_mean:.2f} ± {cu.regret_rep_std:.2f}.")
    return "\n".join(lines)
