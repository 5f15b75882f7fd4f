"""Tables, figures and Q3 bookkeeping on synthetic inputs, checked against hand-computed values."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from paperlib.report import figures, published, readings, render, tables
from paperlib import files, paths
from paperlib.evaluate import timing
from paperlib.profiles import get_profile

from conftest import synthetic_q1, synthetic_q2, synthetic_runs, write_result


def _q1_rows(**cols):
    """A minimal q1 frame from column lists (the other columns get fixed values)."""
    n = len(next(iter(cols.values())))
    base = {"dataset": ["digits"] * n, "arch": ["LeNet"] * n, "feature_set": ["deg"] * n, "mode": ["plain"] * n,
            "classifier": ["svm"] * n, "t": [3] * n, "fold_seed": list(range(n)), "threshold": [50.0] * n,
            "n_networks": [10] * n, "n_high": [4] * n, "spearman": [0.0] * n}
    base.update(cols)
    return pd.DataFrame(base)


# --------------------------------------------------------------------------- aggregation and markers
def test_aggregate_mean_and_std_over_fold_seeds_by_hand():
    q1 = _q1_rows(accuracy=[0.8, 0.9, 0.7])
    agg = tables.aggregate_q1(q1)
    assert len(agg) == 1
    assert agg["accuracy_mean"].iloc[0] == pytest.approx(0.8)
    # sample standard deviation: sqrt((0.01 + 0.01 + 0) / 2) = 0.1
    assert agg["accuracy_std"].iloc[0] == pytest.approx(0.1)
    assert agg["n_seeds"].iloc[0] == 3


def test_aggregate_single_seed_has_zero_spread_and_percent_is_converted():
    agg = tables.aggregate_q1(_q1_rows(accuracy=[85.0]))
    assert agg["accuracy_mean"].iloc[0] == pytest.approx(0.85)
    assert agg["accuracy_std"].iloc[0] == 0.0


def test_mark_best_per_group_with_ties_and_missing():
    frame = pd.DataFrame({"g": ["a", "a", "a", "b", "b"], "v": [0.5, 0.9, 0.9, np.nan, 0.1]})
    assert tables.mark_best(frame, "v", ["g"]).tolist() == [False, True, True, False, True]


def test_fmt_mean_std():
    assert render.fmt_mean_std(0.934, 0.0212) == "0.93 ± 0.02"
    assert render.fmt_mean_std(np.nan, 0.1) == "–"
    assert render.fmt_mean_std(0.5, np.nan) == "0.50"


def test_latex_escapes_and_bold():
    frame = pd.DataFrame({"a": ["B_Wl"], "b": ["0.90 ± 0.01"], "c": ["50%"]})
    bold = pd.DataFrame({"a": [False], "b": [True], "c": [False]})
    tex = render.to_latex(frame, caption="x & y", bold=bold)
    assert r"B\_Wl" in tex and r"\textbf{0.90 $\pm$ 0.01}" in tex and r"50\%" in tex and r"x \& y" in tex
    assert tex.count(r"\\") == 2  # header + one row
    assert r"\begin{tabular}{llr}" in tex


# --------------------------------------------------------------------------- Table 2
def _table2_q1() -> pd.DataFrame:
    """LeNet and ResNet-8 at t=1 and t=2; at t=2 the values below are the ones Table 2 must show."""
    rows = []
    spec = {  # (feature_set, mode, classifier) -> accuracies of fold seeds 0, 1 at t=2
        ("deg", "plain", "svm"): [0.9, 0.8],
        ("deg", "wavg", "svm"): [1.0, 1.0],  # better, but not the plain mode
        ("B_Wl", "plain", "svm"): [0.6, 0.7],
        ("unroll-deg", "plain", "svm"): [0.7, 0.7],
        ("deg", "plain", "mlp"): [0.5, 0.5],
        ("B_Wl", "plain", "mlp"): [0.75, 0.85],
        ("unroll-deg", "plain", "mlp"): [0.8, 0.8],
    }
    for arch in ("LeNet", "ResNet-8"):
        for (fs, mode, clf), accs in spec.items():
            for t in (1, 2):
                for seed, acc in enumerate(accs):
                    rows.append({"dataset": "digits", "arch": arch, "feature_set": fs, "mode": mode,
                                 "classifier": clf, "t": t, "fold_seed": seed,
                                 "accuracy": acc if t == 2 else 0.0, "spearman": 0.0, "threshold": 50.0,
                                 "n_networks": 10, "n_high": 4})
    return pd.DataFrame(rows)


def test_table2_cells_markers_and_paper_reference():
    t2 = tables.table2_frame(get_profile("smoke"), _table2_q1())
    assert set(t2["t"]) == {2}
    cell = t2[(t2["arch"] == "LeNet") & (t2["classifier"] == "svm") & (t2["feature_set"] == "deg")].iloc[0]
    assert cell["mode"] == "plain"
    assert cell["accuracy_mean"] == pytest.approx(0.85)
    assert cell["accuracy_std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
    # best per (architecture, classifier): deg for SVM (0.85 > 0.7 > 0.65), B_Wl and unroll-deg tie for MLP (0.8)
    best = t2[t2["best"]].set_index(["arch", "classifier"])["feature_set"]
    assert best.loc[("LeNet", "svm")] == "deg"
    assert sorted(best.loc[("LeNet", "mlp")]) == ["B_Wl", "unroll-deg"]
    # digits is not a dataset of the paper: its CIFAR-10 LeNet stands beside ours, marked as a reference
    assert cell["paper_dataset"] == "CIFAR-10" and not cell["same_dataset"]
    assert cell["paper_accuracy"] == pytest.approx(0.99)
    unrolled = t2[(t2["arch"] == "LeNet") & (t2["classifier"] == "mlp") & (t2["feature_set"] == "unroll-deg")]
    assert unrolled["paper_accuracy"].iloc[0] == pytest.approx(0.93)
    # the paper has no ResNet-8
    assert not t2.loc[t2["arch"] == "ResNet-8", "paper_accuracy"].notna().any()


def test_table2_best_mode_takes_the_best_mean():
    t2 = tables.table2_frame(get_profile("smoke"), _table2_q1(), mode="best")
    cell = t2[(t2["arch"] == "LeNet") & (t2["classifier"] == "svm") & (t2["feature_set"] == "deg")].iloc[0]
    assert cell["mode"] == "wavg" and cell["accuracy_mean"] == pytest.approx(1.0)


def test_table2_same_dataset_in_paper_profile():
    q1 = _table2_q1().replace({"digits": "cifar10", "ResNet-8": "ResNet-44"})
    t2 = tables.table2_frame(get_profile("paper"), q1)
    r = t2[(t2["arch"] == "ResNet-44") & (t2["classifier"] == "svm") & (t2["feature_set"] == "unroll-deg")].iloc[0]
    assert r["same_dataset"] and r["paper_dataset"] == "CIFAR-10"
    assert np.isnan(r["paper_accuracy"]) and r["paper_note"] == "OOM"


def test_write_table2_files_and_metrics(synthetic_smoke):
    t2 = tables.write_table2("smoke")
    assert list(t2.columns) == files.TABLE2_COLUMNS
    back = pd.read_csv(synthetic_smoke / "table2.csv")
    assert list(back.columns) == files.TABLE2_COLUMNS
    assert len(back) == 4 * 2 * 8  # archs x classifiers x feature sets
    md = (synthetic_smoke / "table2.md").read_text()
    assert "**" in md and "paper CIFAR-10 LeNet (ref.)" in md
    tex = (synthetic_smoke / "table2.tex").read_text()
    assert tex.count(r"\textbf{") == int(back["best"].sum())
    metrics = json.loads(paths.metrics_path("smoke").read_text())["table2"]
    q1 = synthetic_q1()
    by_hand = q1[(q1["arch"] == "LeNet") & (q1["feature_set"] == "deg") & (q1["mode"] == "plain")
                 & (q1["classifier"] == "svm") & (q1["t"] == 3)]["accuracy"].mean()
    assert metrics["accuracy_mean"]["svm"]["deg"]["LeNet"] == pytest.approx(by_hand, abs=1e-4)
    assert metrics["t"] == {"LeNet": 3, "LeNet-x2": 3, "ResNet-8": 3, "ResNet-14": 3}


# --------------------------------------------------------------------------- Table 1
def test_table1_ranges_counts_and_paper_columns(synthetic_smoke):
    runs = synthetic_runs()
    t1 = tables.write_table1("smoke", runs)
    assert list(pd.read_csv(synthetic_smoke / "table1.csv").columns) == files.TABLE1_COLUMNS
    lenet = runs[runs["arch"] == "LeNet"]
    ok = lenet[lenet["status"] == "finished"]
    r = t1.set_index("arch").loc["LeNet"]
    assert r["n_networks"] == 8 and r["n_diverged"] == 1 and r["n_finished"] == 7
    assert r["acc_min"] == pytest.approx(ok["final_acc"].min())
    assert r["early_stop_max"] == ok["early_stop_epoch"].max()
    assert r["n_high"] == int((ok["final_acc"] >= 50.0).sum())
    assert r["paper_acc_max"] == pytest.approx(73.8) and r["paper_threshold"] == 40
    assert not r["same_dataset"]
    assert np.isnan(t1.set_index("arch").loc["ResNet-8", "paper_threshold"])
    assert "reference only" in (synthetic_smoke / "table1.md").read_text()


def test_published_tables_are_complete():
    t1 = files.read_published("table1.csv")
    t2 = files.read_published("table2.csv")
    assert len(t1) == 8 and len(t2) == 2 * 6 * 6
    # every cell is a number or OOM, never both
    assert (t2["accuracy"].notna() ^ (t2["note"] == "OOM")).all()
    assert set(t2.loc[t2["note"] == "OOM", "feature_set"]) == {"unroll-deg"}


# --------------------------------------------------------------------------- Q3 bookkeeping
def test_training_cost_by_hand():
    runs = pd.DataFrame({"status": ["finished", "finished", "diverged"], "diverged": [False, False, True],
                         "epoch_seconds": [2.0, 4.0, 100.0], "early_stop_epoch": [3, 5, 1]})
    cost = timing.training_cost(runs)
    assert cost["train_to_early_stop_seconds"] == pytest.approx((6 + 20) / 2)
    assert cost["epoch_seconds"] == pytest.approx(3.0) and cost["n_runs"] == 2


def test_t_needed_smallest_t_at_best_accuracy():
    q1 = pd.concat([
        _q1_rows(t=[1, 1], accuracy=[0.6, 0.6]),
        _q1_rows(t=[2, 2], accuracy=[0.9, 0.9]),
        _q1_rows(t=[3, 3], accuracy=[0.9, 0.9]),
        _q1_rows(t=[4, 4], accuracy=[0.8, 0.8]),
        _q1_rows(t=[4, 4], feature_set=["B_Wl", "B_Wl"], accuracy=[1.0, 1.0]),  # baselines do not count
    ])
    assert timing.t_needed(q1, "digits", "LeNet", 4)[0] == 2
    assert timing.t_needed(q1, "digits", "LeNet", 4, rule="last")[0] == 4
    assert timing.t_needed(None, "digits", "LeNet", 4)[0] == 4


# --------------------------------------------------------------------------- figures
def _check_png(path):
    with Image.open(path) as im:
        assert im.size[0] > 100 and im.size[1] > 100
        extrema = im.convert("L").getextrema()
        assert extrema[0] < extrema[1], f"{path} is a single colour"


@pytest.mark.parametrize("name", ["fig3", "fig4", "fig5"])
def test_figures_written_and_byte_identical_when_redrawn(synthetic_smoke, name):
    out = paths.figures_dir("smoke")
    getattr(figures, name)("smoke")
    png, pdf = out / f"{name}.png", out / f"{name}.pdf"
    _check_png(png)
    assert pdf.read_bytes().startswith(b"%PDF")
    first = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (png, pdf)]
    getattr(figures, name)("smoke")
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in (png, pdf)] == first
    assert b"CreationDate" not in pdf.read_bytes()
    with Image.open(png) as im:
        assert "Software" not in im.info


def test_fig3_has_a_row_per_architecture(synthetic_smoke):
    fig = figures.fig3("smoke")
    titles = {ax.get_title() for ax in fig.axes}
    for arch in get_profile("smoke").archs:
        assert f"digits {arch}: deg" in titles and f"digits {arch}: evec" in titles


def test_describe_texts_read_the_files(synthetic_smoke):
    tables.write_table2("smoke")
    text = readings.describe_agreement("smoke")
    assert "reference" in text and "LeNet" in text
    assert "ResNet-14" in readings.describe_q2("smoke")
    assert "ResNet-14" in readings.describe_q3("smoke")


def test_missing_input_names_the_notebook(tmp_results):
    with pytest.raises(FileNotFoundError, match="04_q1"):
        tables.write_table2("smoke")


def test_time_snapshot_on_a_real_network():
    from paperlib import graph
    from paperlib.train import models

    model = models.build_model("lenet", num_classes=10, in_channels=1, image_size=16, width=0.25).eval()
    out = timing.time_snapshot(model, (1, 16, 16), repeats=2)
    rg = graph.rolled_graph(model, (1, 16, 16))
    assert out["rolled_nodes"] == rg.n_nodes
    assert out["rolled_edges"] == rg.adjacency.nnz // 2
    for kind in ("rolled", "unrolled_matfree", "unrolled_explicit"):
        parts = [out[f"{kind}_{k}_seconds"] for k in ("s1", "deg", "evec")]
        assert all(p > 0 for p in parts)
        assert out[f"{kind}_snapshot_seconds"] == pytest.approx(sum(parts))
    # a cap below the explicit matrix's size: the explicit columns stay empty and say why
    capped = timing.time_snapshot(model, (1, 16, 16), repeats=1, explicit_max_bytes=1)
    assert np.isnan(capped["unrolled_explicit_snapshot_seconds"]) and "not built" in capped["unrolled_explicit_note"]


def test_fig1_draws_every_node_of_the_rolled_graph(tmp_results):
    fig = figures.fig1("smoke")
    _check_png(paths.figures_dir("smoke") / "fig1.png")
    ax = fig.axes[0]
    from paperlib.train import data, models
    from paperlib import graph

    model = models.build_model("lenet", num_classes=10, in_channels=data.DATASETS["digits"].in_channels,
                               image_size=16, width=0.25)
    rg = graph.rolled_graph(model)
    assert ax.collections[1].get_offsets().shape[0] == rg.n_nodes
    assert len(ax.collections[0].get_segments()) == rg.to_networkx().number_of_edges()


def test_table2_names_the_architectures_q1_skipped(synthetic_smoke):
    q1 = synthetic_q1()
    write_result(synthetic_smoke / "q1.csv", q1[q1["arch"] != "ResNet-14"])
    write_result(synthetic_smoke / "q1_skipped.csv", pd.DataFrame(
        {"experiment": ["q1"], "dataset": ["digits"], "arch": ["ResNet-14"], "feature_set": ["deg"],
         "mode": ["plain"], "classifier": ["svm"], "reason": ["0 high / 8 low networks"]}))
    t2 = tables.write_table2("smoke")
    assert "ResNet-14" not in set(t2["arch"])
    assert "ResNet-14 is not in the table: 0 high / 8 low networks" in (synthetic_smoke / "table2.md").read_text()
    write_result(synthetic_smoke / "q1.csv", q1.head(0))
    with pytest.raises(ValueError, match="0 high / 8 low"):
        tables.write_table2("smoke")


def test_fig4_without_rows_says_why(synthetic_smoke):
    write_result(synthetic_smoke / "q2.csv", synthetic_q2().head(0))
    write_result(synthetic_smoke / "q2_skipped.csv", pd.DataFrame(
        {"experiment": ["q2"], "arch": ["ResNet-14"], "reason": ["fewer than 2 networks of a class"]}))
    fig = figures.fig4("smoke")
    assert "fewer than 2 networks of a class" in fig.axes[0].texts[0].get_text()
    _check_png(paths.figures_dir("smoke") / "fig4.png")
    assert "fewer than 2 networks" in readings.describe_q2("smoke")


def test_table2_paired_test_single_class_and_majority_row():
    """Ours-deg against the learning curve over 2 fold seeds x 3 folds, the corrected t-test by hand."""
    sizes = "20/10;20/10;20/10"
    rows = _q1_rows(feature_set=["deg", "deg", "learning-curve", "learning-curve", "B_What", "B_What"],
                    fold_seed=[0, 1, 0, 1, 0, 1], t=[2] * 6,
                    accuracy=[0.85, 0.9, 0.7, 0.75, 0.6, 0.6],
                    fold_accuracy=["0.9;0.8;0.85", "0.95;0.85;0.9", "0.8;0.8;0.5", "0.75;0.7;0.8",
                                   "0.6;0.6;0.6", "0.6;0.6;0.6"],
                    fold_sizes=[sizes] * 6, majority_accuracy=[0.6] * 6, balanced_accuracy=[0.8] * 6,
                    single_class=[False, False, False, False, True, True], n_decided=[3] * 6)
    t2 = tables.table2_frame(get_profile("smoke"), rows)
    deg = t2[t2["feature_set"] == "deg"].iloc[0]
    d = np.array([0.9 - 0.8, 0.8 - 0.8, 0.85 - 0.5, 0.95 - 0.75, 0.85 - 0.7, 0.9 - 0.8])
    t = d.mean() / np.sqrt((1 / 6 + 10 / 20) * d.var(ddof=1))
    from scipy import stats as st
    assert deg["vs_learning-curve_diff"] == pytest.approx(d.mean())
    assert deg["vs_learning-curve_p"] == pytest.approx(2 * st.t.sf(t, 5))
    assert deg["vs_B_What_p"] < 0.05 and deg["vs_B_What_diff"] > 0
    assert np.isnan(deg["vs_B_Wl_p"])  # no B_Wl rows
    what = t2[t2["feature_set"] == "B_What"].iloc[0]
    assert what["n_single_class"] == 2 and not what["best"]
    display, bold = render.table2_display(t2)
    col = [c for c in display.columns if c.startswith("LeNet")][0]
    cells = dict(zip(display["features"], display[col]))
    assert ">What" in cells["Ours-deg"] and "[1 class 2/2]" in cells["B_What"]
    assert (">LC" in cells["Ours-deg"]) == (deg["vs_learning-curve_p"] < 0.05)
    assert cells["majority class (reference)"] == "0.60"
    bolds = dict(zip(display["features"], bold[col]))
    assert bolds["Ours-deg"] and not bolds["B_What"]
