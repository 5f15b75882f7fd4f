"""``make verify`` on the smoke pipeline's results: it passes on them, and names what was altered.

The smoke pipeline of the session (:func:`conftest.smoke_pipeline`) stands in for the committed
results: verify retrains a sample, recomputes its features, reruns 04-07 and compares. Then a copy
of those results gets one altered cell of ``table2.csv``, one altered feature value and one altered
snapshot hash, and verify must fail naming each file (and the row or network).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import pipeline_env

pytestmark = pytest.mark.slow


def _verify(root, *args):
    return subprocess.run([sys.executable, "-m", "paperlib.verify", "--profile", "smoke", "--per-arch", "1",
                           "--seed", "3", *args], cwd=root, env=pipeline_env(root), capture_output=True,
                          text=True, timeout=900)


def test_compare_csv_names_the_first_differing_row_and_column(tmp_path):
    from paperlib import verify

    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    pd.DataFrame({"x": [1, 2, 3], "y": ["p", "q", "r"]}).to_csv(a, index=False)
    pd.DataFrame({"x": [1, 2, 3], "y": ["p", "Q", "r"]}).to_csv(b, index=False)
    check = verify.compare_csv(a, b, "t.csv")
    assert check.verdict == "DIFFERENT" and "data row 2" in check.detail and "'y'" in check.detail
    assert verify.compare_csv(a, a, "t.csv").verdict == "identical"
    measured = verify.compare_csv(a, b, "t.csv", measured=lambda c: c == "y")
    assert measured.verdict == "measured"


def test_verify_passes_on_results_it_can_regenerate(smoke_pipeline):
    assert smoke_pipeline.returncode == 0, smoke_pipeline.stderr[-2000:]
    proc = _verify(smoke_pipeline.root)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "DIFFERENT" not in out and " 0 different" in out
    for name in ("snapshots of", "results/smoke/runs.csv", "features/", "results/smoke/q1.csv",
                 "results/smoke/table2.csv", "figures/smoke/fig3.png", "results/smoke/early_stopping.csv"):
        assert name in out, name
    assert "measured   results/smoke/q3.csv" in out


def test_verify_fails_naming_an_altered_cell_feature_and_snapshot_hash(smoke_pipeline, tmp_path):
    from paperlib import files, verify

    root = tmp_path / "root"
    shutil.copytree(smoke_pipeline.root, root, ignore=shutil.ignore_patterns("store", "executed"))
    res = root / "results" / "smoke"
    runs = pd.read_csv(res / "runs.csv")
    picked = verify.sample(runs, 1, 3)

    t2 = pd.read_csv(res / "table2.csv", dtype=str, keep_default_na=False)
    t2.loc[4, "accuracy_mean"] = "0.123456"
    t2.to_csv(res / "table2.csv", index=False)

    arch = runs.loc[runs["key"] == picked[0], "arch"].iloc[0]
    npz = res / "features" / f"{arch}.npz"
    fields, arrays = files.read_features(npz)
    row = list(fields["keys"].astype(str)).index(picked[0])
    name = sorted(arrays)[0]
    arrays[name][row, 1, 0] += 1.0
    files.write_features(npz, fields, arrays)

    snaps = pd.read_csv(res / "snapshots.csv", dtype=str)
    i = snaps.index[snaps["key"] == picked[-1]][1]
    snaps.loc[i, "sha256"] = "0" * 64
    snaps.to_csv(res / "snapshots.csv", index=False)

    proc = _verify(root)
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:]
    lines = [line for line in out.splitlines() if "DIFFERENT" in line]
    assert any("results/smoke/table2.csv" in line and "data row 5" in line and "accuracy_mean" in line
               for line in lines), lines
    assert any(f"features/{arch}.npz" in line and picked[0] in line for line in lines), lines
    assert any(f"network {picked[-1]}" in line and "sha256" in line for line in lines), lines
    assert (res / "table2.csv").read_text().count("0.123456") == 1, "verify wrote into the results"
    assert np.isfinite(files.read_features(npz)[1][name][row, 1, 0])
