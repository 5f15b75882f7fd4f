"""What the import and the runner check about imported populations before the notebooks that need it:
the Ray Tune epoch alignment (the Model Zoos' trainable and Ray's default), the time columns of an
own run's ``metrics.csv``, ``t_max`` against the epochs a source holds, a profile without transfers,
the networks per class against ``n_folds``, Figure 1's network and an empty ``PAPERLIB_ROOT``.

Every network here is a freshly initialised model (no training): the checks read labels, epochs and
file layouts, not what the weights learnt. The runner tests replace papermill by a stand-in that
imports for real (01_import) and writes the other steps' declared outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from paperlib import files, paths, profile_files
from paperlib.sources import core, importer, own, raytune
from paperlib.train import models
from paperlib.train.zoo import ZooCNN

from test_sources import _profile, _register, in_root, write_trial  # noqa: F401 (in_root: a fixture)

CONFIG = {"model::type": "CNN", "model::nlin": "tanh", "model::dropout": 0.0, "model::init_type": "kaiming_uniform",
          "optim::optimizer": "adam", "optim::lr": 1e-3, "optim::wd": 0.0, "seed": 1}
ACC = {0: 10.0, 1: 52.0, 2: 61.0, 3: 70.0}  # epoch 0: the untrained network


def _states(net: torch.nn.Module, epochs: range, seed: int = 0) -> dict[int, dict]:
    """Distinct state_dicts of ``net`` per epoch (a small step per epoch; nothing is trained)."""
    g = torch.Generator().manual_seed(seed)
    out, sd = {}, {k: v.clone() for k, v in net.state_dict().items()}
    for e in epochs:
        out[e] = {k: v + 0.01 * e * torch.randn(v.shape, generator=g) for k, v in sd.items()}
    return out


def write_ray_default_trial(folder: Path, config: dict, states: dict[int, dict], accuracy: dict[int, float]) -> Path:
    """One trial as Ray Tune's default writes it: a ``step()`` trains one epoch and then evaluates, Ray numbers
    the steps from 1 (``training_iteration`` 1 is the first trained epoch) and names each checkpoint by the
    iteration that saved it (``checkpoint_000001``); the untrained network has neither a line nor a checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    for it in sorted(states):
        (folder / f"checkpoint_{it:06d}").mkdir()
        torch.save(states[it], folder / f"checkpoint_{it:06d}" / "checkpoints")
    with open(folder / "result.json", "w") as fh:
        for it in sorted(accuracy):
            fh.write(json.dumps({"test_acc": accuracy[it] / 100.0, "train_loss": 1.0 / it, "time_this_iter_s": 2.0,
                                 "training_iteration": it, "done": it == max(accuracy), "config": config}) + "\n")
    return folder


def write_shifted_trial(folder: Path, config: dict, states: dict[int, dict], accuracy: dict[int, float]) -> Path:
    """A hand-written trainable that logs the untrained evaluation as iteration 1 but names checkpoints by epoch."""
    write_trial(folder, config, states, {})
    with open(folder / "result.json", "w") as fh:
        for e in sorted(accuracy):
            line = {"test_acc": accuracy[e] / 100.0, "training_iteration": e + 1, "config": config}
            fh.write(json.dumps(line) + "\n")
    return folder


ZOO_POP = """
name = "{name}"
[[populations]]
arch = "CNN-s"
source = "raytune"
path = "{path}"
dataset = "zoo-digits"
threshold = 50.0
t_max = 3
epochs = 3
{options}
"""


def _zoo_population(root: Path, trials: Path, name: str, options: str = "") -> profile_files.ImportedPopulation:
    return profile_files.parse(_profile(root, ZOO_POP.format(name=name, path=trials, options=options), name)
                               ).populations[0]


@pytest.fixture(scope="module")
def zoo_states():
    torch.manual_seed(0)
    return _states(ZooCNN("s", 10, 1, 28), range(0, 4))


# --------------------------------------------------------------------------- the Ray Tune alignment
def test_the_zoos_layout_reads_iteration_0_as_the_untrained_epoch(zoo_states, tmp_path):
    write_trial(tmp_path / "zoo" / "NN_tune_trainable_a_00000", CONFIG, zoo_states, ACC)
    ip = _zoo_population(tmp_path, tmp_path / "zoo", "zoo-a")
    ref, = raytune.list_runs(ip)
    rec = raytune.read_run(ref, ip)
    assert rec.accuracy == pytest.approx(ACC) and rec.final_epoch == 3
    assert sorted(rec.weights) == [0, 1, 2, 3] and rec.seconds == {e: 1.5 for e in range(4)}
    assert rec.loss[0] == pytest.approx(2.3)  # the untrained evaluation's line is epoch 0's


def test_rays_default_layout_reads_iteration_1_as_the_first_trained_epoch(zoo_states, in_root):
    for i in range(2):
        write_ray_default_trial(in_root / "ray" / f"trial_{i}", {**CONFIG, "seed": i},
                                {e: zoo_states[e] for e in (1, 2, 3)}, {e: ACC[e] for e in (1, 2, 3)})
    ip = _zoo_population(in_root, in_root / "ray", "ray-d")
    rec = raytune.read_run(raytune.list_runs(ip)[0], ip)
    assert rec.accuracy == pytest.approx({1: 52.0, 2: 61.0, 3: 70.0}) and sorted(rec.weights) == [1, 2, 3]
    _register(in_root / "profiles" / "ray-d.toml")
    result = importer.import_profile("ray-d", progress=False)
    assert result.skipped.empty and len(result.runs) == 2
    assert (result.runs["final_acc"] == 70.0).all() and (result.runs["epochs_trained"] == 3).all()


def test_a_hand_written_layout_with_the_untrained_network_at_iteration_1_reads_offset_minus_1(zoo_states, tmp_path):
    write_shifted_trial(tmp_path / "s" / "t0", CONFIG, zoo_states, ACC)
    ip = _zoo_population(tmp_path, tmp_path / "s", "shift")
    rec = raytune.read_run(raytune.list_runs(ip)[0], ip)
    assert rec.accuracy == pytest.approx(ACC) and rec.final_epoch == 3


@pytest.mark.parametrize(("layout", "stated", "data_reads", "why"), [
    ("zoo", -1, "offset 0", "training_iteration 0 (line 1) would be epoch -1"),
    ("ray", -1, "offset 0", "checkpoint_000003 would have no result line"),
    ("shifted", 0, "offset -1", "checkpoint_000000 would have no result line"),
])
def test_a_result_offset_that_contradicts_the_data_is_refused_naming_the_file_and_both_readings(
        zoo_states, in_root, layout, stated, data_reads, why):
    folder = in_root / layout
    for i in range(2):
        trial = folder / f"NN_tune_trainable_{i:05d}"
        if layout == "zoo":
            write_trial(trial, {**CONFIG, "seed": i}, zoo_states, ACC)
        elif layout == "ray":
            write_ray_default_trial(trial, {**CONFIG, "seed": i}, {e: zoo_states[e] for e in (1, 2, 3)},
                                    {e: ACC[e] for e in (1, 2, 3)})
        else:
            write_shifted_trial(trial, {**CONFIG, "seed": i}, zoo_states, ACC)
    name = f"off-{layout}"
    _zoo_population(in_root, folder, name, f"options = {{ result_offset = {stated} }}")
    _register(in_root / "profiles" / f"{name}.toml")
    with pytest.raises(core.OptionError) as info:
        importer.import_profile(name, progress=False)
    msg = str(info.value)
    assert str(folder / "NN_tune_trainable_00000" / "result.json") in msg
    assert f"options.result_offset = {stated} contradicts the data" in msg and why in msg
    assert f"the data read {data_reads}" in msg
    assert not (in_root / "results" / name / "runs.csv").exists()  # nothing shifted was written


def test_iterations_that_are_not_consecutive_or_do_not_align_are_named():
    lines = [{"training_iteration": i} for i in (0, 1, 3)]
    with pytest.raises(core.SourceError, match=r"result.json.*not consecutive: 3 on line 3 follows 1"):
        raytune.alignment(lines, {0, 1}, Path("result.json"), "t")
    lines = [{"training_iteration": i} for i in range(0, 4)]
    with pytest.raises(core.SourceError, match=r"do not align: with offset 0 .*checkpoint_000005.*with offset -1"):
        raytune.alignment(lines, {0, 1, 5}, Path("result.json"), "t")
    # lines past the last checkpoint are a ragged trajectory, not a misalignment
    assert raytune.alignment(lines, {0, 1}, Path("result.json"), "t") == 0


# --------------------------------------------------------------------------- own runs: metrics.csv
def _own_run(folder: Path, metrics: dict, states: dict[int, dict], lr: float = 0.01) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({"model": "lenet", "model_kwargs": {"width": 1.0},
                                                 "hparams": {"lr": lr, "dropout": 0.0, "seed": 0, "optimizer": "sgd"}}))
    for e, sd in states.items():
        torch.save(sd, folder / f"epoch_{e}.pt")
    pd.DataFrame(metrics).to_csv(folder / "metrics.csv", index=False)
    return folder


OWN = """
name = "{name}"
[[populations]]
arch = "LeNet"
source = "runs"
path = "{path}"
dataset = "own-digits"
model = "lenet"
model_kwargs = {{ width = 1.0 }}
in_channels = 1
image_size = 16
threshold = {threshold}
t_max = {t_max}
{extra}
"""


@pytest.fixture(scope="module")
def lenet_states():
    torch.manual_seed(0)
    return _states(models.build_model("lenet", 10, 1, 16, width=1.0), range(0, 4))


def _own_profile(root: Path, runs: Path, name: str, threshold: float = 50.0, t_max: int = 3, extra: str = "") -> str:
    _register(_profile(root, OWN.format(name=name, path=runs, threshold=threshold, t_max=t_max, extra=extra), name))
    return name


def test_elapsed_seconds_are_differenced_so_q3_never_sums_elapsed_time(lenet_states, in_root):
    from paperlib.evaluate.timing import training_cost

    elapsed = [0.5, 4.5, 8.5, 12.5]  # a running total: 4 s per epoch
    _own_run(in_root / "el" / "r0", {"epoch": [0, 1, 2, 3], "test_acc": list(ACC.values()),
                                     "elapsed_seconds": elapsed}, lenet_states)
    name = _own_profile(in_root, in_root / "el", "el-t")
    result = importer.import_profile(name, progress=False)
    assert result.skipped.empty
    row = files.read_runs(name).iloc[0]
    assert row["epoch_seconds"] == pytest.approx(4.0) and row["train_seconds"] == pytest.approx(12.0)
    assert training_cost(files.read_runs(name))["train_to_early_stop_seconds"] == pytest.approx(12.0)
    # the same running total under ``seconds``, summed, would have been mean(4.5, 8.5, 12.5) * 3 = 25.5 s


@pytest.mark.parametrize(("columns", "error"), [
    ({"seconds": [0.0, 4.0, 8.1, 12.0]}, "column seconds rises with every epoch like a running total"),
    ({"seconds": [0.0, 4.0, 4.1, 3.9], "elapsed_seconds": [0.0, 4.0, 8.1, 12.0]}, "has two time columns"),
    ({"elapsed_seconds": [0.0, 4.0, 3.0, 12.0]}, "column elapsed_seconds falls between epochs"),
])
def test_ambiguous_time_columns_are_refused_naming_metrics_csv(lenet_states, tmp_path, columns, error):
    folder = _own_run(tmp_path / "r", {"epoch": [0, 1, 2, 3], "test_acc": list(ACC.values()), **columns},
                      lenet_states)
    ip = profile_files.parse(_profile(tmp_path, OWN.format(name="amb", path=tmp_path, threshold=50.0, t_max=3,
                                                           extra=""), "amb")).populations[0]
    with pytest.raises(core.SourceError, match=error) as info:
        own.read_run(own.list_runs(ip)[0], ip)
    assert str(folder / "metrics.csv") in str(info.value)


def test_per_epoch_seconds_are_read_as_they_are(lenet_states, tmp_path):
    df = pd.DataFrame({"epoch": [0, 1, 2, 3], "seconds": [0.2, 4.0, 4.1, 4.3]})
    assert own.epoch_seconds(df, df["epoch"], tmp_path, "r") == {0: 0.2, 1: 4.0, 2: 4.1, 3: 4.3}
    df = pd.DataFrame({"epoch": [0, 1, 2, 3], "epoch_seconds": [0.0, 4.0, 8.1, 12.0]})  # said per epoch: not checked
    assert own.epoch_seconds(df, df["epoch"], tmp_path, "r")[3] == 12.0


# --------------------------------------------------------------------------- t_max against the epochs held
def test_t_max_beyond_the_epochs_a_population_holds_is_a_warning_with_counts(lenet_states, in_root):
    for i in range(3):
        last = 3 if i else 2  # one run holds epochs 0..2 only
        held = range(last + 1)
        _own_run(in_root / "tm" / f"r{i}", {"epoch": list(held), "test_acc": [ACC[e] for e in held]},
                 {e: lenet_states[e] for e in held}, lr=0.01 * (i + 1))
    name = _own_profile(in_root, in_root / "tm", "tmax-t", t_max=5, extra="epochs = 50")
    result = importer.import_profile(name, progress=False)
    assert len(result.runs) == 3 and len(result.warnings) == 2
    t_max, epochs = result.warnings
    assert "population LeNet: 3 of 3 networks hold fewer epochs than t_max = 5 (their last epoch: 2..3)" in t_max
    assert "Set t_max <= 2 for population LeNet" in t_max and str(in_root / "profiles" / "tmax-t.toml") in t_max
    assert "epochs = 50" in epochs and "end at epoch 3" in epochs
    assert files.read_metrics(name)["import"]["warnings"] == list(result.warnings)
    name = _own_profile(in_root, in_root / "tm", "tmax-ok", t_max=2)
    assert "3 networks hold" not in " ".join(importer.import_profile(name, progress=False).warnings)
    assert not [w for w in importer.import_profile(name, progress=False).warnings if "t_max" in w]


# --------------------------------------------------------------------------- the runner
def _population(root: Path, finals: list[float], lenet_states) -> Path:
    """Own runs with the given final accuracies (epochs 0..3), one configuration each."""
    for i, final in enumerate(finals):
        acc = [10.0, 30.0, 40.0, final]
        _own_run(root / f"run{i:02d}", {"epoch": [0, 1, 2, 3], "test_acc": acc, "seconds": [0.1, 2.0, 2.1, 2.0]},
                 lenet_states, lr=0.001 * (i + 1))
    return root


def _stand_in(calls: list[str]):
    """papermill's ``execute_notebook``: 01_import imports for real, every step writes its declared outputs."""
    from paperlib.pipeline.inputs import expand_templates
    from paperlib.steps import get_step

    def execute(input_path, output_path, parameters=None, **kwargs):
        step, profile = Path(input_path).stem, parameters["profile"]
        calls.append(step)
        if step == "01_import":
            importer.import_profile(profile, progress=False)
        for template in get_step(step).outputs:
            if template.startswith("{store}"):
                continue
            for path in expand_templates(template, profile):
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("{}" if path.suffix == ".json" else "a,b\n1,2\n")
        Path(output_path).write_text("{}")
    return execute


def test_a_one_population_profile_runs_every_step_but_05_which_is_reported_skipped(lenet_states, in_root,
                                                                                  monkeypatch, capsys):
    import papermill
    from paperlib import pipeline

    calls: list[str] = []
    monkeypatch.setattr(papermill, "execute_notebook", _stand_in(calls))
    name = _own_profile(in_root, _population(in_root / "one", [20, 25, 30, 35, 40, 60, 65, 70, 75, 80], lenet_states),
                        "one-pop")
    code = pipeline.main(["--profile", name, "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert calls == ["01_import", "02_graph", "03_features", "04_q1", "06_q3", "07_early_stopping"]
    assert "skipped: 05_q2: profile 'one-pop' has no transfers" in out and "[[transfers]]" in out
    manifest = files.read_manifest(name)
    assert manifest["status"] == "ok" and "05_q2" in manifest["skipped_steps"]
    assert [s["notebook"] for s in manifest["steps"]] == calls
    assert pipeline.main(["--profile", name, "--only", "05_q2", "--no-progress"]) == 2  # asked for alone: an error
    assert "step 05_q2 cannot run: profile 'one-pop' has no transfers" in capsys.readouterr().err


def test_too_few_networks_of_a_class_stop_the_run_after_01_import_before_02(lenet_states, in_root, monkeypatch,
                                                                          capsys):
    import papermill
    from paperlib import pipeline

    calls: list[str] = []
    monkeypatch.setattr(papermill, "execute_notebook", _stand_in(calls))
    name = _own_profile(in_root, _population(in_root / "few", [20, 25, 30, 35, 40, 45, 50, 55, 70, 80], lenet_states),
                        "few-t", threshold=60.0)
    code = pipeline.main(["--profile", name, "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2 and calls == ["01_import"], out + err
    assert "STOPPED before 02_graph: profile few-t: Q1 (04_q1" in err and "nothing from 02_graph on runs" in err
    assert "population LeNet: 10 networks, 2 high (final accuracy >= threshold 60) and 8 low" in err
    assert "n_folds = 5" in err and "change threshold (population LeNet) or n_folds ([analysis])" in err
    manifest = files.read_manifest(name)
    assert manifest["status"] == "failed" and [s["notebook"] for s in manifest["steps"]] == ["01_import"]
    # with runs.csv there, a later selection is refused before any notebook starts
    assert pipeline.main(["--profile", name, "--only", "04_q1", "--no-progress"]) == 2
    assert calls == ["01_import"] and "population LeNet: 10 networks, 2 high" in capsys.readouterr().err
    # the graphs alone need no classes
    assert pipeline.main(["--profile", name, "--only", "01_import", "--only", "02_graph", "--no-progress"]) == 0
    assert calls == ["01_import", "01_import", "02_graph"]


def test_a_class_smaller_than_the_inner_folds_is_said_once_and_sklearn_stays_quiet(recwarn):
    from paperlib.evaluate.tuning import grouped_splits

    y = np.array([1, 1] + [0] * 8)
    grouped_splits(y, np.arange(10), 3, seed=0)
    assert not [w for w in recwarn if "least populated class" in str(w.message)]


# --------------------------------------------------------------------------- Figure 1, PAPERLIB_ROOT
def test_figure_1_draws_the_first_populations_network(in_root):
    from paperlib.report import figures

    name = "fig1-zoo"
    _register(_profile(in_root, ZOO_POP.format(name=name, path=in_root, options=""), name))
    fig = figures.fig1(name)
    title = fig.axes[0].get_title()
    assert title.startswith("Rolled graph of CNN-s (zoo-cnn-s, zoo-digits input)")
    assert "49 nodes, 360 edges" in title  # CNN-s counted by hand: 1 + 8 + 6 + 4 + 20 + 10 nodes
    assert (paths.figures_dir(name) / "fig1.png").stat().st_size > 0
    assert figures.fig1("smoke").axes[0].get_title().startswith("Rolled graph of a LeNet (width x0.25")


def test_an_empty_paperlib_root_reads_the_notebooks_and_published_tables_of_the_project(tmp_path):
    root, runs = tmp_path / "out", tmp_path / "runs"
    root.mkdir()
    (tmp_path / "p.toml").write_text(OWN.format(name="empty-root", path=runs, threshold=50.0, t_max=3, extra=""))
    code = ("from paperlib import files, paths, pipeline\n"
            "from paperlib.pipeline.runner import preflight\n"
            "steps = pipeline.steps_for('empty-root')\n"
            "preflight(steps, 'empty-root')\n"
            "print(paths.NOTEBOOKS, paths.PUBLISHED, len(files.read_published('table1.csv')), len(steps))\n")
    env = {k: v for k, v in os.environ.items() if k != "PAPERLIB_STORE"}
    env.update(PAPERLIB_ROOT=str(root), PAPERLIB_PROFILES=str(tmp_path / "p.toml"), PYTHONPATH=str(paths.CODE))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    nb, published, n_rows, n_steps = proc.stdout.split()
    assert Path(nb) == paths.CODE / "notebooks" and Path(published) == paths.CODE / "results" / "published"
    assert int(n_rows) > 0 and int(n_steps) == 7
    assert not any(root.iterdir())  # outputs only: nothing was written, nothing had to be copied


def test_the_readers_examples_hold():
    import doctest

    assert doctest.testmod(own).failed == 0 and doctest.testmod(raytune).failed == 0
