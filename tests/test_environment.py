"""The declared environment is the one the code needs.

pyproject.toml is the one place dependencies are declared; environment.yml mirrors it (test extra
included); every third-party package imported by ``paperlib/``, ``tests/`` or ``benchmarks/`` is
declared; the floors the code needs are the declared ones.

Run as a script, ``python tests/test_environment.py --floor-constraints`` prints pip constraints
that pin every declared dependency to its floor (``make floor-env`` installs them in a fresh venv).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

CODE = Path(__file__).resolve().parents[1]

# import name -> distribution name, where they differ
DISTRIBUTION = {"sklearn": "scikit-learn", "PIL": "pillow", "IPython": "ipython", "yaml": "pyyaml", "xdist": "pytest-xdist"}
# floors that specific code needs (what and why: pyproject.toml's comment)
NEEDED_FLOORS = {"scikit-learn": "1.6", "joblib": "1.4", "tqdm": "4.66", "ipywidgets": "8.0"}


def _name(req: str) -> str:
    return re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].strip().lower()


def _floor(req: str) -> str | None:
    m = re.search(r">=\s*([0-9][^,; ]*)", req)
    return m.group(1) if m else None


def _project() -> dict:
    return tomllib.loads((CODE / "pyproject.toml").read_text())["project"]


def _all_requirements() -> list[str]:
    project = _project()
    return list(project["dependencies"]) + [r for reqs in project["optional-dependencies"].values() for r in reqs]


def floor_constraints() -> list[str]:
    """``name==floor`` for every declared requirement (extras included), the extras' names kept."""
    out = {}
    for req in _all_requirements():
        floor = _floor(req)
        if floor:
            out[_name(req)] = f"{_name(req)}=={floor}"
    return sorted(out.values())


def _env_pip_requirements() -> list[str]:
    lines = (CODE / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = []
    for line in lines[start + 1:]:
        stripped = line.strip()
        if not stripped.startswith("- "):
            break
        reqs.append(stripped[2:].strip())
    return reqs


def _imports() -> dict[str, set[str]]:
    """Top-level third-party module -> files importing it (absolute imports of paperlib, tests, benchmarks)."""
    local = {p.stem for p in (CODE / "tests").glob("*.py")} | {"paperlib"}
    local |= {p.name for p in (CODE / "benchmarks").iterdir() if (p / "__init__.py").exists()}  # gpu_check_parts
    found: dict[str, set[str]] = {}
    for folder in ("paperlib", "tests", "benchmarks"):
        for path in (CODE / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in local:
                        found.setdefault(top, set()).add(str(path.relative_to(CODE)))
    return found


def test_environment_yml_matches_pyproject():
    project = _project()
    expected = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    got = {r for r in _env_pip_requirements() if r != "-e ."}
    assert got == expected, f"only in environment.yml: {got - expected}; only in pyproject: {expected - got}"
    assert "-e ." in _env_pip_requirements(), "environment.yml must install the project itself"
    python = re.search(r"- python=(\d+\.\d+)", (CODE / "environment.yml").read_text()).group(1)
    assert tuple(map(int, python.split("."))) >= (3, 11)


def test_every_imported_package_is_declared():
    declared = {_name(r) for r in _all_requirements()}
    missing = {mod: sorted(files)[:3] for mod, files in _imports().items()
               if DISTRIBUTION.get(mod, mod).lower() not in declared}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_the_floors_the_code_needs_are_declared():
    floors = {_name(r): _floor(r) for r in _all_requirements()}
    for name, needed in NEEDED_FLOORS.items():
        assert floors.get(name) is not None, f"{name} has no floor"
        have = tuple(int(x) for x in floors[name].split("."))
        assert have >= tuple(int(x) for x in needed.split(".")), f"{name}>={floors[name]}, the code needs {needed}"
    assert _project()["requires-python"] == ">=3.11", "tomllib (tests) needs Python 3.11"
    assert all(_floor(r) for r in _project()["dependencies"]), "every dependency has a floor"


def _locked() -> dict[str, str]:
    from paperlib import lock

    return lock.pins()


def test_the_lock_pins_every_declared_dependency_within_its_range():
    from packaging.requirements import Requirement

    from paperlib import lock

    pins = _locked()
    project = _project()
    for req in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        r = Requirement(req)
        name = lock.normalise(r.name)
        assert name in pins, f"{name} is declared in pyproject.toml but not pinned in requirements-lock.txt (make lock)"
        assert r.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {r.specifier}"
    text = (CODE / "requirements-lock.txt").read_text()
    blocks = re.split(r"\n(?=[a-z0-9])", text.split("\n", 2)[2])
    assert all("--hash=sha256:" in b for b in blocks if "==" in b), "every pin carries its hashes"
    assert text.startswith("# This file was autogenerated by uv") and "make lock" in text.splitlines()[1]


def test_every_imported_package_is_locked():
    import importlib.metadata

    from paperlib import lock

    pins = _locked()
    dists = importlib.metadata.packages_distributions()
    missing = {}
    for mod, where in _imports().items():
        names = {lock.normalise(d) for d in dists.get(mod, [DISTRIBUTION.get(mod, mod)])}
        if not names & set(pins):
            missing[mod] = sorted(where)[:2]
    assert not missing, f"imported but not pinned in requirements-lock.txt: {missing}"


def test_the_installed_environment_is_the_lock():
    import hashlib

    from paperlib import lock

    marker = Path(sys.prefix) / ".installed"
    digest = hashlib.sha256((CODE / "requirements-lock.txt").read_bytes()).hexdigest()
    if not marker.exists() or marker.read_text().strip() != digest:
        import pytest

        pytest.skip("this environment was not installed from requirements-lock.txt by make (LOCK= or by hand)")
    assert lock.mismatches() == {}, "installed versions differ from the lock: run make install again"


def test_optional_extras():
    extras = _project()["optional-dependencies"]
    assert extras["optuna"] == ["optuna>=3.4"] and extras["lightning"] == ["lightning>=2.1"]
    assert {"optuna>=3.4", "lightning>=2.1"} <= set(extras["test"]), "their tests run with the test extra"


def test_floor_constraints_pin_every_requirement():
    pins = dict(c.split("==") for c in floor_constraints())
    assert pins["scikit-learn"] == "1.6" and pins["torch"] == "2.1" and pins["dask"] == "2023.6"
    assert set(pins) == {_name(r) for r in _all_requirements()}


def test_every_subpackage_is_installed():
    config = tomllib.loads((CODE / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["packages"]["find"]["include"] == ["paperlib*"], "subpackages of paperlib must be installed"


def test_make_lab_opens_at_the_repository_root():
    text = (CODE / "Makefile").read_text()
    recipe = text.split("\nlab:", 1)[1].split("\n\n", 1)[0]
    assert ("jupyter lab" in recipe or "-m jupyterlab" in recipe) and "notebooks/" not in recipe and "--notebook-dir=\"$(CURDIR)\"" in recipe
    assert "PYTHONPATH=" in recipe, "the kernels must import this checkout's paperlib"
    assert '$$([ "$$(id -u)" = 0 ] && echo --allow-root)' in recipe, "--allow-root only when running as root"
    assert "paperlib.lab.ContentsManager" in recipe and "*.egg-info" in text and "hide_globs" in recipe


if __name__ == "__main__":
    if sys.argv[1:] == ["--floor-constraints"]:
        print("\n".join(floor_constraints()))
    else:
        sys.exit(f"usage: python {sys.argv[0]} --floor-constraints")
