"""The README's results block is rendered from the committed result files, never typed."""

import pytest

from paperlib import paths
from paperlib.report import readme as report


def test_readme_block_matches_committed_results():
    if not paths.manifest_path("default").exists():
        pytest.skip("no committed default-profile results")
    text = (paths.ROOT / "README.md").read_text()
    assert f"{report.START}\n{report.render('default')}{report.END}" in text, (
        "README results block is out of date: run `python -m paperlib.report`")


def test_render_reads_metrics(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(paths, "FIGURES", tmp_path / "figures")
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    from paperlib.files import update_metrics

    update_metrics("x", "q1", {"best_deg": 0.8125, "n": 3})
    block = report.render("x")
    assert "best_deg = 0.812" in block and "n = 3" in block
