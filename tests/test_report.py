"""The generated blocks of the README and of ``docs/`` are rendered from the committed result files and
the code's declarations, never typed, and are up to date."""

import pytest

from paperlib import paths
from paperlib.report import blocks, readme


def test_every_generated_block_is_up_to_date():
    out = readme.stale()
    assert not out, ("out of date: " + ", ".join(f"{b.page} ({b.name})" for b in out)
                     + "; run `python -m paperlib.report`")


def test_the_readme_shows_the_committed_default_results():
    if not paths.manifest_path("default").exists():
        pytest.skip("no committed default-profile results")
    text = (paths.ROOT / "README.md").read_text()
    assert "### The `default` profile" in text and "Table 2 at a glance" in text


def test_make_reproduce_rewrites_the_readme_for_every_profile_it_shows():
    """``make reproduce PROFILE=X`` runs ``paperlib.report`` exactly for the profiles the README shows."""
    import re

    line = next(x for x in (paths.CODE / "Makefile").read_text().splitlines() if "-m paperlib.report" in x)
    case = re.search(r'case "\$\(PROFILE\)" in ([\w|-]+)\)', line)
    assert case, line
    assert set(case.group(1).split("|")) == set(blocks.REPORTED_PROFILES)


def _tmp_root(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(paths, "FIGURES", tmp_path / "figures")
    monkeypatch.setattr(paths, "ROOT", tmp_path)


def test_render_reads_metrics(tmp_path, monkeypatch):
    _tmp_root(tmp_path, monkeypatch)
    from paperlib.files import update_metrics

    update_metrics("x", "q1", {"best_deg": 0.8125, "n": 3})
    block = blocks.results_in_full(tmp_path / "docs", ["x"])
    assert "best_deg = 0.812" in block and "n = 3" in block
    assert "](../results/x/metrics.json)" in block  # links relative to the page's folder


def test_a_page_without_its_markers_is_refused(tmp_path, monkeypatch):
    _tmp_root(tmp_path, monkeypatch)
    (tmp_path / "README.md").write_text("# no block here\n")
    with pytest.raises(ValueError, match="README.md: needs exactly one <!-- results:start -->"):
        readme.stale()


def test_update_rewrites_only_between_the_markers(tmp_path, monkeypatch):
    _tmp_root(tmp_path, monkeypatch)
    (tmp_path / "docs").mkdir()
    pages = {b.page for b in readme.BLOCKS}
    for page in pages:
        names = [b.name for b in readme.BLOCKS if b.page == page]
        (tmp_path / page).write_text("before\n" + "".join(f"<!-- {n}:start -->\nold\n<!-- {n}:end -->\n" for n in names)
                                     + "after\n")
    assert {b.page for b in readme.update()} == pages
    assert not readme.stale() and not readme.update()
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert "No profile has committed results yet" in text


def test_the_glance_table_takes_the_best_of_each_family():
    from paperlib import files

    t2 = files.read_table_or_none("default", "table2.csv")
    if t2 is None:
        pytest.skip("no committed table2.csv")
    rows = blocks.table2_at_a_glance("default")
    for arch in t2["arch"].unique():
        row = next(r for r in rows if r.startswith(f"| {arch} on "))
        cells = [c.strip() for c in row.strip("|").split("|")]
        for col, family in enumerate([("deg", "evec"), ("B_Wl", "B_What", "B_Wprime")], start=2):
            at = t2[(t2["arch"] == arch) & t2["feature_set"].isin(family) & (t2["n_single_class"].fillna(0) == 0)]
            expected = " / ".join(f"{at[at['classifier'] == c]['accuracy_mean'].max():.2f}" for c in ("svm", "mlp"))
            assert cells[col] == expected, (arch, family)
