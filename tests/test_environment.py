"""pyproject.toml is the one place dependencies are declared; environment.yml mirrors it."""

import tomllib

from paperlib import paths


def _env_pip_requirements() -> list[str]:
    lines = (paths.ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = []
    for line in lines[start + 1:]:
        stripped = line.strip()
        if not stripped.startswith("- "):
            break
        reqs.append(stripped[2:].strip())
    return reqs


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    expected = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    got = {r for r in _env_pip_requirements() if r != "-e ."}
    assert got == expected, f"only in environment.yml: {got - expected}; only in pyproject: {expected - got}"
    assert "-e ." in _env_pip_requirements(), "environment.yml must install the project itself"
