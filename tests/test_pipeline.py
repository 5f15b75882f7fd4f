"""The runner checks parameters against the notebooks before anything runs."""

import subprocess
import sys

import pytest

from paperlib import paths
from paperlib.pipeline import ParameterError, STEPS, coerce, resolve_parameters


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "paperlib.pipeline", "--profile", "smoke", "--no-progress", *args],
                          cwd=paths.ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-p", "epochs=abc"], "epochs"),
        (["-p", "no_such_param=1"], "no_such_param"),
        (["-p", "epochs=2.0"], "epochs"),
        (["-p", "unrolled=maybe"], "unrolled"),
        (["-p", "epochs"], "epochs"),
    ],
)
def test_bad_parameter_fails_before_running(args, named, tmp_path):
    manifest = paths.manifest_path("smoke")
    before = manifest.stat().st_mtime_ns if manifest.exists() else None
    proc = _cli(*args)
    assert proc.returncode != 0
    assert named in proc.stderr
    after = manifest.stat().st_mtime_ns if manifest.exists() else None
    assert before == after, "a notebook ran (the manifest was rewritten) despite a bad parameter"


def test_unknown_profile_is_an_error():
    with pytest.raises(ParameterError, match="no_profile"):
        resolve_parameters(["01_train"], "no_profile", [])


def test_parameters_go_only_to_notebooks_that_declare_them():
    per_step = resolve_parameters([s.name for s in STEPS], "smoke", ["epochs=3", "repeats=1"])
    assert per_step["01_train"] == {"profile": "smoke", "epochs": 3}
    assert per_step["06_q3"] == {"profile": "smoke", "repeats": 1}
    assert per_step["04_q1"] == {"profile": "smoke"}
    assert isinstance(per_step["01_train"]["epochs"], int)


def test_parameter_of_a_notebook_not_selected_is_unknown():
    with pytest.raises(ParameterError, match="repeats"):
        resolve_parameters(["01_train"], "smoke", ["repeats=1"])


@pytest.mark.parametrize(("raw", "type_name", "value"),
                         [("3", "int", 3), ("0.5", "float", 0.5), ("true", "bool", True), ("no", "bool", False),
                          ("x", "str", "x")])
def test_coerce(raw, type_name, value):
    got = coerce("p", raw, type_name)
    assert got == value and type(got) is type(value)


def test_list_shows_every_notebook():
    proc = _cli("--list")
    assert proc.returncode == 0
    for step in STEPS:
        assert step.name in proc.stdout
