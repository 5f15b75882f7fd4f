"""The smoke pipeline end to end: every declared output is written, complete and readable.

Runs ``python -m paperlib.pipeline --profile smoke`` once per test session in a temporary project
root (fixture ``smoke_pipeline`` in ``conftest.py``) and inspects what it wrote there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from paperlib import files, paths
from paperlib.steps import STEPS as ALL_STEPS
from paperlib.profiles import get_profile

pytestmark = pytest.mark.slow

PROFILE = "smoke"
STEPS = [s for s in ALL_STEPS if s.applies_to(PROFILE)]  # 01_import is for imported profiles
ARCHS = get_profile(PROFILE).archs
OUTPUTS = [(s.name, o.format(profile=PROFILE, arch=paths.safe_name(a)))
           for s in STEPS for o in s.outputs if not o.startswith("{store}")
           for a in (ARCHS if "{arch}" in o else ARCHS[:1])]
CONTRACT_COLUMNS = {
    "runs.csv": ["key", "arch", "dataset", "model", "lr", "dropout", "seed", "optimizer", "status", "diverged",
                 "epochs_trained", "early_stop_epoch", "final_acc", "isa"],
    "timings/runs.csv": ["key", "train_seconds", "epoch_seconds"],
    "centralities.csv": ["key", "arch", "n_snapshots"],
    "timings/centralities.csv": ["key", "rolled_seconds", "unrolled_seconds"],
    "snapshots.csv": files.SNAPSHOT_COLUMNS,
    "q1.csv": ["dataset", "arch", "feature_set", "mode", "classifier", "t", "fold_seed", "accuracy", "spearman",
               "threshold", "n_networks", "n_high"],
    "q2.csv": ["transfer", "train_archs", "test_arch", "feature_set", "mode", "classifier", "t", "seed",
               "accuracy", "spearman"],
    "table1.csv": files.TABLE1_COLUMNS,
    "table2.csv": files.TABLE2_COLUMNS,
    "q3.csv": files.Q3_COLUMNS,
}


@pytest.fixture(scope="module")
def pipeline(smoke_pipeline):
    assert smoke_pipeline.returncode == 0, (
        f"smoke pipeline failed (exit {smoke_pipeline.returncode}):\n{smoke_pipeline.stdout[-3000:]}\n"
        f"{smoke_pipeline.stderr[-3000:]}")
    _ROOT["root"] = smoke_pipeline.root
    return smoke_pipeline


_ROOT = {}


def _res() -> Path:
    return _ROOT["root"] / "results" / PROFILE


def _csv(name: str) -> pd.DataFrame:
    return pd.read_csv(_res() / name)


@pytest.mark.parametrize(("step", "output"), OUTPUTS, ids=[o for _, o in OUTPUTS])
def test_declared_output_exists(pipeline, step, output):
    path = pipeline.root / output
    assert path.exists(), f"{step} did not write {output}"
    assert path.stat().st_size > 0, f"{output} is empty"


@pytest.mark.parametrize("name", sorted(CONTRACT_COLUMNS))
def test_table_columns(pipeline, name):
    frame = _csv(name)
    missing = [c for c in CONTRACT_COLUMNS[name] if c not in frame.columns]
    assert not missing, f"{name} lacks columns {missing}"
    assert len(frame) > 0


def test_every_architecture_in_table1_table2_q3(pipeline):
    archs = set(get_profile(PROFILE).archs)
    assert set(_csv("table1.csv")["arch"]) == archs
    assert set(_csv("table2.csv")["arch"]) == archs
    assert set(_csv("q3.csv")["arch"]) == archs


def test_table2_has_no_empty_cell(pipeline):
    t2 = _csv("table2.csv")
    empty = t2[~np.isfinite(t2["accuracy_mean"])]
    assert empty.empty, f"Table 2 has empty cells:\n{empty[['arch', 'classifier', 'feature_set']]}"
    for fs in ("unroll-deg", "deg", "evec"):
        assert set(t2.loc[t2["feature_set"] == fs, "arch"]) == set(get_profile(PROFILE).archs), fs
    # every column has a best entry, unless every entry of it predicted a single class somewhere
    # (a single-class predictor is never marked best: its accuracy is the majority rate)
    eligible = t2.assign(ok=t2["n_single_class"].fillna(0) == 0).groupby(["arch", "classifier"])["ok"].any()
    has_best = t2.groupby(["arch", "classifier"])["best"].any()
    assert (has_best | ~eligible).all(), "a column of Table 2 has no best entry"
    assert not t2.loc[t2["best"], "n_single_class"].fillna(0).astype(bool).any(), "a single-class predictor is best"
    assert t2["paper_accuracy"].notna().any(), "no paper number beside ours"


def test_markdown_and_latex_tables(pipeline):
    for name in ("table1", "table2"):
        md = (_res() / f"{name}.md").read_text()
        assert md.count("\n|") >= 3
    tex = (_res() / "table2.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\end{tabular}" in tex


@pytest.mark.parametrize("output", [o for _, o in OUTPUTS if o.endswith(".png")])
def test_figure_is_a_nonempty_image(pipeline, output):
    with Image.open(pipeline.root / output) as im:
        im.load()
        assert im.size[0] > 100 and im.size[1] > 100
        lo, hi = im.convert("L").getextrema()
        assert lo < hi, f"{output} is a single colour"
    pdf = (pipeline.root / output).with_suffix(".pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf


def test_executed_notebooks_have_no_errors(pipeline):
    out = pipeline.root / "results" / "executed" / PROFILE
    for step in STEPS:
        nb = nbformat.read(out / f"{step.name}.ipynb", as_version=4)
        for cell in nb.cells:
            for o in cell.get("outputs", []):
                assert o.get("output_type") != "error", f"{step.name}: {o.get('ename')}: {o.get('evalue')}"


def test_executed_notebooks_carry_no_progress_bars_or_machine_paths(pipeline):
    out = pipeline.root / "results" / "executed" / PROFILE
    for step in STEPS:
        text = (out / f"{step.name}.ipynb").read_text()
        nb = nbformat.reads(text, as_version=4)
        streams = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                          if o.get("output_type") == "stream")
        widgets = [o for c in nb.cells for o in c.get("outputs", [])
                   if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert "it/s]" not in streams and "s/it]" not in streams and "\r" not in streams, \
            f"{step.name}: text progress bars in the executed notebook"
        assert "IProgress not found" not in streams, f"{step.name}: tqdm widget warning"
        assert not widgets, f"{step.name}: progress widgets in the executed notebook"
        for root in {str(paths.CODE), str(pipeline.root)}:
            assert root not in text, f"{step.name}: machine path {root} in the executed notebook"


def _streams(step: str) -> str:
    nb = nbformat.read(_ROOT["root"] / "results" / "executed" / PROFILE / f"{step}.ipynb", as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "stream")


def test_progress_lines_on_the_runners_terminal_and_one_summary_line_in_the_notebooks(pipeline):
    """The long loops print progress on the runner's stderr (runs per population with the time left,
    graphs per population, evaluations); the executed notebooks keep one summary line per loop."""
    err = pipeline.stderr
    archs = get_profile(PROFILE).archs
    for arch in archs:
        n = get_profile(PROFILE).population(arch).grid.size
        assert re.search(rf"^ +networks {re.escape(arch)}: {n}/{n} runs in [\d:]+( s)? \(all: ", err, re.M), arch
        assert re.search(rf"^ +centralities {re.escape(arch)}: {n}/{n} runs in ", err, re.M), arch
    assert re.search(r"^ +networks \S+: \d+/\d+ runs.*~[\d:]+( s)? left\)$", err, re.M), "no estimate of the time left"
    for loop in ("Q1 evaluations", "Q2 evaluations", "early stopping"):
        assert re.search(rf"^ +{loop}: (\d+)/\1 \w+ in ", err, re.M), loop
    assert "without encryption" not in err + pipeline.stdout, "the kernel's TCP warning reached the terminal"
    for step in STEPS:
        streams = _streams(step.name)
        assert not re.search(r"~[\d:]+( s)? left|[\d:]+( s)? elapsed", streams), f"{step.name}: progress lines in the notebook"
    total = len(_csv("runs.csv"))
    assert re.search(rf"^networks: {total} runs in [\d:]+( s)? \(", _streams("01_train"), re.M)
    assert re.search(rf"^centralities: {total} runs in ", _streams("02_graph"), re.M)
    assert re.search(r"^Q1 evaluations: \d+ tasks in ", _streams("04_q1"), re.M)


def test_manifest_and_metrics(pipeline):
    manifest = json.loads((_res() / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    assert [s["notebook"] for s in manifest["steps"]] == [s.name for s in STEPS]
    assert all(s["status"] == "ok" and s["seconds"] >= 0 for s in manifest["steps"])
    assert manifest["profile_spec"]["name"] == PROFILE
    metrics = json.loads((_res() / "metrics.json").read_text())
    assert {"table1", "table2", "q3"} <= set(metrics)
    assert set(metrics["q3"]["per_arch"]) == set(get_profile(PROFILE).archs)


def test_q3_times_are_positive_and_consistent(pipeline):
    q3 = _csv("q3.csv")
    for kind in ("rolled", "unrolled_matfree"):
        assert (q3[f"{kind}_snapshot_seconds"] > 0).all()
        np.testing.assert_allclose(q3[f"{kind}_total_seconds"],
                                   q3["trace_seconds"] + q3[f"{kind}_snapshot_seconds"] * q3["n_snapshots"], rtol=1e-4)
    np.testing.assert_allclose(q3["rolled_overhead_per_epoch"], q3["rolled_snapshot_seconds"] / q3["epoch_seconds"],
                               rtol=1e-4)
    runs = _csv("runs.csv").merge(_csv("timings/runs.csv"), on="key")
    assert not any("seconds" in c for c in _csv("runs.csv").columns), "seconds belong in timings/"
    for _, r in q3.iterrows():
        ok = runs[(runs["arch"] == r["arch"]) & (runs["status"] == "finished")]
        expected = (ok["epoch_seconds"] * ok["early_stop_epoch"]).mean()
        assert r["train_to_early_stop_seconds"] == pytest.approx(expected, rel=1e-4)
