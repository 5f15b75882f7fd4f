"""The runner: parameters and their ranges, inputs, interruption, the kernels' environment.

Every run of the runner here happens in a temporary project root (``PAPERLIB_ROOT``); none
takes more than a few seconds: the checks fail before a notebook runs, or the notebooks are
small stand-ins written by the test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from conftest import make_root, pipeline_env, run_pipeline, write_result
from paperlib import paths, pipeline
from paperlib.pipeline.inputs import MissingInputError, check_inputs, require_inputs
from paperlib.files.records import _pid_alive, read_manifest
from paperlib.pipeline.parameters import PARAMETERS, ParameterError, coerce, declared_parameters, resolve_parameters
from paperlib.pipeline.runner import preflight
from paperlib.steps import STEPS, get_step
from paperlib.profiles import get_profile

EXISTING = [s.name for s in STEPS if s.notebook.exists()]
ONLY = [a for s in EXISTING for a in ("--only", s)]  # every step whose notebook exists


def _tree(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def bare_root(tmp_path: Path) -> Path:
    """A project root with the notebooks and the published numbers only."""
    return make_root(tmp_path / "root")


@pytest.fixture
def fresh_clone_root(tmp_path: Path) -> Path:
    """A project root as a fresh clone has it: the committed default results, no run store."""
    root = make_root(tmp_path / "root", profiles=("default",))
    assert not (root / "results" / "default" / "store").exists()
    return root


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch):
    """Point :mod:`paperlib.paths` at a root for in-process calls."""
    def point(root: Path) -> Path:
        monkeypatch.setattr(paths, "ROOT", root)
        monkeypatch.setattr(paths, "NOTEBOOKS", root / "notebooks")
        monkeypatch.setattr(paths, "RESULTS", root / "results")
        monkeypatch.setattr(paths, "FIGURES", root / "figures")
        monkeypatch.delenv("PAPERLIB_STORE", raising=False)
        return root
    return point


# --------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-p", "epochs=abc"], "epochs"),
        (["-p", "no_such_param=1"], "no_such_param"),
        (["-p", "epochs=2.0"], "epochs"),
        (["-p", "unrolled=maybe"], "unrolled"),
        (["-p", "epochs"], "epochs"),
        (["-p", "epochs=-3"], "epochs"),
        (["-p", "workers=-1"], "workers"),
        (["-p", "engine=spark"], "engine"),
        (["-p", "repeats=0"], "repeats"),
        (["--profile", "no_such_profile"], "no_such_profile"),
    ],
)
def test_bad_parameter_exits_2_before_any_notebook(args, named, bare_root, in_root, capsys):
    in_root(bare_root)
    before = _tree(bare_root)
    code = pipeline.main(["--no-progress", *(["--profile", "smoke"] if "--profile" not in args else []),
                          *ONLY, *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert named in err
    assert _tree(bare_root) == before, "something was written (a notebook ran, or the manifest) despite a bad parameter"


def test_epochs_minus_3_exits_2_before_any_notebook(bare_root):
    proc = run_pipeline(bare_root, "--profile", "smoke", *ONLY, "-p", "epochs=-3", timeout=120)
    assert proc.returncode == 2
    assert "'epochs' = -3" in proc.stderr and ">= 0" in proc.stderr
    assert sorted(p.name for p in (bare_root / "results").iterdir()) == ["published"], "something was written"


@pytest.mark.parametrize(("name", "bad", "good"),
                         [("epochs", -1, 0), ("workers", -2, 4), ("repeats", 0, 1), ("engine", "spark", "dask"),
                          ("device", "tpu", "cuda"), ("threads", -1, 2), ("precision", "fp8", "bf16"),
                          ("stop_below", 1.5, 0.25), ("stop_below", -0.1, 0.0), ("profile", "nope", "smoke")])
def test_check_parameters_ranges(name, bad, good):
    with pytest.raises(ParameterError, match=name if name != "profile" else "nope"):
        pipeline.check_parameters("01_train", **{name: bad})
    pipeline.check_parameters("01_train", **{name: good})


@pytest.mark.parametrize("step", EXISTING)
def test_every_numeric_or_choice_parameter_has_a_range_and_its_default_is_in_it(step):
    for name, p in declared_parameters(step).items():
        if p["type"] in {"int", "float"} or name in {"engine", "device", "precision"}:
            assert name in PARAMETERS, f"{step}: parameter {name} has no range in pipeline.PARAMETERS"
    defaults = {k: v["default"] for k, v in declared_parameters(step).items()}
    pipeline.check_parameters(step, **defaults)


def test_unknown_profile_is_an_error():
    with pytest.raises(ParameterError, match="no_profile"):
        resolve_parameters(["01_train"], "no_profile", [])


def test_parameters_go_only_to_notebooks_that_declare_them():
    steps = [s for s in ("01_train", "04_q1", "06_q3") if s in EXISTING]
    per_step = resolve_parameters(steps, "smoke", ["epochs=3", "repeats=1"])
    assert per_step["01_train"]["epochs"] == 3 and "repeats" not in per_step["01_train"]
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


def test_list_shows_every_step_its_inputs_and_ranges(capsys):
    assert pipeline.main(["--list"]) == 0
    out = capsys.readouterr().out
    for step in STEPS:
        assert step.name in out
    assert "<- results/default/features/<arch>.npz" in out
    assert ">= 1" in out  # the range of repeats


# --------------------------------------------------------------------------- the declared pipeline
def test_every_input_is_made_by_an_earlier_step():
    for i, step in enumerate(STEPS):
        earlier = {o for s in STEPS[:i] for o in s.outputs}
        for inp in step.inputs:
            options = (inp, *inp.alternatives)
            assert any(o.path in earlier for o in options), f"{step.name}: no earlier step makes {inp.path}"


def test_step_07_early_stopping_is_declared():
    step = get_step("07_early_stopping")
    assert step.outputs == ("results/{profile}/early_stopping.csv", "results/{profile}/early_stopping.md",
                            "figures/{profile}/fig_early_stopping.png", "figures/{profile}/fig_early_stopping.pdf",
                            "results/{profile}/predictors/{arch}.both.json",
                            "results/{profile}/predictors/{arch}.both.npz")
    assert {i.path for i in step.inputs} >= {i.path for i in get_step("04_q1").inputs}


def test_a_whole_run_from_nothing_passes_the_input_check(bare_root, in_root):
    in_root(bare_root)
    preflight(EXISTING, "smoke")  # every input is made by an earlier selected step


# --------------------------------------------------------------------------- inputs
def test_02_without_a_store_stops_naming_01_train_and_changes_nothing(fresh_clone_root):
    before = _tree(fresh_clone_root)
    proc = run_pipeline(fresh_clone_root, "--profile", "default", "--only", "02_graph", "--no-progress", timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "01_train" in proc.stderr and "results/default/store/runs is missing" in proc.stderr
    assert "--only 01_train" in proc.stderr
    assert _tree(fresh_clone_root) == before


@pytest.mark.parametrize("steps", [["03_features"], ["02_graph", "03_features"], ["03_features", "04_q1"]])
def test_02_03_without_a_store_stop_naming_01_train_and_change_nothing(steps, fresh_clone_root, in_root, capsys):
    in_root(fresh_clone_root)
    before = _tree(fresh_clone_root)
    code = pipeline.main(["--profile", "default", "--no-progress", *[a for s in steps for a in ("--only", s)]])
    err = capsys.readouterr().err
    assert code == 2 and "01_train" in err and "store/runs is missing" in err
    assert _tree(fresh_clone_root) == before


@pytest.mark.parametrize("step", ["02_graph", "03_features"])
def test_require_inputs_names_01_train(step, fresh_clone_root, in_root):
    in_root(fresh_clone_root)
    with pytest.raises(MissingInputError, match="01_train") as info:
        require_inputs(step, "default")
    assert "store/runs" in str(info.value)


def test_missing_features_name_03(bare_root, in_root):
    in_root(bare_root)
    out = paths.ensure(paths.results_dir("smoke"))
    (out / "runs.csv").write_text("key,arch\nabc,LeNet\n")
    (out / "features.csv").write_text("arch,feature_set\nLeNet,deg\n")
    missing = check_inputs("04_q1", "smoke")
    assert {m.made_by for m in missing} == {"03_features"}
    assert sorted(Path(m.path).name for m in missing) == sorted(f"{paths.safe_name(a)}.npz"
                                                                for a in get_profile("smoke").archs)
    with pytest.raises(MissingInputError, match="--only 03_features"):
        require_inputs("04_q1", "smoke")


def test_an_empty_or_header_only_input_counts_as_missing(bare_root, in_root):
    in_root(bare_root)
    out = paths.ensure(paths.results_dir("smoke"))
    (out / "runs.csv").write_text("key,arch,status\n")
    missing = {Path(m.path).name: m for m in check_inputs("02_graph", "smoke")}
    assert missing["runs.csv"].problem == "has no data rows" and missing["runs.csv"].made_by == "01_train"
    (out / "runs.csv").write_text("")
    assert {Path(m.path).name: m.problem for m in check_inputs("02_graph", "smoke")}["runs.csv"] == "empty"


def test_store_with_an_unfinished_run_counts_as_missing(bare_root, in_root):
    in_root(bare_root)
    out = paths.ensure(paths.results_dir("smoke"))
    write_result(out / "runs.csv", pd.DataFrame({"key": ["aaa", "bbb"], "arch": ["LeNet", "LeNet"]}))
    for key, status in (("aaa", "finished"), ("bbb", "running")):
        d = paths.ensure(paths.runs_dir("smoke") / key)
        (d / "meta.json").write_text(json.dumps({"status": status}))
    [m] = check_inputs("02_graph", "smoke")
    assert "1 of the 2 networks" in m.problem and "bbb" in m.problem and m.made_by == "01_train"
    (paths.runs_dir("smoke") / "bbb" / "meta.json").write_text(json.dumps({"status": "diverged"}))
    assert check_inputs("02_graph", "smoke") == []


def test_q3_snapshots_or_the_store(bare_root, in_root):
    in_root(bare_root)
    out = paths.ensure(paths.results_dir("smoke"))
    for name in ("runs.csv", "q1.csv", "centralities.csv"):
        write_result(out / name, pd.DataFrame({"key": ["aaa"], "arch": ["LeNet"]}))
    paths.ensure(out / "timings")
    pd.DataFrame({"key": ["aaa"], "train_seconds": [1.0], "epoch_seconds": [0.1]}).to_csv(out / "timings/runs.csv", index=False)
    pd.DataFrame({"key": ["aaa"], "rolled_seconds": [0.1]}).to_csv(out / "timings/centralities.csv", index=False)
    missing = check_inputs("06_q3", "smoke")
    assert len(missing) == len(get_profile("smoke").archs) and all("q3_snapshots" in m.path for m in missing)
    d = paths.ensure(paths.runs_dir("smoke") / "aaa")
    (d / "meta.json").write_text(json.dumps({"status": "finished"}))
    assert check_inputs("06_q3", "smoke") == []  # the store can make them
    shutil.rmtree(paths.store_dir("smoke"))
    for arch in get_profile("smoke").archs:
        p = paths.ensure(paths.q3_snapshots_dir("smoke")) / f"{paths.safe_name(arch)}.pt"
        p.write_bytes(b"x")
    assert check_inputs("06_q3", "smoke") == []  # the committed snapshots suffice


# --------------------------------------------------------------------------- stand-in notebooks
def _stand_in(root: Path, name: str, body: str) -> None:
    """Replace notebook ``name`` in ``root`` by one with the same parameters cell and ``body``."""
    real = nbformat.read(paths.CODE / "notebooks" / f"{name}.ipynb", as_version=4)
    params = next(c for c in real.cells if c.cell_type == "code")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# stand-in for {name}"), params,
                                         nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = real.metadata["kernelspec"]
    nbformat.write(nb, root / "notebooks" / f"{name}.ipynb")


_REPORT = """
import json, os, sys
from pathlib import Path
import paperlib
root = Path(os.environ["PAPERLIB_ROOT"])
(root / "kernel.json").write_text(json.dumps({
    "paperlib": paperlib.__file__, "cwd": os.getcwd(), "pid": os.getpid(),
    "env": {k: os.environ.get(k) for k in ("PAPERLIB_QUIET", "TQDM_DISABLE", "PAPERLIB_ROOT")}}))
"""


def test_kernel_imports_this_checkouts_paperlib_quietly_and_outputs_are_verified(tmp_path):
    """The runner of a copy of the code gives its notebooks that copy, whatever is installed; a step
    that does not write its declared outputs fails."""
    code = tmp_path / "checkout"
    shutil.copytree(paths.CODE / "paperlib", code / "paperlib", ignore=shutil.ignore_patterns("__pycache__"))
    root = make_root(tmp_path / "root")
    _stand_in(root, "01_train", _REPORT)
    env = pipeline_env(root)
    env.pop("PYTHONPATH")
    proc = subprocess.run([sys.executable, "-m", "paperlib.pipeline", "--profile", "smoke", "--only", "01_train",
                           "--no-progress"], cwd=code, env=env, capture_output=True, text=True, timeout=300)
    report = json.loads((root / "kernel.json").read_text())
    assert Path(report["paperlib"]).resolve() == (code / "paperlib" / "__init__.py").resolve()
    assert report["env"] == {"PAPERLIB_QUIET": "1", "TQDM_DISABLE": "1", "PAPERLIB_ROOT": str(root.resolve())}
    assert Path(report["cwd"]).resolve() == (root / "notebooks").resolve()
    assert proc.returncode == 1 and "did not write its declared outputs" in proc.stderr
    manifest = json.loads((root / "results" / "smoke" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["steps"][0]["status"] == "failed"
    assert "results/smoke/runs.csv" in manifest["steps"][0]["error"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_killed_run_leaves_the_manifest_saying_interrupted(sig, bare_root):
    _stand_in(bare_root, "01_train", _REPORT + "\nimport time\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-m", "paperlib.pipeline", "--profile", "smoke", "--only", "01_train",
                             "--no-progress"], cwd=bare_root, env=pipeline_env(bare_root),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (bare_root / "kernel.json").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the stand-in notebook never started"
            time.sleep(0.2)
        manifest_path = bare_root / "results" / "smoke" / "manifest.json"
        assert json.loads(manifest_path.read_text())["status"] == "running"
        proc.send_signal(sig)
        # about 10 s here on 2 cores with five busy processes beside it; minutes of slack for a
        # machine whose disk is busy too (this checks what the runner leaves, not its speed)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    manifest = json.loads(manifest_path.read_text())
    assert manifest["status"] == "interrupted"
    assert manifest["steps"][0]["status"] == "interrupted" and manifest["steps"][0]["seconds"] > 0
    kernel_pid = json.loads((bare_root / "kernel.json").read_text())["pid"]
    deadline = time.monotonic() + 30
    while _pid_alive(kernel_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _pid_alive(kernel_pid), "the notebook's kernel outlived the interrupted runner"


def test_an_interrupt_the_notebook_client_swallows_still_stops_the_run_as_interrupted(bare_root, in_root,
                                                                                     monkeypatch, capsys):
    """Under load the notebook client can catch the KeyboardInterrupt of a SIGINT (a cell
    cancelled) and return as if the notebook had finished: the runner must still stop with 130
    and an "interrupted" manifest, not report the notebook's outputs as missing."""
    import papermill

    def swallowing_client(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises here
        except KeyboardInterrupt:
            pass  # what the client did: the notebook "finished"

    in_root(bare_root)
    monkeypatch.setattr(papermill, "execute_notebook", swallowing_client)
    before = signal.getsignal(signal.SIGINT)  # the process's own (an earlier test or pytest-xdist may have set it)
    code = pipeline.main(["--profile", "smoke", "--only", "01_train", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 130, err
    assert "did not write its declared outputs" not in err and "INTERRUPTED (SIGINT)" in err
    manifest = read_manifest("smoke")
    assert manifest["status"] == "interrupted" and manifest["steps"][0]["status"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is before, "the runner left its handler installed"


def test_a_record_of_a_runner_killed_with_sigkill_reads_as_interrupted(tmp_results):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = paths.ensure(paths.results_dir("smoke")) / "manifest.json"
    path.write_text(json.dumps({"profile": "smoke", "status": "running", "host": socket.gethostname(),
                                "pid": dead.pid, "steps": []}))
    assert read_manifest("smoke")["status"] == "interrupted"
    path.write_text(json.dumps({"profile": "smoke", "status": "running", "host": socket.gethostname(),
                                "pid": os.getpid(), "steps": []}))
    assert read_manifest("smoke")["status"] == "running"  # this process is alive


# --------------------------------------------------------------------------- committed intermediate data
COMMITTED_DATA_BUDGET = 15_000_000  # bytes of results/<profile>/features and q3_snapshots in git


def test_committed_intermediate_data_fits_the_budget():
    files = [p for pattern in ("*/features/*.npz", "*/q3_snapshots/*.pt")
             for p in (paths.CODE / "results").glob(pattern) if "store" not in p.parts]
    total = sum(p.stat().st_size for p in files)
    assert total <= COMMITTED_DATA_BUDGET, f"{total / 1e6:.1f} MB of committed intermediate data (budget 15 MB)"


@pytest.mark.parametrize("step", ["04_q1", "05_q2", "06_q3", "07_early_stopping"])
def test_a_fresh_clone_has_the_inputs_of_the_steps_after_the_graphs(step, fresh_clone_root, in_root):
    """04-07 run on a fresh clone (no run store) from the committed default data."""
    in_root(fresh_clone_root)
    missing = check_inputs(step, "default")
    assert not missing, "\n".join(m.message("default") for m in missing)


# --------------------------------------------------------------------------- datasets before any kernel
def _no_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    import papermill

    def refuse(*args, **kwargs):
        raise AssertionError("a notebook was started although a dataset is missing")
    monkeypatch.setattr(papermill, "execute_notebook", refuse)


def test_paper_profile_without_its_datasets_exits_2_before_any_kernel(bare_root, in_root, tmp_path, monkeypatch,
                                                                      capsys):
    """No dataset under PAPERLIB_DATA: the runner stops in its preflight with paperlib.train.data's messages,
    naming both folders, and writes nothing (no manifest)."""
    from paperlib.train import data

    in_root(bare_root)
    empty = paths.ensure(tmp_path / "no-data")
    monkeypatch.setenv("PAPERLIB_DATA", str(empty))
    _no_kernel(monkeypatch)
    before = _tree(bare_root)
    code = pipeline.main(["--profile", "paper", "--only", "01_train"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(empty / "cifar-10-batches-py") in err and str(empty / "tiny-imagenet-200") in err
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load_dataset("cifar10", 32)
    assert str(info.value) in err, "not paperlib.train.data's own message"
    assert "01_train" in err and "Nothing was written" in err
    assert _tree(bare_root) == before


def test_a_malformed_dataset_is_found_by_the_preflight(bare_root, in_root, tmp_path, monkeypatch, capsys):
    """CIFAR-10 well-formed, Tiny-ImageNet without its validation images: only Tiny-ImageNet is named."""
    from test_paper_profile import write_cifar10, write_tiny_imagenet

    in_root(bare_root)
    root = tmp_path / "data"
    write_cifar10(root, per_batch=4, test=10)
    write_tiny_imagenet(root, per_class=1, val_per_class=1)
    next((root / "tiny-imagenet-200" / "val" / "images").iterdir()).unlink()
    monkeypatch.setenv("PAPERLIB_DATA", str(root))
    monkeypatch.setenv("PAPERLIB_VERIFY_DATA", "0")
    _no_kernel(monkeypatch)
    with pytest.raises(pipeline.MissingDatasetError) as info:
        preflight(["01_train", "02_graph"], "paper")
    msg = str(info.value)
    assert "tiny-imagenet" in msg and "validation image(s)" in msg and str(root / "tiny-imagenet-200") in msg
    assert "cifar" not in msg.lower()
    assert pipeline.main(["--profile", "paper", "--only", "01_train"]) == 2
    assert "validation image(s)" in capsys.readouterr().err
    with pytest.raises(MissingInputError) as other:  # without 01_train, the datasets are not looked at
        preflight(["02_graph"], "paper")
    assert not isinstance(other.value, pipeline.MissingDatasetError)
