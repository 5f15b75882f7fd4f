"""The package reads like the method: imports go down the pipeline, never up, and never in a cycle.

The import graph is read from the source (``ast``), every ``import`` statement counted, those inside
functions too (a lazy import hides a cycle from Python, not from a reader). A module belongs to a
stage: the shared top-level modules, then the pipeline's subpackages in the order the method runs
them, then the runners and the notebooks' helpers. A module may import its own stage, an earlier
stage or a shared module; nothing else.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import paperlib

PKG = Path(paperlib.__file__).resolve().parent

#: the stages, in pipeline order; a top-level module or subpackage not named here fails the test
STAGES: tuple[tuple[str, ...], ...] = (
    ("paperlib", "kernels", "blas", "paths", "progress", "lock", "profile_types", "profile_files", "profiles",
     "profiles_fmnist", "steps", "files"),
    ("train",),
    ("sources",),
    ("graph",),
    ("features",),
    ("evaluate",),
    ("stopping",),
    ("report",),
    ("pipeline", "verify", "fingerprint", "notebooks", "lab"),
)
#: the longest a module may be (lines)
MAX_LINES = 500
#: the longest any Python file of the repository may be (scripts and tests included)
MAX_FILE_LINES = 550


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The paperlib modules that ``name`` imports (a name imported from a package that is a submodule
    counts as that submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "paperlib"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                src = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "paperlib":
                src = node.module
            else:
                continue
            for a in node.names:
                out.add(f"{src}.{a.name}" if f"{src}.{a.name}" in known else src)
    return out - {name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(name, path, known) for name, path in mods.items()}


def stage(name: str) -> int:
    top = name.split(".")[1] if "." in name else "paperlib"
    for i, members in enumerate(STAGES):
        if top in members:
            return i
    raise AssertionError(f"{name}: not in any stage of STAGES (add it where it belongs in the pipeline)")


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_import_resolves_to_a_module():
    g = graph()
    missing = sorted(f"{m} imports {t}" for m, ts in g.items() for t in ts if t not in g)
    assert missing == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_imports_go_down_the_pipeline():
    g = graph()
    upward = sorted(f"{m} (stage {stage(m)}) imports {t} (stage {stage(t)})"
                    for m, ts in g.items() for t in ts if t in g and stage(t) > stage(m))
    assert upward == []


def test_every_module_is_short():
    long = sorted(f"{module_name(p)}: {n} lines" for p in PKG.rglob("*.py")
                  if (n := len(p.read_text().splitlines())) > MAX_LINES)
    assert long == []


def python_files() -> list[Path]:
    """The repository's tracked Python files (``git ls-files``), or, outside a git checkout, every
    Python file outside hidden and virtual-environment folders."""
    root = PKG.parent
    if shutil.which("git") and (root / ".git").exists():
        out = subprocess.run(["git", "ls-files", "-z", "--", "*.py"], cwd=root, capture_output=True, check=True)
        return [root / name for name in out.stdout.decode().split("\0") if name and (root / name).is_file()]
    return [p for p in root.rglob("*.py")
            if not any(part.startswith(".") or part.startswith("venv") for part in p.relative_to(root).parts)]


def test_no_python_file_of_the_repository_is_long():
    files = python_files()
    assert any(p.name == "gpu_check.py" for p in files)
    long = sorted(f"{p.relative_to(PKG.parent)}: {n} lines" for p in files
                  if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES)
    assert long == []


def test_every_subpackage_init_maps_its_files():
    """A subpackage's ``__init__`` starts with a docstring that names each of its modules."""
    problems = []
    for init in sorted(PKG.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        for py in sorted(init.parent.glob("*.py")):
            if py.stem not in {"__init__", "__main__"} and f"``{py.stem}``" not in doc:
                problems.append(f"{module_name(init)}: docstring does not name ``{py.stem}``")
    assert problems == []


def test_the_evaluator_reads_arrays_not_feature_objects():
    """evaluation and tuning receive what they evaluate (:class:`~paperlib.evaluate.evaluation.Networks`);
    of the features they import only the signature transformers (the first step of the model)."""
    g = graph()
    for m in ("paperlib.evaluate.evaluation", "paperlib.evaluate.tuning"):
        assert {t for t in g[m] if t.startswith("paperlib.features")} <= {"paperlib.features.signatures"}, m
