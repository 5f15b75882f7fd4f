"""The notebooks in notebooks/ are committed clean and follow the papermill conventions."""

import ast
import re

import nbformat
import pytest

from paperlib import paths
from paperlib.pipeline.parameters import declared_parameters
from paperlib.steps import STEP_NAMES, STEPS

NOTEBOOKS = sorted(paths.NOTEBOOKS.glob("*.ipynb"))


def test_every_notebook_is_a_declared_step():
    assert {p.stem for p in NOTEBOOKS} <= set(STEP_NAMES), "a notebook that pipeline.STEPS does not declare"


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.name)
def test_every_step_has_its_notebook(step):
    assert step.notebook.exists(), f"step {step.name} is declared but {step.notebook.name} does not exist"


@pytest.mark.parametrize("step", [s for s in STEPS if s.inputs and s.notebook.exists()], ids=lambda s: s.name)
def test_setup_cell_checks_the_inputs(step):
    """A notebook opened in JupyterLab stops before it writes anything when its inputs are missing."""
    nb = nbformat.read(step.notebook, as_version=4)
    setup = [c for c in nb.cells if c.cell_type == "code"][1]
    assert f'pipeline.require_inputs("{step.name}", profile)' in setup.source, (
        f"{step.notebook.name}: the setup cell must call pipeline.require_inputs(\"{step.name}\", profile)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: committed with outputs (strip them)"
            assert cell.execution_count is None, f"{path.name}: committed with execution counts"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    params = declared_parameters(path.stem)
    assert params["profile"]["type"] == "str"
    for name, p in params.items():
        assert p["help"], f"{path.name}: parameter {name} has no comment"
        assert isinstance(p["default"], {"int": int, "float": float, "bool": bool, "str": str}[p["type"]])
    # literals only: no imports or calls in the parameters cell
    for node in ast.walk(ast.parse(code[0].source)):
        assert not isinstance(node, (ast.Call, ast.Import, ast.ImportFrom)), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_starts_with_markdown(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


# --------------------------------------------------------------------------- JupyterLab leaves them unchanged
def _without_python_version(text: str) -> str:
    nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    nb.metadata.get("language_info", {}).pop("version", None)
    return nbformat.writes(nb, version=nbformat.NO_CONVERT) + "\n"  # nbformat.write ends the file so


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
@pytest.mark.parametrize("python", ["3.11.7", "3.13.1"])
def test_jupyterlab_open_and_save_changes_nothing(path, python):
    """Opening and saving in JupyterLab 4 (nbformat read, validate, the kernel's metadata, nbformat
    write) changes only the Python version, which the nbstripout filter removes: the committed file is
    byte-unchanged."""
    from paperlib.notebooks import jupyterlab_roundtrip

    committed = path.read_text(encoding="utf-8")
    saved = jupyterlab_roundtrip(committed, python)
    assert nbformat.reads(saved, as_version=4).metadata.language_info.version == python
    assert _without_python_version(saved) == committed, (
        f"{path.name}: JupyterLab would rewrite it; run `python -m paperlib.pipeline --write-headers`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_git_filter_strips_a_run_notebook_back_to_the_committed_file(path):
    """After a reader runs every cell and JupyterLab saves, the nbstripout filter (configured by
    ``make lab``) gives back the committed bytes, so ``git status`` stays clean."""
    pytest.importorskip("nbstripout")
    from paperlib.notebooks import jupyterlab_roundtrip, strip

    committed = path.read_text(encoding="utf-8")
    nb = nbformat.reads(jupyterlab_roundtrip(committed), as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.execution_count = i
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
            cell.metadata["scrolled"] = True
            cell.metadata["execution"] = {"iopub.status.busy": "2024-01-01T00:00:00Z"}
    assert strip(nbformat.writes(nb)) == committed


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_what_nbformat_write_writes(path, tmp_path):
    """Byte for byte what JupyterLab's server (nbformat.write) writes for the same notebook."""
    committed = path.read_bytes()
    nbformat.write(nbformat.reads(committed.decode("utf-8"), as_version=nbformat.NO_CONVERT), tmp_path / "nb.ipynb")
    assert (tmp_path / "nb.ipynb").read_bytes() == committed


def test_headers_follow_the_pipeline():
    """The first Markdown cell of every notebook says what it reads and rewrites, as pipeline.STEPS declares."""
    from paperlib.notebooks import header_problems

    assert header_problems() == []


def test_header_names_every_declared_input_and_committed_output():
    from paperlib.notebooks import header_block

    for step in STEPS:
        block = header_block(step.name)
        for o in step.outputs:
            assert o.format(profile="default", arch="<arch>", store="results/default/store") in block
        for i in step.inputs:
            assert i.path.format(profile="default", arch="<arch>", store="results/default/store") in block


@pytest.mark.slow
def test_a_missing_input_is_a_short_message_in_the_notebook(tmp_path):
    """02_graph on a fresh clone: an error output without traceback that names 01_train.ipynb and
    the command; the runner exits 2 with the same message."""
    import os
    import shutil
    import subprocess
    import sys

    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    shutil.copytree(paths.NOTEBOOKS, tmp_path / "notebooks")
    env = {**os.environ, "PAPERLIB_ROOT": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(paths.CODE), os.environ.get("PYTHONPATH", "")])}
    old = dict(os.environ)
    os.environ.update(env)
    try:
        with pytest.raises(PapermillExecutionError):
            pm.execute_notebook(str(tmp_path / "notebooks" / "02_graph.ipynb"), str(tmp_path / "out.ipynb"),
                                parameters={"profile": "smoke"}, kernel_name="python3",
                                cwd=str(tmp_path / "notebooks"), progress_bar=False)
    finally:
        os.environ.clear()
        os.environ.update(old)
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "MissingInputError"
    shown = "\n".join(errors[0].traceback)
    assert "Traceback" not in shown and "File " not in shown and "\x1b[" not in shown, shown
    assert "01_train.ipynb" in shown and "--only 01_train" in shown and "make reproduce" in shown
    run = subprocess.run([sys.executable, "-m", "paperlib.pipeline", "--profile", "smoke", "--only", "02_graph"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "01_train.ipynb" in run.stderr and "Traceback" not in run.stderr


def test_the_parameters_table_lists_every_parameter_and_its_staleness_is_found(tmp_path, monkeypatch):
    from paperlib import notebooks
    from paperlib.pipeline.parameters import declared_parameters
    from paperlib.steps import STEP_NAMES

    table = notebooks.parameters_table()
    for step in STEP_NAMES:
        for name in declared_parameters(step):
            assert re.search(rf"^\| `{name}` \|[^\n]*\b{step}\b", table, re.M), (step, name)
    page = tmp_path / notebooks.PARAMETERS_PAGE
    page.parent.mkdir(parents=True)
    committed = (paths.CODE / notebooks.PARAMETERS_PAGE).read_text()
    page.write_text(committed.replace("| `epochs` |", "| `epochs_typed_by_hand` |"))
    monkeypatch.setattr(paths, "CODE", tmp_path)
    assert "out of date" in notebooks.parameters_table_problem()
    assert notebooks.write_parameters_table() == page and notebooks.parameters_table_problem() is None
    assert page.read_text() == committed
