"""``make verify`` on the smoke pipeline's results: it passes on them, and names what was altered.

The smoke pipeline of the session (:func:`conftest.smoke_pipeline`) stands in for the committed
results. A copy of them gets one altered cell of ``table2.csv``, one altered feature value and one
altered snapshot hash; verify retrains a sample, recomputes its features, reruns 04-07, and must
report exactly those three, each with its file and row or network, and everything else identical.
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


def _runs(rows):
    return pd.DataFrame(rows, columns=["key", "arch", "final_acc", "early_stop_epoch"])


def test_a_differing_network_is_reported_with_its_accuracy_label_and_stopping_epoch():
    """Hand case on the smoke profile's LeNet (threshold 30): one identical network, one that moved
    within its class, one that crossed the threshold."""
    from paperlib import profiles, verify

    cut = next(p.threshold for p in profiles.get_profile("smoke").populations if p.arch == "LeNet")
    assert cut == 30.0
    old = _runs([("a", "LeNet", 80.0, 12), ("b", "LeNet", 75.0, 12), ("c", "LeNet", 31.0, 14)])
    new = _runs([("a", "LeNet", 80.0, 12), ("b", "LeNet", 70.5, 13), ("c", "LeNet", 29.5, 11)])
    checks = verify.network_differences("smoke", new, old, {"a": True, "b": False, "c": False})
    lines = [f"{c.verdict} {c.what}: {c.detail}" for c in checks]
    assert len(checks) == 3 and not any(c.ok for c in checks), lines
    assert "final accuracy 70.5000 (committed 75.0000), label agrees (threshold 30), stopped at epoch 13 " \
           "(committed 12)" in lines[0]
    assert "label DIFFERS" in lines[1] and "stopped at epoch 11 (committed 14)" in lines[1]
    assert "1 identical, 1 same label, 1 other label" in lines[2]
    assert verify.network_differences("smoke", old, old, {"a": True, "b": True, "c": True})[0].ok


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


def _copy(smoke_pipeline, dest):
    assert smoke_pipeline.returncode == 0, smoke_pipeline.stderr[-2000:]
    shutil.copytree(smoke_pipeline.root, dest, ignore=shutil.ignore_patterns("store", "executed"))
    return dest, dest / "results" / "smoke"


def _different(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip().startswith("DIFFERENT")]


def test_verify_names_an_altered_snapshot_hash_and_feature_value(smoke_pipeline, tmp_path):
    """Checks 1 and 2 on a copy of the smoke results with one snapshot hash and one feature value
    altered: exactly those two are reported, with their file and network; the rest is identical."""
    from paperlib import files, verify

    root, res = _copy(smoke_pipeline, tmp_path / "root")
    runs = pd.read_csv(res / "runs.csv")
    picked = verify.sample(runs, 1, 3)
    arch = runs.loc[runs["key"] == picked[0], "arch"].iloc[0]
    npz = res / "features" / f"{arch}.npz"
    fields, arrays = files.read_features(npz)
    row = list(fields["keys"].astype(str)).index(picked[0])
    name = sorted(arrays)[0]
    arrays[name][row, 1, 0] += 1.0
    files.write_features(npz, fields, arrays)
    snaps = pd.read_csv(res / "snapshots.csv", dtype=str)
    snaps.loc[snaps.index[snaps["key"] == picked[-1]][1], "sha256"] = "0" * 64
    snaps.to_csv(res / "snapshots.csv", index=False)

    proc = _verify(root, "--skip-evaluation")
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:]
    bad = _different(out)
    assert len(bad) == 4, out[-3000:]
    assert any(f"features/{arch}.npz" in line and picked[0] in line and repr(name) in line for line in bad), bad
    assert any(f"network {picked[-1]}" in line and "sha256" in line for line in bad), bad
    # what the difference means: the same final accuracy and label (only the committed hash was altered)
    assert any(f"DIFFERENT  network {picked[-1]}" in line and "label agrees" in line for line in bad), bad
    assert any(f"{len(picked) - 1} identical, 1 same label, 0 other label" in line for line in bad), bad
    assert "identical  results/smoke/runs.csv" in out and out.count("identical  snapshots of") == len(picked) - 1
    assert np.isfinite(files.read_features(npz)[1][name][row, 1, 0]), "verify wrote into the results"


def test_verify_names_an_altered_table2_cell_and_passes_the_rest_of_04_to_07(smoke_pipeline, tmp_path):
    """Check 3 on a copy of the smoke results with one Table 2 cell altered: that cell is reported
    with its row and column; every other output of 04-07 comes out identical or measured."""
    root, res = _copy(smoke_pipeline, tmp_path / "root")
    t2 = pd.read_csv(res / "table2.csv", dtype=str, keep_default_na=False)
    t2.loc[4, "accuracy_mean"] = "0.123456"
    t2.to_csv(res / "table2.csv", index=False)

    proc = _verify(root, "--skip-training")
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:]
    bad = _different(out)
    assert len(bad) == 1 and "results/smoke/table2.csv" in bad[0] and "data row 5" in bad[0] \
        and "'accuracy_mean'" in bad[0], out[-3000:]
    for name in ("results/smoke/q1.csv", "results/smoke/q2.csv", "results/smoke/table2.md", "figures/smoke/fig3.png",
                 "figures/smoke/fig4.pdf", "results/smoke/early_stopping.csv", "results/smoke/predictors/",
                 "results/smoke/metrics.json [q1]", "results/smoke/metrics.json [table2]"):
        assert f"identical  {name}" in out, (name, out[-3000:])
    assert "measured   results/smoke/q3.csv" in out and "measured   figures/smoke/fig5.png" in out
    assert (res / "table2.csv").read_text().count("0.123456") == 1, "verify wrote into the results"
