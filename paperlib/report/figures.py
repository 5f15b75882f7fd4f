"""Figures 1, 3, 4 and 5 of the paper and the early-stopping figure (07), regenerated from the result files.

Plotting never trains or computes features: every figure reads the tidy tables under
``results/<profile>/`` (``q1.csv``, ``q2.csv``, ``q3.csv``, ``early_stopping.csv``), so it can be remade in seconds.
Each figure is written as ``figures/<profile>/figN.png`` and ``.pdf`` in one shared style
(:data:`STYLE`: seaborn's whitegrid, DejaVu Sans, fixed sizes, constrained layout) and without
timestamps or software versions in the files, so that re-running the pipeline on the same
results rewrites byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

from .. import files, paths
from ..stopping.pruning import read_early_stopping
from ..stopping.search import PRUNER_LABELS, PRUNERS
from ..profiles import as_profile
from ..profile_types import Profile
from .render import CLASSIFIER_LABELS, DATASET_LABELS
from .tables import missing_archs

#: One style for every figure: seaborn "whitegrid" + "paper" context, a font bundled with matplotlib.
STYLE: dict[str, Any] = {
    **sns.axes_style("whitegrid"),
    **sns.plotting_context("paper"),
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "lines.linewidth": 1.2,
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "pdf.fonttype": 42,
    "svg.hashsalt": "paperlib",
}
#: Width of a full-width figure (inches); panels have a fixed size, so height follows the rows.
WIDTH = 7.0
#: Width (CSS pixels) at which a notebook shows a full-width figure (:func:`show`).
NOTEBOOK_WIDTH_PX = 900
#: Larger text for the many-panel Figures 3 and 4: at :data:`NOTEBOOK_WIDTH_PX` the smallest text
#: (8 pt of a 7-inch figure) is 14 px, JupyterLab's own text size.
READABLE: dict[str, Any] = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8,
                            "ytick.labelsize": 8, "legend.fontsize": 9}
PANEL_HEIGHT = 1.9
MODE_COLORS = dict(zip(("plain", "wavg", "expavg"), sns.color_palette("colorblind", 3)))
MODE_LABELS = {"plain": "plain", "wavg": "wAvg", "expavg": "expAvg"}
CLASSIFIER_STYLES = {"svm": "-", "mlp": "--"}
BASELINE_COLOR = "0.55"
#: Q3 bar colours as in the paper: training green, rolled blue, unrolled red.
Q3_COLORS = {"train": "#2ca02c", "rolled": "#1f77b4", "unrolled_matfree": "#d62728", "unrolled_explicit": "#ff9896"}


def save_figure(fig: plt.Figure, profile: str, name: str) -> list[Path]:
    """Write ``figures/<profile>/<name>.png`` and ``.pdf`` without timestamps; close the figure."""
    out = paths.ensure(paths.figures_dir(profile))
    png, pdf = out / f"{name}.png", out / f"{name}.pdf"
    with plt.rc_context(STYLE):
        fig.savefig(png, metadata={"Software": None})
        fig.savefig(pdf, metadata={"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None})
    plt.close(fig)
    return [png, pdf]


def _title(dataset: str, arch: str, extra: str = "") -> str:
    label = DATASET_LABELS.get(dataset, dataset)
    return f"{label} {arch}" + (f": {extra}" if extra else "")


def _band(ax: plt.Axes, x: np.ndarray, mean: np.ndarray, std: np.ndarray, rep: np.ndarray | None = None,
          **kw: Any) -> None:
    """The mean, a band of ± the fold-seed spread and, where measured, error bars of ± the spread between
    population replicates (:mod:`paperlib.report.replicates`), so that a reader sees both."""
    (line,) = ax.plot(x, mean, **kw)
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
    if rep is not None and np.isfinite(rep).any():
        ax.errorbar(x, mean, yerr=np.nan_to_num(rep), fmt="none", ecolor=line.get_color(), elinewidth=0.8,
                    capsize=2)


def _accuracy_panel(ax: plt.Axes, agg: pd.DataFrame, feature_set: str, majority: float | None) -> None:
    """Accuracy vs t: classifier (line style) x mode (colour) of one feature set; learning curve in grey."""
    sub = agg[agg["feature_set"] == feature_set]
    for clf, ls in CLASSIFIER_STYLES.items():
        for mode, color in MODE_COLORS.items():
            s = sub[(sub["classifier"] == clf) & (sub["mode"] == mode)].sort_values("t")
            if len(s):
                _band(ax, s["t"].to_numpy(), s["accuracy_mean"].to_numpy(), s["accuracy_std"].to_numpy(),
                      s["replicate_std"].to_numpy(float) if "replicate_std" in s else None, color=color, linestyle=ls)
                if "n_single_class" in s:  # a constant predictor is marked, never read as a result
                    const = s[s["n_single_class"] > 0]
                    ax.scatter(const["t"], const["accuracy_mean"], marker="x", s=18, color=color, zorder=3,
                               linewidths=1.0)
        base = agg[(agg["feature_set"] == "learning-curve") & (agg["classifier"] == clf)].sort_values("t")
        if len(base):
            base = base[base["mode"] == base["mode"].iloc[0]]
            ax.plot(base["t"], base["accuracy_mean"], color=BASELINE_COLOR, linestyle=ls, linewidth=0.9)
    if majority is not None and np.isfinite(majority):
        ax.axhline(majority, color="black", linestyle=":", linewidth=0.8)
    ax.set_xlabel("epochs used (t)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(min(0.4, ax.get_ylim()[0]), 1.02)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))


def _legend(fig: plt.Figure, majority: bool = True, curve: bool = True, ncol: int = 4, replicates: bool = False) -> None:
    """One legend for every panel, above them (where the eye starts); ``replicates``: the error bars of
    the spread between population replicates (the bands are the spread over fold seeds)."""
    handles = [Line2D([], [], color=c, label=MODE_LABELS[m]) for m, c in MODE_COLORS.items()]
    handles += [Line2D([], [], color="black", linestyle=ls, label=CLASSIFIER_LABELS[c])
                for c, ls in CLASSIFIER_STYLES.items()]
    if curve:
        handles.append(Line2D([], [], color=BASELINE_COLOR, label="learning curve"))
    if majority:
        handles.append(Line2D([], [], color="black", linestyle=":", label="majority class"))
    handles.append(Line2D([], [], color="black", marker="x", linestyle="", label="single-class predictor"))
    if replicates:
        handles.append(Line2D([], [], color="black", marker="|", markersize=9, linestyle="",
                              label="± between replicates (band: ± over fold seeds)"))
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), ncol), frameon=False)


def show(profile: Profile | str, name: str, width: int = NOTEBOOK_WIDTH_PX):
    """The written ``figures/<profile>/<name>.png`` for a notebook, ``width`` CSS pixels wide.

    A notebook shows the file the pipeline wrote (not a second rendering of the figure), at a
    width where the text of Figures 3 and 4 is at least JupyterLab's own text size.
    """
    from IPython.display import Image

    return Image(filename=str(paths.figures_dir(as_profile(profile).name) / f"{name}.png"), width=width)


# --------------------------------------------------------------------------- Figure 1
def fig1_model(p: Profile, width: float = 0.25, seed: int = 0) -> tuple[Any, tuple[int, int, int], str]:
    """The network Figure 1 draws: the first population's model (of its profile file for an imported
    profile), initialised with ``seed``; its input shape; and the words of the title."""
    import torch

    from .. import profile_files
    from ..train import data, models

    pop = p.populations[0]
    plan = profile_files.plan_of(p.name)
    if plan is not None:
        ip = plan.populations[0]
        classes, channels, side = ip.num_classes, ip.in_channels, ip.image_size
    else:
        info = data.DATASETS[pop.dataset]
        classes, channels, side = info.num_classes, info.in_channels, p.image_size[pop.dataset]
    kwargs, label = dict(pop.model_kwargs), f"{pop.arch} ({pop.model}, {pop.dataset} input)"
    if pop.model == "lenet":  # the paper's Figure 1, as it always was drawn
        kwargs = {"width": float(kwargs.get("width", 1.0)) * width}
        label = f"a LeNet (width x{kwargs['width']:g}, {pop.dataset} input)"
    torch.manual_seed(seed)
    model = models.build_model(pop.model, num_classes=classes, in_channels=channels, image_size=side, **kwargs)
    return model.eval(), (channels, side, side), label


def fig1(profile: Profile | str, width: float = 0.25, seed: int = 0) -> plt.Figure:
    """Figure 1: the rolled graph of the profile's first population's network, drawn layer by layer.

    Nodes sit in columns by layer (a multipartite layout) and are coloured by layer type
    (input channels, convolution filters, linear units); edge width and darkness grow with the
    edge weight (the L2 norm of the kernel slice, or ``|w|``). The network is initialised with
    ``seed`` (:func:`fig1_model`); a LeNet population is drawn at ``width`` x the usual number of
    units, as in the paper (a full-width LeNet has too many edges to see one).
    """
    import torch

    from .. import graph

    p = as_profile(profile)
    model, shape, label = fig1_model(p, width, seed)
    rg = graph.rolled_graph(model, shape)
    g = rg.to_networkx()
    modules = dict(model.named_modules())

    def kind(i: int, name: str) -> str:
        if i == 0:
            return "input"
        mod = modules.get(name)
        if isinstance(mod, torch.nn.Conv2d) or (mod is None and "conv" in name.lower()):
            return "conv"
        return "linear"

    colors = {"input": "#7f7f7f", "conv": "#1f77b4", "linear": "#ff7f0e"}
    pos: dict[int, tuple[float, float]] = {}
    node_color: dict[int, str] = {}
    ticks = []
    for i, (name, sl) in enumerate(rg.layers):
        ids = list(range(sl.start, sl.stop))
        ys = np.linspace(-1, 1, len(ids)) * min(1.0, len(ids) / 12) if len(ids) > 1 else [0.0]
        for node, y in zip(ids, ys):
            pos[node] = (float(i), float(y))
            node_color[node] = colors[kind(i, name)]
        ticks.append((i, f"{name}\n({len(ids)})"))
    edges = list(g.edges(data="weight"))
    w = np.array([abs(e[2]) for e in edges], dtype=float)
    w = w / w.max() if len(w) and w.max() > 0 else w
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(WIDTH, 3.2), layout="constrained")
        segs = [(pos[u], pos[v]) for u, v, _ in edges]
        order = np.argsort(w, kind="stable")
        lc = LineCollection([segs[k] for k in order], linewidths=0.1 + 1.4 * w[order],
                            colors=plt.get_cmap("Greys")(0.25 + 0.75 * w[order]), zorder=1)
        ax.add_collection(lc)
        nodes = sorted(pos)
        ax.scatter([pos[n][0] for n in nodes], [pos[n][1] for n in nodes], s=14,
                   c=[node_color[n] for n in nodes], edgecolors="white", linewidths=0.3, zorder=2)
        ax.set_xticks([t for t, _ in ticks], [lab for _, lab in ticks])
        ax.set_yticks([])
        ax.grid(False)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.set_xlim(-0.5, len(rg.layers) - 0.5)
        ax.set_ylim(-1.15, 1.15)
        ax.set_title(f"Rolled graph of {label}: "
                     f"{g.number_of_nodes()} nodes, {g.number_of_edges()} edges; edge width ~ weight")
        handles = [Line2D([], [], marker="o", linestyle="", color=c, label=k) for k, c in colors.items()]
        ax.legend(handles=handles, loc="lower left", frameon=False, ncol=3)
    save_figure(fig, p.name, "fig1")
    return fig


# --------------------------------------------------------------------------- Figure 3
def fig3(profile: Profile | str) -> plt.Figure:
    """Figure 3: Q1 accuracy against t, one row per dataset and architecture, degree and eigenvector panels.

    In each panel: SVM (solid) and MLP (dashed) with the plain, wAvg and expAvg signatures
    (colours), mean over fold seeds with a band of ± one standard deviation; the learning-curve
    baseline in grey and the majority-class rate dotted, for reference. With population replicates,
    the mean over replicates, the band the fold spread averaged over them, and error bars of ± the
    standard deviation between replicates (:func:`paperlib.report.replicates.aggregate_across`).
    """
    from .replicates import aggregate_across

    p = as_profile(profile)
    q1 = files.read_table(p, "q1.csv")
    agg = aggregate_across(p, "q1.csv", ("dataset", "arch", "feature_set", "mode", "classifier", "t"), "fold_seed")
    pops = [(pop.dataset, pop.arch) for pop in p.populations
            if ((agg["dataset"] == pop.dataset) & (agg["arch"] == pop.arch)).any()]
    fsets = [fs for fs in ("deg", "evec") if (agg["feature_set"] == fs).any()]
    if not pops or not fsets:
        why = "; ".join(f"{a}: {r}" for a, r in missing_archs(p, q1).items())
        raise ValueError(f"q1.csv of profile {p.name!r} has no deg/evec rows for the profile's architectures"
                         + (f" ({why})" if why else ""))
    with plt.rc_context({**STYLE, **READABLE}):
        fig, axes = plt.subplots(len(pops), len(fsets), figsize=(WIDTH, PANEL_HEIGHT * len(pops) + 0.6),
                                 squeeze=False, sharey=True, layout="constrained")
        for i, (dataset, arch) in enumerate(pops):
            sub = agg[(agg["dataset"] == dataset) & (agg["arch"] == arch)]
            majority = _majority(sub)
            for j, fs in enumerate(fsets):
                ax = axes[i, j]
                _accuracy_panel(ax, sub, fs, majority)
                ax.set_title(_title(dataset, arch, fs))
                if i < len(pops) - 1:
                    ax.set_xlabel("")
                if j:
                    ax.set_ylabel("")
        _legend(fig, curve=(agg["feature_set"] == "learning-curve").any(), replicates=p.replicates > 1)
    save_figure(fig, p.name, "fig3")
    return fig


def _majority(sub: pd.DataFrame) -> float | None:
    """The majority-class rate of the evaluated networks at the last t (the training folds' larger class)."""
    if "majority_accuracy" in sub and len(sub) and sub["majority_accuracy"].notna().any():
        last = sub[sub["t"] == sub["t"].max()] if "t" in sub else sub
        return float(last["majority_accuracy"].mean())
    if "n_networks" not in sub or "n_high" not in sub or not len(sub):
        return None
    n, h = float(sub["n_networks"].iloc[0]), float(sub["n_high"].iloc[0])
    return max(h, n - h) / n if n else None


# --------------------------------------------------------------------------- Figure 4
def fig4(profile: Profile | str) -> plt.Figure:
    """Figure 4: Q2, accuracy on an unseen population against t, one column per transfer.

    Rows are the paper's degree and eigenvector signatures (the paper shows degree only) and,
    below them, our size-aware variants (``deg-sa``, ``evec-sa``: the signature of the centrality
    divided by its mean, labelled as our addition); lines and bands as in Figure 3 (mean ± std
    over seeds); the dotted line is the majority-class rate of the test population; crosses mark
    points where some seed predicted a single class.
    """
    from .replicates import aggregate_across

    p = as_profile(profile)
    q2 = files.read_table(p, "q2.csv")
    agg = aggregate_across(p, "q2.csv", ("transfer", "feature_set", "mode", "classifier", "t"), "seed")
    order = [t.name for t in p.transfers if (agg["transfer"] == t.name).any()]
    order += sorted(set(agg["transfer"]) - set(order))
    fsets = [fs for fs in ("deg", "evec", "deg-sa", "evec-sa") if (agg["feature_set"] == fs).any()]
    if not order or not fsets:
        return _empty_figure(p.name, "fig4", "Figure 4: no transfer could be evaluated",
                             files.skipped_reasons(p, "q2") or {"q2.csv": "no degree or eigenvector rows"})
    try:
        q1 = files.read_table(p, "q1.csv")
    except FileNotFoundError:
        q1 = None
    with plt.rc_context({**STYLE, **READABLE}):
        fig, axes = plt.subplots(len(fsets), len(order), figsize=(WIDTH, PANEL_HEIGHT * len(fsets) + 1.0),
                                 squeeze=False, sharey=True, layout="constrained")
        for j, name in enumerate(order):
            rows = q2[q2["transfer"] == name]
            test = str(rows["test_arch"].iloc[0])
            train = str(rows["train_archs"].iloc[0]).replace("+", ", ").replace(";", ", ")
            if {"n_test", "n_high_test"} <= set(rows.columns):
                majority = _majority(rows.rename(columns={"n_test": "n_networks", "n_high_test": "n_high"}))
            elif q1 is not None and "n_high" in q1:
                majority = _majority(q1[q1["arch"] == test])
            else:
                majority = None
            for i, fs in enumerate(fsets):
                ax = axes[i, j]
                _accuracy_panel(ax, agg[agg["transfer"] == name], fs, majority)
                label = f"{fs[:-3]}, size-aware\n(our addition)" if fs.endswith("-sa") else f"{fs}\n(paper's)"
                if i == 0:  # the transfer once, above its column
                    ax.set_title(f"{name}\n{train} → {test}")
                if i < len(fsets) - 1:
                    ax.set_xlabel("")
                ax.set_ylabel(f"{label}\naccuracy" if j == 0 else "")
        _legend(fig, majority=q1 is not None or "n_high_test" in q2.columns, replicates=p.replicates > 1,
                curve=(agg["feature_set"] == "learning-curve").any())
    save_figure(fig, p.name, "fig4")
    return fig


def _empty_figure(profile: str, name: str, title: str, reasons: dict[str, str]) -> plt.Figure:
    """A figure that says, in words, why there is nothing to plot (written like any other figure)."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(WIDTH, 1.2 + 0.25 * len(reasons)), layout="constrained")
        ax.axis("off")
        ax.set_title(title)
        text = "\n".join(f"{k}: {v}" for k, v in reasons.items())
        ax.text(0.0, 1.0, text, va="top", ha="left", fontsize=7, transform=ax.transAxes)
    save_figure(fig, profile, name)
    return fig


# --------------------------------------------------------------------------- Figure 5
def fig5(profile: Profile | str) -> plt.Figure:
    """Figure 5: Q3, wall time of training to early stopping against the graph features, per architecture.

    Bars (log scale, seconds, measured on this machine): training to the early-stopping epoch
    (green), rolled graph + degree + eigenvector centrality for the epochs the predictor needs
    (blue), the same on the unrolled graph, matrix-free (red) and explicit (light red; missing
    where the explicit matrix was not built).
    """
    p = as_profile(profile)
    q3 = files.read_table(p, "q3.csv")
    bars = [("train_to_early_stop_seconds", "training to early stopping", Q3_COLORS["train"]),
            ("rolled_total_seconds", "rolled S1+S2", Q3_COLORS["rolled"]),
            ("unrolled_matfree_total_seconds", "unrolled S1+S2, matrix-free", Q3_COLORS["unrolled_matfree"]),
            ("unrolled_explicit_total_seconds", "unrolled S1+S2, explicit", Q3_COLORS["unrolled_explicit"])]
    x = np.arange(len(q3))
    wbar = 0.8 / len(bars)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(WIDTH, 2.8), layout="constrained")
        for k, (col, label, color) in enumerate(bars):
            vals = q3[col].to_numpy(dtype=float)
            xs = x - 0.4 + wbar * (k + 0.5)
            ok = np.isfinite(vals) & (vals > 0)
            ax.bar(xs[ok], vals[ok], width=wbar, color=color, label=label)
            for xi, v, good in zip(xs, vals, ok):
                if good:
                    ax.annotate(f"{v:.2g}", (xi, v), xytext=(0, 1), textcoords="offset points", ha="center",
                                va="bottom", fontsize=5)
                else:
                    ax.annotate("n/a", (xi, 0.02), xycoords=("data", "axes fraction"), ha="center",
                                fontsize=6, rotation=90)
        ax.set_yscale("log")
        ax.grid(False, axis="x")
        ax.set_xticks(x, [f"{a}\n(t={int(t)})" for a, t in zip(q3["arch"], q3["t_needed"])])
        ax.set_ylabel("seconds (log scale)")
        ax.set_title(f"Training to early stopping vs graph features for the epochs needed (profile {p.name})")
        fig.legend(loc="outside lower center", ncol=len(bars), frameon=False)
    save_figure(fig, p.name, "fig5")
    return fig


def fig_early_stopping(profile: Any):
    """Early stopping (07): compute saved against regret, one panel per population, one point per pruner (± sd)
of the simulated searches of :mod:`paperlib.stopping.pruning`."""
    df = read_early_stopping(profile)
    name = profile if isinstance(profile, str) else profile.name
    archs = list(dict.fromkeys(df["arch"]))
    ncol = min(3, len(archs))
    nrow = -(-len(archs) // ncol)
    colors = dict(zip(PRUNERS, sns.color_palette("colorblind", len(PRUNERS))))
    markers = dict(zip(PRUNERS, ("o", "s", "^", "D", "v", "P")))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrow, ncol, figsize=(WIDTH, 1.15 * PANEL_HEIGHT * nrow), squeeze=False,
                                 constrained_layout=True)
        for ax, arch in zip(axes.flat, archs):
            g = df[df["arch"] == arch]
            for r in g.itertuples(index=False):
                # ± sd, clipped to the possible range (regret >= 0, saved <= 100%)
                xerr = [[min(r.regret_std, r.regret_mean)], [r.regret_std]]
                yerr = [[100 * r.compute_std], [min(100 * r.compute_std, 100 - r.saved_pct)]]
                ax.errorbar(r.regret_mean, r.saved_pct, xerr=xerr, yerr=yerr,
                            fmt=markers[r.pruner], color=colors[r.pruner], ms=5, capsize=2, lw=0.8,
                            label=PRUNER_LABELS[r.pruner])
            first = g.iloc[0]
            ax.set_title(f"{arch} ({int(first.n_high)}/{int(first.n_networks)} high)")
            ax.set_xlabel("regret (accuracy points)")
            ax.set_ylabel("compute saved (%)")
            ax.set_ylim(-5, 100)
            ax.set_xlim(left=-0.5)
        for ax in list(axes.flat)[len(archs):]:
            ax.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        by_label = dict(zip(labels, handles))
        fig.legend(by_label.values(), by_label.keys(), loc="outside lower center", ncol=3, frameon=False)
        fig.suptitle(f"Early stopping in a simulated search ({name}): compute saved against regret")
    return fig


def write_fig_early_stopping(profile: Any):
    """Write ``figures/<profile>/fig_early_stopping.png`` and ``.pdf``; return the paths."""
    name = profile if isinstance(profile, str) else profile.name
    return save_figure(fig_early_stopping(profile), name, "fig_early_stopping")
