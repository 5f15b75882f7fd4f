"""The notebooks in notebooks/ are committed clean and follow the papermill conventions."""

import ast

import nbformat
import pytest

from paperlib import paths
from paperlib.pipeline import STEP_NAMES, STEPS, declared_parameters

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
