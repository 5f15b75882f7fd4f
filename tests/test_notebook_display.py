"""What the notebooks display: readings as Markdown, Table 2 folded for a normal window, figures from their files."""

import re

import pytest

from paperlib.report import render, tables
from paperlib.report.render import reading_markdown, table2_display, table2_markdown

TEXT = """Table 2 of profile 'smoke': 4 columns x classifiers. p < 0.05.

       LeNet SVM: best of Ours 0.86 (majority 0.67); vs learning curve: no significant difference
   ResNet-20 MLP: best of Ours 0.85 <LC (majority 0.58) A -> B
- LeNet: graph + curve saves the most compute (67% of the epochs).
  graph signatures: 66% saved, regret 0.00; $x$ *y*
"""


def test_reading_markdown_keeps_every_word_and_number():
    md = reading_markdown(TEXT)
    assert re.findall(r"\d+(?:\.\d+)?", TEXT) == re.findall(r"\d+(?:\.\d+)?", md)
    assert "- LeNet SVM: best of Ours 0.86" in md and "- ResNet-20 MLP" in md
    assert "  - graph signatures: 66% saved" in md  # nested under its "- " item
    assert "<LC" not in md and "&lt;LC" in md and "A → B" in md  # no accidental HTML
    assert "\\$x\\$" in md and "\\*y\\*" in md  # no accidental math or emphasis
    assert not any("  " in line.strip() for line in md.splitlines())  # terminal alignment gone


def test_table2_markdown_has_every_cell_and_one_column_per_architecture(synthetic_smoke):
    t2 = tables.write_table2("smoke")
    display, _ = table2_display(t2)
    md = table2_markdown(t2)
    for value in display.drop(columns=["classifier"]).to_numpy().ravel():
        if value:
            assert render._md_escape(str(value)) in md, value
    archs = [c for c in display.columns if c not in ("classifier", "features") and not c.startswith("paper ")]
    header = next(line for line in md.splitlines() if line.startswith("| features"))
    assert header.count("|") == len(archs) + 2
    assert md.count("| features") == display["classifier"].nunique()


def test_show_table2_and_figure_show(synthetic_smoke):
    from paperlib.report import figures

    tables.write_table2("smoke")
    assert "Table 2." in render.show_table2("smoke").data
    figures.fig3("smoke")
    image = figures.show("smoke", "fig3")
    assert image.width == figures.NOTEBOOK_WIDTH_PX and image.data[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", ["fig3", "fig4"])
def test_figures_3_and_4_legend_above_and_text_at_notebook_size(synthetic_smoke, name):
    from paperlib.report import figures

    fig = getattr(figures, name)("smoke")
    legend = fig.legends[0]
    fig.canvas.draw()
    top_of_panels = max(ax.get_position().y1 for ax in fig.axes)
    assert legend.get_window_extent().transformed(fig.transFigure.inverted()).y0 >= top_of_panels - 1e-6
    px_per_pt = figures.NOTEBOOK_WIDTH_PX / (fig.get_figwidth() * 72)
    sizes = [t.get_fontsize() for ax in fig.axes for t in (*ax.get_xticklabels(), *ax.get_yticklabels(), ax.title)]
    assert min(sizes) * px_per_pt >= 14 - 0.5  # JupyterLab's text is 14 px


def _tiny_spec(**over) -> dict:
    from paperlib import kernels
    from paperlib.train import trainer as train

    spec = {
        "dataset": "digits", "image_size": 16, "train_limit": 192, "model": "lenet",
        "model_kwargs": {"width": 0.5}, "lr": 0.05, "dropout": 0.3, "seed": 3, "optimizer": "sgd",
        "momentum": 0.9, "batch_size": 64, "epochs": 3, "patience": 5, "burn_in": 0, "device": "cpu",
        "precision": "float32", "threads": 1, "isa": kernels.isa_class(), "version": train.TRAIN_VERSION,
    }
    return spec | over


def test_training_summary_counts_trained_resumed_retrained_and_skipped(tmp_path):
    from paperlib.train import populations, trainer as train
    from paperlib.train.store import RunStore

    a, b, c = _tiny_spec(seed=1), _tiny_spec(seed=2), _tiny_spec(seed=3)
    train.train_run(tmp_path, a)  # finished before: skipped

    def kill_after_1(epoch):
        if epoch == 1:
            raise train.RunInterrupted("killed")

    with pytest.raises(train.RunInterrupted):
        train.train_run(tmp_path, b, on_epoch_end=kill_after_1)  # resumed
    runs = populations.train_specs(tmp_path, [("LeNet", a), ("LeNet", b), ("AlexNet", c)], workers=1)
    assert sorted(runs.attrs["training"]["actions"].values()) == ["resumed", "skipped", "trained"]
    md = render.training_summary(runs).data
    assert "3 networks: 1 trained, 1 resumed" in md and "1 skipped" in md and "min wall time" in md
    assert "| LeNet" in md and "| AlexNet" in md
    snap = RunStore(tmp_path).run(a).snapshot_path(2)
    snap.write_bytes(snap.read_bytes()[:50])
    with pytest.warns(UserWarning):
        again = populations.train_specs(tmp_path, [("LeNet", a), ("LeNet", b)], workers=1)
    assert sorted(again.attrs["training"]["actions"].values()) == ["retrained", "skipped"]


def test_lab_serves_executed_copies_read_only(tmp_path):
    """make lab's contents manager: results/executed/ is not writable (no autosave) and refuses a save."""
    import asyncio

    import nbformat
    from tornado import web

    from paperlib.lab import ContentsManager

    (tmp_path / "results" / "executed" / "default").mkdir(parents=True)
    (tmp_path / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook()
    for rel in ("results/executed/default/01_train.ipynb", "notebooks/01_train.ipynb"):
        nbformat.write(nb, tmp_path / rel)
    cm = ContentsManager(root_dir=str(tmp_path))

    async def go():
        executed = await cm.get("results/executed/default/01_train.ipynb")
        mine = await cm.get("notebooks/01_train.ipynb")
        assert executed["writable"] is False and mine["writable"] is True
        assert (await cm.get("results/executed", content=False))["type"] == "directory"
        with pytest.raises(web.HTTPError) as info:
            await cm.save({"type": "notebook", "format": "json", "content": executed["content"]},
                          "results/executed/default/01_train.ipynb")
        assert info.value.status_code == 403
        await cm.save({"type": "notebook", "format": "json", "content": mine["content"]}, "notebooks/01_train.ipynb")

    before = (tmp_path / "results/executed/default/01_train.ipynb").read_bytes()
    asyncio.run(go())
    assert (tmp_path / "results/executed/default/01_train.ipynb").read_bytes() == before


@pytest.mark.parametrize("name", ["04_q1", "07_early_stopping"])
def test_lab_saves_a_run_notebook_byte_identical_to_the_committed_one(tmp_path, name):
    """What JupyterLab sends after Run All (outputs, counts, the kernel's metadata, widget state) is
    saved as committed, so git status stays clean without relying on the git filter."""
    import asyncio
    import json

    import nbformat

    from paperlib import paths
    from paperlib.lab import ContentsManager
    from paperlib.notebooks import jupyterlab_roundtrip

    committed = (paths.NOTEBOOKS / f"{name}.ipynb").read_bytes()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / f"{name}.ipynb").write_bytes(committed)
    nb = json.loads(jupyterlab_roundtrip(committed.decode("utf-8"), "3.12.1"))
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            cell["execution_count"] = i
            cell["outputs"] = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
            cell["metadata"]["execution"] = {"iopub.status.idle": "2024-01-01T00:00:00Z"}
    cm = ContentsManager(root_dir=str(tmp_path))
    asyncio.run(cm.save({"type": "notebook", "format": "json", "content": nb}, f"notebooks/{name}.ipynb"))
    assert (tmp_path / "notebooks" / f"{name}.ipynb").read_bytes() == committed


def test_strip_outputs_is_what_nbstripout_does():
    pytest.importorskip("nbstripout")
    import json

    import nbformat

    from paperlib import paths
    from paperlib.notebooks import _file_text, jupyterlab_roundtrip, strip, strip_outputs

    text = jupyterlab_roundtrip((paths.NOTEBOOKS / "05_q2.ipynb").read_text(), "3.11.9")
    nb = json.loads(text)
    nb["cells"][1]["outputs"] = [nbformat.v4.new_output("stream", name="stdout", text="x\n")]
    nb["cells"][1]["metadata"]["scrolled"] = True
    text = json.dumps(nb)
    assert _file_text(nbformat.from_dict(strip_outputs(json.loads(text)))) == strip(text)
