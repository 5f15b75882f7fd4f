"""Imported populations (paperlib.sources): each source's format written for real from networks
trained here on digits, read back through the import path, graphs compared with the originals, bad
input named, and steps 02-07 run on the imported populations through the runner.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from paperlib import files, paths, profile_files
from paperlib.graph import rolled_graph
from paperlib.sources import core, importer, smallcnnzoo
from paperlib.train import data, models
from paperlib.train.store import Run
from paperlib.train.zoo import SmallCNN, ZooCNN

from conftest import make_root

# --------------------------------------------------------------------------- each source's format, written
def write_run(folder: Path, model: str, model_kwargs: dict, hparams: dict,
              states: dict[int, dict], accuracy: dict[int, float]) -> Path:
    """One run in the own-runs layout (paperlib.sources.own)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({"model": model, "model_kwargs": model_kwargs, "hparams": hparams},
                                                indent=1))
    for e, sd in states.items():
        torch.save(sd, folder / f"epoch_{e:03d}.pt")
    pd.DataFrame({"epoch": list(accuracy), "test_acc": list(accuracy.values())}).to_csv(folder / "metrics.csv",
                                                                                      index=False)
    return folder


def write_trial(folder: Path, config: dict, states: dict[int, dict], accuracy: dict[int, float],
                pad: bool = True) -> Path:
    """One Ray Tune trial as the Model Zoos' trainable writes it (``code/model_definitions/def_NN_experiment.py``
    of ModelZoos/ModelZooDataset): ``setup()`` sets ``self._iteration = -1``, so the first ``step()``, the
    evaluation of the untrained network, is logged with ``training_iteration`` 0 and saved as
    ``checkpoint_000000``; every later step trains one epoch. A line holds the step's ``train_loss``,
    ``train_acc``, ``test_loss``, ``test_acc`` (fractions) and Ray's own fields; ``training_iteration`` is
    the epoch."""
    folder.mkdir(parents=True, exist_ok=True)
    for e, sd in states.items():
        d = folder / (f"checkpoint_{e:06d}" if pad else f"checkpoint_{e}")
        d.mkdir(exist_ok=True)
        torch.save(sd, d / "checkpoints")
    total = 0.0
    with open(folder / "result.json", "w") as fh:
        for e, a in sorted(accuracy.items()):
            total += 1.5
            fh.write(json.dumps({"train_loss": 2.3 / (e + 1), "train_acc": a / 100.0, "test_loss": 2.3 / (e + 1),
                                 "test_acc": a / 100.0, "time_this_iter_s": 1.5, "done": False,
                                 "training_iteration": e, "trial_id": folder.name[-5:], "time_total_s": total,
                                 "iterations_since_restore": e + 1, "config": config}) + "\n")
    return folder


def write_archive(folder: Path, rows: list[np.ndarray], metrics: pd.DataFrame,
                  layout: list) -> Path:
    """``weights.npy``, ``metrics.csv.gz`` and ``layout.csv`` of one archive (row i of both describes checkpoint i)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "weights.npy", np.stack(rows).astype(np.float32))
    metrics.to_csv(folder / "metrics.csv.gz", index=False)
    pd.DataFrame(layout, columns=["varname", "start_idx", "end_idx", "shape"]).to_csv(folder / "layout.csv",
                                                                                    index=False)
    return folder


EPOCHS = 3
LRS = (1e-5, 0.05, 2e-5, 0.1, 5e-5, 0.15, 1e-5, 0.2, 3e-5, 0.08)  # 5 hopeless, 5 that learn in 3 epochs


def _train(model: torch.nn.Module, side: int, lr: float, seed: int = 0, n: int = 256):
    """State dicts of epochs 0..EPOCHS and test accuracies (%) of a tiny run on digits."""
    train, test = data.load_dataset("digits", side)
    x, y = train.tensors
    xt, yt = test.tensors
    x, y, xt, yt = (x[:n] - 0.5) / 0.5, y[:n], (xt[:150] - 0.5) / 0.5, yt[:150]
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    states, accs = {}, {}

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            return 100.0 * float((model(xt).argmax(1) == yt).float().mean())

    states[0], accs[0] = {k: v.clone() for k, v in model.state_dict().items()}, evaluate()
    for e in range(1, EPOCHS + 1):
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(32):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        states[e], accs[e] = {k: v.clone() for k, v in model.state_dict().items()}, evaluate()
    return states, accs


def _profile(root: Path, text: str, name: str) -> Path:
    (root / "profiles").mkdir(parents=True, exist_ok=True)
    path = root / "profiles" / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture
def in_root(tmp_path, monkeypatch):
    """paths redirected to a temporary root; the profile registry restored afterwards."""
    from paperlib import profiles

    make_root(tmp_path)
    for attr, sub in (("ROOT", ""), ("RESULTS", "results"), ("FIGURES", "figures"), ("NOTEBOOKS", "notebooks"),
                      ("PUBLISHED", "results/published"), ("EXECUTED", "results/executed")):
        monkeypatch.setattr(paths, attr, tmp_path / sub if sub else tmp_path)
    monkeypatch.delenv("PAPERLIB_STORE", raising=False)
    saved = (dict(profiles.PROFILES), dict(profile_files.IMPORTED), dict(profile_files.DATASETS))
    yield tmp_path
    for d, old in zip((profiles.PROFILES, profile_files.IMPORTED, profile_files.DATASETS), saved):
        d.clear()
        d.update(old)


def _register(path: Path):
    from paperlib import profiles

    plan = profile_files.load(path, {"smoke", "default", "paper"})
    profiles.PROFILES[plan.profile.name] = plan.profile
    return plan


def _adjacency_equal(a: torch.nn.Module, b: torch.nn.Module, shape) -> None:
    ga, gb = rolled_graph(a.eval(), shape), rolled_graph(b.eval(), shape)
    assert ga.n == gb.n
    diff = abs(ga.adjacency - gb.adjacency)
    assert diff.max() < 1e-6 if diff.nnz else True


# --------------------------------------------------------------------------- fixture populations
@pytest.fixture(scope="module")
def own_runs(tmp_path_factory):
    """Two populations of our LeNet (widths 1 and 2) in the own-runs layout, and the originals."""
    base = tmp_path_factory.mktemp("own")
    originals = {}
    finals = {}
    for arch, width in (("LeNet", 1.0),):
        for i, lr in enumerate(LRS):
            torch.manual_seed(i)
            kw = {"width": width, "init": "he"}
            net = models.build_model("lenet", 10, 1, 16, **kw)
            states, accs = _train(net, 16, lr, seed=i)
            write_run(base / arch / f"run{i}", "lenet", kw, {"lr": lr, "dropout": 0.0, "seed": i,
                                                                   "optimizer": "sgd"}, states, accs)
            originals[(arch, f"run{i}")] = states
            finals.setdefault(arch, []).append(accs[EPOCHS])
    yield base, originals, finals
    shutil.rmtree(base, ignore_errors=True)  # the suite's disk bound (conftest)


@pytest.fixture(scope="module")
def zoo_trials(tmp_path_factory):
    """Ray Tune trial folders of CNN-s (28x28) and CNN-l (32x32), their key names, and the originals."""
    base = tmp_path_factory.mktemp("raytune")
    originals, finals = {}, {}
    for arch, size, side in (("CNN-s", "s", 28), ("CNN-l", "l", 32)):
        for i, lr in enumerate(LRS):
            dropout = 0.0 if i % 2 else 0.3  # module_list indices shift with dropout in CNN-s
            torch.manual_seed(i)
            net = ZooCNN(size, 10, 1, side, dropout, "tanh" if i % 3 else "relu")
            states, accs = _train(net, side, lr * 3 if lr > 1e-2 else lr, seed=i)
            config = {"model::type": "CNN" if size == "s" else "CNN3", "model::nlin": "tanh" if i % 3 else "relu",
                      "model::dropout": dropout, "model::init_type": "kaiming_uniform", "model::channels_in": 1,
                      "optim::optimizer": "sgd", "optim::lr": lr, "optim::wd": 0.0, "seed": i}
            write_trial(base / arch / f"NN_tune_trainable_{i:05d}", config, states, accs, pad=bool(i % 2))
            originals[(arch, f"NN_tune_trainable_{i:05d}")] = states
            finals.setdefault(arch, []).append(accs[EPOCHS])
    yield base, originals, finals
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def small_zoo(tmp_path_factory):
    """One Small CNN Zoo archive (epochs 0..3 of 12 networks, two activations), and the originals."""
    base = tmp_path_factory.mktemp("smallcnnzoo") / "mnist"
    rows, meta, originals, finals = [], [], {}, {"SmallCNN": []}
    layout = None
    for i, lr in enumerate(LRS):
        act = "relu" if i % 2 else "tanh"
        torch.manual_seed(i)
        net = SmallCNN(10, 1, 28, 0.0, 2, act)
        states, accs = _train(net, 28, lr * 2 if lr > 1e-2 else lr, seed=i)
        name = f"run_{i:03d}"
        originals[name] = states
        finals["SmallCNN"].append(accs[EPOCHS])
        for e in states:
            row, layout = smallcnnzoo.tf_row(states[e])
            rows.append(row)
            meta.append({"modeldir": name, "step": e, "test_accuracy": accs[e] / 100.0, "train_loss": 1.0,
                         "config.learning_rate": lr, "config.dropout": 0.0, "config.optimizer": "sgd",
                         "config.activation": act, "config.w_init": "he_normal", "config.epochs": 86})
    order = np.random.default_rng(0).permutation(len(rows))  # rows of a network need not be together
    write_archive(base, [rows[k] for k in order], pd.DataFrame(meta).iloc[order], layout)
    yield base, originals, finals
    shutil.rmtree(base.parent, ignore_errors=True)


OWN_TOML = """
name = "{name}"
description = "own runs (test)"
[[populations]]
arch = "LeNet"
source = "runs"
path = "{path}/LeNet"
dataset = "digits16"
in_channels = 1
image_size = 16
threshold = 30.0
t_max = 3
"""

ZOO_TOML = """
name = "{name}"
[[populations]]
arch = "CNN-s"
source = "raytune"
path = "{path}/CNN-s"
dataset = "digits28"
threshold = 30.0
t_max = 3
epochs = 3
[[populations]]
arch = "CNN-l"
source = "raytune"
path = "{path}/CNN-l"
model = "zoo-cnn-l"
dataset = "digits32"
in_channels = 1
image_size = 32
threshold = 30.0
t_max = 3
epochs = 3
"""

SMALL_TOML = """
name = "{name}"
[[populations]]
arch = "relu"
source = "smallcnnzoo"
path = "{path}"
dataset = "digits28g"
threshold = 30.0
where = {{ "config.activation" = "relu" }}
[[populations]]
arch = "tanh"
source = "smallcnnzoo"
path = "{path}"
dataset = "digits28g"
threshold = 30.0
where = {{ "config.activation" = "tanh" }}
"""


def _check_graphs(name: str, originals: dict, build, shape) -> pd.DataFrame:
    """Every imported snapshot's rolled graph equals that of the original module."""
    runs = files.read_runs(name)
    assert len(runs) == len(originals)
    for row in runs.itertuples():
        run = Run(paths.runs_dir(name) / row.key)
        spec = run.spec
        states = originals[build(row, spec)]
        from paperlib.train.trainer import load_model

        for e in run.snapshot_epochs():
            imported = load_model(run, e)
            original = load_model(run, e)
            original.load_state_dict(states[e])
            _adjacency_equal(imported, original, shape(spec))
            assert all(torch.equal(imported.state_dict()[k], states[e][k]) for k in states[e]), (row.key, e)
    return runs


def test_own_runs_import_and_graphs(own_runs, in_root):
    base, originals, _ = own_runs
    _register(_profile(in_root, OWN_TOML.format(name="own-t", path=base), "own-t"))
    result = importer.import_profile("own-t")
    assert result.skipped.empty
    runs = _check_graphs("own-t", originals, lambda row, spec: (row.arch, spec["source_run"]),
                         lambda spec: (1, 16, 16))
    assert set(runs["max_epochs"]) == {EPOCHS} and (runs["final_acc"] >= 30).any() and (runs["final_acc"] < 30).any()
    # the same originals, compared with our own model built directly (not through the store)
    key = runs["key"].iloc[0]
    run = Run(paths.runs_dir("own-t") / key)
    net = models.build_model("lenet", 10, 1, 16, width=1.0 if runs["arch"].iloc[0] == "LeNet" else 2.0, init="he")
    net.load_state_dict(originals[(runs["arch"].iloc[0], run.spec["source_run"])][2])
    from paperlib.train.trainer import load_model

    _adjacency_equal(load_model(run, 2), net, (1, 16, 16))
    again = importer.import_profile("own-t")  # unchanged networks are not rewritten
    assert again.runs["key"].tolist() == runs["key"].tolist()


def test_model_zoo_import_and_graphs(zoo_trials, in_root):
    base, originals, _ = zoo_trials
    _register(_profile(in_root, ZOO_TOML.format(name="zoo-t", path=base), "zoo-t"))
    result = importer.import_profile("zoo-t")
    assert result.skipped.empty, result.skipped["reason"].tolist()
    runs = _check_graphs("zoo-t", originals, lambda row, spec: (row.arch, spec["source_run"].split("/")[-1]),
                         lambda spec: (1, spec["image_size"], spec["image_size"]))
    # their key names load into our model as they are
    sd = originals[("CNN-s", "NN_tune_trainable_00000")][1]
    assert "module_list.4.weight" in sd and "module_list.14.weight" in sd  # with dropout
    sd = originals[("CNN-s", "NN_tune_trainable_00001")][1]
    assert "module_list.3.weight" in sd and "module_list.11.weight" in sd  # without
    assert sum(p.numel() for p in ZooCNN("s", 10, 1, 28).parameters()) == 2464
    assert sum(p.numel() for p in ZooCNN("s", 10, 3, 28).parameters()) == 2864
    assert sum(p.numel() for p in ZooCNN("l", 10, 3, 32).parameters()) == 10853
    assert runs["optimizer"].str.contains("model::nlin=").all()  # configuration groups are the zoo's


def test_small_cnn_zoo_import_and_graphs(small_zoo, in_root):
    base, originals, _ = small_zoo
    _register(_profile(in_root, SMALL_TOML.format(name="small-t", path=base), "small-t"))
    result = importer.import_profile("small-t")
    assert result.skipped.empty
    runs = _check_graphs("small-t", originals, lambda row, spec: spec["source_run"], lambda spec: (1, 28, 28))
    assert sorted(runs.groupby("arch").size().tolist()) == [len(LRS) // 2, len(LRS) // 2]
    assert sum(p.numel() for p in SmallCNN().parameters()) == 4970


# --------------------------------------------------------------------------- the horizon
def test_ragged_and_nonfinite_runs_are_decided_not_filled(own_runs, in_root, tmp_path):
    base, originals, _ = own_runs
    src = tmp_path / "ragged"

    shutil.copytree(base / "LeNet", src / "LeNet")
    (src / "LeNet" / "run1" / "epoch_002.pt").unlink()  # ragged: epoch 2 missing
    bad = torch.load(src / "LeNet" / "run2" / "epoch_003.pt", weights_only=True)
    bad[next(iter(bad))][0] = float("nan")
    torch.save(bad, src / "LeNet" / "run2" / "epoch_003.pt")  # non-finite at 3
    _register(_profile(in_root, OWN_TOML.format(name="rag-t", path=src), "rag-t"))
    result = importer.import_profile("rag-t")
    names = result.imported.set_index("key")["run"]
    runs = result.runs.copy()
    runs.index = [names[k] for k in runs["key"]]
    assert runs.loc["run1", "epochs_trained"] == 1 and not runs.loc["run1", "diverged"]
    assert runs.loc["run2", "diverged"] and runs.loc["run2", "diverged_epoch"] == 3
    assert runs.loc["run0", "epochs_trained"] == EPOCHS
    from paperlib.features.population import PopulationFeatures  # the horizon the evaluation applies

    feats = PopulationFeatures("LeNet", "digits16", runs.index.to_numpy(), runs["final_acc"].to_numpy(),
                               runs["diverged"].to_numpy(), runs["epochs_trained"].to_numpy(), 30.0, 3, {}, {},
                               np.zeros(len(runs), int),
                               np.where(runs["diverged"], runs["diverged_epoch"].astype(float), np.inf))
    alive = dict(zip(runs.index, feats.alive(2)))
    assert not alive["run1"] and alive["run2"] and alive["run0"]
    alive3 = dict(zip(runs.index, feats.alive(3)))
    assert not alive3["run2"]


# --------------------------------------------------------------------------- bad input, named
def _skip_reason(result, run: str) -> str:
    rows = result.skipped[result.skipped["run"].str.endswith(run)]
    assert len(rows) == 1, result.skipped
    return rows["reason"].iloc[0]


def test_state_dict_that_does_not_fit_is_named(own_runs, in_root, tmp_path):
    base, _, _ = own_runs

    shutil.copytree(base / "LeNet", tmp_path / "bad" / "LeNet")
    f = tmp_path / "bad" / "LeNet" / "run3" / "epoch_002.pt"
    sd = torch.load(f, weights_only=True)
    sd["extra.weight"] = sd.pop(next(iter(sd)))
    torch.save(sd, f)
    f2 = tmp_path / "bad" / "LeNet" / "run4" / "epoch_001.pt"
    sd = torch.load(f2, weights_only=True)
    k = list(sd)[-2]
    sd[k] = sd[k][:, :3]
    torch.save(sd, f2)
    _register(_profile(in_root, OWN_TOML.format(name="bad-t", path=tmp_path / "bad"), "bad-t"))
    result = importer.import_profile("bad-t")
    msg = _skip_reason(result, "run3")
    assert str(f) in msg and "run run3" in msg and "epoch 2" in msg and "missing keys" in msg and "extra keys" in msg
    msg = _skip_reason(result, "run4")
    assert str(f2) in msg and "run run4" in msg and "wrong shapes" in msg
    assert len(result.runs) == len(LRS) - 2  # the others are imported
    assert len(files.read_table("bad-t", "import_skipped.csv")) == 2


def test_layout_that_does_not_sum_to_the_row_is_named(small_zoo, in_root, tmp_path):
    base, _, _ = small_zoo

    shutil.copytree(base, tmp_path / "zoo")
    layout = pd.read_csv(tmp_path / "zoo" / "layout.csv").iloc[:-1]
    layout.to_csv(tmp_path / "zoo" / "layout.csv", index=False)
    with pytest.raises(core.LayoutError, match="layout.csv.*add up to 4810.*4970"):
        smallcnnzoo.read_layout(tmp_path / "zoo" / "layout.csv", 4970)
    smallcnnzoo._CACHE.clear()
    _register(_profile(in_root, SMALL_TOML.format(name="lay-t", path=tmp_path / "zoo"), "lay-t"))
    with pytest.raises(core.SourceError, match="nothing imported"):
        importer.import_profile("lay-t")
    skipped = files.read_table("lay-t", "import_skipped.csv")
    assert (skipped["run"] == "*").all() and skipped["reason"].str.contains("layout.csv").all()
    smallcnnzoo._CACHE.clear()


def test_result_json_without_test_accuracy_and_empty_checkpoint_are_named(zoo_trials, in_root, tmp_path):
    base, _, _ = zoo_trials

    shutil.copytree(base / "CNN-s", tmp_path / "z" / "CNN-s")
    shutil.copytree(base / "CNN-l", tmp_path / "z" / "CNN-l")
    trial = tmp_path / "z" / "CNN-s" / "NN_tune_trainable_00002"
    lines = [json.loads(x) for x in (trial / "result.json").read_text().splitlines()]
    del lines[2]["test_acc"]
    (trial / "result.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
    trial3 = tmp_path / "z" / "CNN-s" / "NN_tune_trainable_00003"
    folder = next(trial3.glob("checkpoint_*2"))
    (folder / "checkpoints").unlink()
    _register(_profile(in_root, ZOO_TOML.format(name="res-t", path=tmp_path / "z"), "res-t"))
    result = importer.import_profile("res-t")
    msg = _skip_reason(result, "NN_tune_trainable_00002")
    assert str(trial / "result.json") in msg and "run NN_tune_trainable_00002" in msg and "test_acc" in msg
    assert result.skipped.set_index("run").loc["NN_tune_trainable_00002", "error"] == "MissingAccuracyError"
    msg = _skip_reason(result, "NN_tune_trainable_00003")
    assert str(folder) in msg and "run NN_tune_trainable_00003" in msg and "epoch 2" in msg
    assert len(result.runs) == 2 * len(LRS) - 2


def test_profile_file_errors_name_the_file(in_root, tmp_path):
    path = _profile(in_root, 'name = "x"\n[[populations]]\narch = "a"\nsource = "nope"\npath = "."\n'
                             'dataset = "d"\nthreshold = 1.0\n', "x")
    with pytest.raises(profile_files.ProfileFileError, match=f"{path}.*source 'nope'"):
        profile_files.parse(path)


# --------------------------------------------------------------------------- 02-07 through the runner
def _threshold(finals: list[float]) -> float:
    """Between the 5th and 6th final accuracy: five networks of each class (07 cross-fits in 5 folds)."""
    a = sorted(finals)
    return round((a[len(a) // 2 - 1] + a[len(a) // 2]) / 2, 4)


def test_pipeline_runs_02_to_07_on_imported_populations_of_every_source(own_runs, zoo_trials, small_zoo, tmp_path):
    """One profile with a population of each source (and the Model Zoos' two architectures, for Q2)."""
    (own, _, f_own), (zoo, _, f_zoo), (small, _, f_small) = own_runs, zoo_trials, small_zoo
    root = make_root(tmp_path / "root")
    text = f"""
name = "imp-all"
[[populations]]
arch = "LeNet"
source = "runs"
path = "{own}/LeNet"
dataset = "digits16"
in_channels = 1
image_size = 16
threshold = {_threshold(f_own["LeNet"])}
t_max = 3
[[populations]]
arch = "CNN-s"
source = "raytune"
path = "{zoo}/CNN-s"
dataset = "digits28"
threshold = {_threshold(f_zoo["CNN-s"])}
t_max = 3
[[populations]]
arch = "CNN-l"
source = "raytune"
path = "{zoo}/CNN-l"
model = "zoo-cnn-l"
dataset = "digits32"
in_channels = 1
image_size = 32
threshold = {_threshold(f_zoo["CNN-l"])}
t_max = 3
[[populations]]
arch = "SmallCNN"
source = "smallcnnzoo"
path = "{small}"
dataset = "digits28g"
threshold = {_threshold(f_small["SmallCNN"])}
[[transfers]]
name = "s-to-l"
train = ["CNN-s"]
test = "CNN-l"
[analysis]
n_folds = 2
fold_seeds = [0]
classifiers = ["svm"]
modes = ["plain"]
feature_sets = ["deg", "evec", "B_Wl", "B_What", "B_Wprime", "learning-curve"]
"""
    _profile(root, text, "imp-all")
    env = {**os.environ, "PAPERLIB_ROOT": str(root), "PYTHONPATH": str(paths.CODE), "PAPERLIB_QUIET": "1"}
    env.pop("PAPERLIB_STORE", None)
    proc = subprocess.run([sys.executable, "-m", "paperlib.pipeline", "--profile", "imp-all", "--no-progress",
                           "-p", "unrolled=false", "-p", "repeats=1", "-p", "orders=5"], cwd=paths.CODE, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "01_train" not in proc.stdout and "01_import" in proc.stdout
    results = root / "results" / "imp-all"
    manifest = json.loads((results / "manifest.json").read_text())
    assert [s["notebook"] for s in manifest["steps"]] == ["01_import", "02_graph", "03_features", "04_q1",
                                                           "05_q2", "06_q3", "07_early_stopping"]
    runs = pd.read_csv(results / "runs.csv")
    assert runs.groupby("arch").size().to_dict() == {"LeNet": 10, "CNN-s": 10, "CNN-l": 10, "SmallCNN": 10}
    q1 = pd.read_csv(results / "q1.csv")
    assert set(q1["arch"]) == set(runs["arch"]) and len(pd.read_csv(results / "q2.csv"))
    print({s["notebook"]: s["seconds"] for s in manifest["steps"]})


def test_the_runner_selects_01_import_for_a_profile_file(in_root, tmp_path, monkeypatch):
    from paperlib import pipeline
    from paperlib.pipeline.cli import _profile_argument

    monkeypatch.delenv("PAPERLIB_PROFILES", raising=False)
    path = tmp_path / "elsewhere.toml"
    path.write_text(OWN_TOML.format(name="sel-t", path=tmp_path))
    monkeypatch.setattr(profile_files, "_first_run_model", lambda folder, file: ("lenet", {}))
    assert _profile_argument(str(path)) == "sel-t"  # --profile FILE: registered, passed on to kernels
    assert str(path.resolve()) in os.environ["PAPERLIB_PROFILES"]
    assert pipeline.steps_for("sel-t")[0] == "01_import" and "01_train" not in pipeline.steps_for("sel-t")
    assert pipeline.steps_for("smoke")[0] == "01_train" and "01_import" not in pipeline.steps_for("smoke")
    with pytest.raises(pipeline.ParameterError, match="01_import does not apply to profile 'smoke'"):
        pipeline.steps_for("smoke", ["01_import"])
    with pytest.raises(pipeline.ParameterError, match="01_train does not apply"):
        pipeline.steps_for("sel-t", ["01_train"])
    # a missing runs.csv of an imported profile names 01_import, not 01_train
    missing = pipeline.check_inputs("02_graph", "sel-t")
    assert missing and all(m.made_by == "01_import" for m in missing)
