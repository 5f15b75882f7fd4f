"""Fashion-MNIST: the idx reader on files the tests write, the checksum error, the missing-dataset
message before any kernel, the fmnist profiles, and the zoo-layout export read back by the importer.

Nothing is downloaded; Debian's folder is taken out of the search (``SYSTEM_DIRS``) in every test."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from paperlib import paths
from paperlib.train import data, fashion_mnist as fm


def idx_bytes(arr: np.ndarray) -> bytes:
    """An idx file of unsigned bytes, written by hand from the format (magic 0 0 8 ndim, big-endian sizes)."""
    return bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">i", n) for n in arr.shape) + arr.astype(np.uint8).tobytes()


def write_fashion(folder: Path, n_train: int = 40, n_test: int = 20, gz: bool = True, seed: int = 0) -> dict:
    """Four idx files of random images with labels cycling through the 10 classes; returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) * 7 % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        raw = idx_bytes(arr)
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as fh:
                fh.write(raw)
        else:
            (folder / name).write_bytes(raw)
    return arrays


@pytest.fixture
def no_system(monkeypatch):
    monkeypatch.setattr(fm, "SYSTEM_DIRS", ())
    fm._load.cache_clear()
    data._tensors_cpu.cache_clear()
    yield
    fm._load.cache_clear()
    data._tensors_cpu.cache_clear()


@pytest.mark.parametrize("gz", [True, False])
def test_reader_on_written_idx_files(tmp_path, no_system, gz):
    arrays = write_fashion(tmp_path / "FashionMNIST" / "raw", gz=gz)
    x_tr, y_tr, x_te, y_te = fm.load(tmp_path, verify=False)
    assert np.array_equal(x_tr, arrays["train-images-idx3-ubyte"]) and np.array_equal(y_te, arrays["t10k-labels-idx1-ubyte"])
    assert np.array_equal(x_te, arrays["t10k-images-idx3-ubyte"]) and np.array_equal(y_tr, arrays["train-labels-idx1-ubyte"])
    # through paperlib.train.data: a stratified subset (2 per class), the whole test set, a zero border at 32
    t = data.load_tensors("fashion-mnist", 32, 20, root=tmp_path, verify=False)
    assert torch.bincount(t.y_train).tolist() == [2] * 10 and len(t.y_test) == 20
    idx = fm.stratified_subset(arrays["train-labels-idx1-ubyte"], 20)
    assert torch.equal(t.x_train[:, 0, 2:30, 2:30], torch.from_numpy(arrays["train-images-idx3-ubyte"][idx]))
    assert t.x_train[:, :, :2].sum() == 0 and t.x_train[:, :, :, 30:].sum() == 0
    train, test = data.load_dataset("fashion-mnist", 28, 20, root=tmp_path, verify=False)
    assert len(train) == 20 and torch.equal(test.tensors[0][:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]) / 255.0)


def test_stratified_subset_by_hand():
    labels = np.array([0, 1, 0, 1, 0, 1, 2, 2, 2])
    idx = fm.stratified_subset(labels, 6, seed=3)
    assert np.bincount(labels[idx]).tolist() == [2, 2, 2] and list(idx) == sorted(idx)
    assert list(fm.stratified_subset(labels, None)) == list(range(9))
    with pytest.raises(ValueError, match="fewer"):
        fm.stratified_subset(np.array([0, 0, 0, 0, 1]), 4)


def test_malformed_idx_is_named(tmp_path, no_system):
    folder = tmp_path / "FashionMNIST" / "raw"
    write_fashion(folder, gz=False)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(20, np.uint8))[:-3])
    with pytest.raises(data.DatasetNotFoundError, match="t10k-labels-idx1-ubyte: 17 data bytes"):
        fm.load(tmp_path, verify=False)


def test_checksum_error_names_the_file(tmp_path, no_system):
    write_fashion(tmp_path / "FashionMNIST" / "raw", gz=True)
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_dataset("fashion-mnist", 28, root=tmp_path, verify=True)
    msg = str(err.value)
    assert "SHA-256" in msg and "train-images-idx3-ubyte.gz" in msg  # the first file read, by name
    digest = hashlib.sha256(idx_bytes(write_fashion(tmp_path / "x", gz=False)["train-images-idx3-ubyte"])).hexdigest()
    assert digest in msg and fm.FILES["train-images-idx3-ubyte"] in msg


def test_missing_dataset_names_folders_apt_and_download(tmp_path, no_system):
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_dataset("fashion-mnist", 28, root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--download" in msg


def test_missing_dataset_stops_the_runner_before_any_kernel(tmp_path, no_system, monkeypatch, capsys):
    import papermill

    from paperlib import pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("a notebook was started although Fashion-MNIST is missing")

    monkeypatch.setattr(papermill, "execute_notebook", refuse)
    monkeypatch.setenv("PAPERLIB_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("PAPERLIB_STORE", str(tmp_path / "store"))
    manifest = paths.manifest_path("fmnist")
    existed = manifest.exists()
    code = pipeline.main(["--profile", "fmnist", "--only", "01_train"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "fashion-mnist" in err and "apt-get install dataset-fashion-mnist" in err and "--download" in err
    assert manifest.exists() == existed


def test_fmnist_profiles_are_valid():
    from paperlib.profiles import get_profile
    from paperlib.train import trainer

    for name in ("fmnist", "fmnist-full"):
        P = get_profile(name)
        assert {p.dataset for p in P.populations} == {"fashion-mnist"} and P.image_size == {"fashion-mnist": 28}
        assert len({p.threshold for p in P.populations}) == 1  # one rule for every population
        for pop in P.populations:
            assert pop.grid.size >= 64 and pop.t_max == 9 and P.burn_in == 10 and P.patience == 5
            assert len(set(pop.grid.lrs)) > 1 and len(set(pop.grid.dropouts)) > 1
            build = trainer._make_model(trainer.run_spec(P.with_overrides(device="cpu"), pop, 0.01, 0.0, 0))
            assert build(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
        for t in P.transfers:
            P.population(t.test), [P.population(a) for a in t.train]
    assert get_profile("fmnist").train_limit % 10 == 0 and get_profile("fmnist-full").train_limit is None
    assert "SmallCNN-zoo" in get_profile("fmnist").archs


def test_zoo_layout_round_trip(tmp_path, no_system, monkeypatch):
    """A tiny small-cnn-zoo population trained here, exported in the zoo's files, read back by the importer:
    the same weights at every epoch, the same accuracies, the same graph centralities."""
    from paperlib.graph import temporal
    from paperlib.profiles import get_profile
    from paperlib.sources import smallcnnzoo
    from paperlib.train import trainer
    from paperlib.sources import zoo_export
    from paperlib.train.store import RunStore

    write_fashion(tmp_path / "data" / "FashionMNIST" / "raw", n_train=60, n_test=30)
    monkeypatch.setenv("PAPERLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PAPERLIB_VERIFY_DATA", "0")
    P = get_profile("fmnist").with_overrides(device="cpu", train_limit=60, batch_size=16, epochs=2, t_max=2)
    pop = P.population("SmallCNN-zoo")
    store = RunStore(tmp_path / "runs")
    runs = []
    for spec in trainer.population_specs(P, pop)[:2]:  # two of the zoo-style draws
        trainer.train_run(store.root, spec, progress=False)
        runs.append(store.run(spec))
    out, n = zoo_export.export_runs(runs, tmp_path / "zoo")
    assert n == 6 and {f.name for f in out.iterdir()} == set(smallcnnzoo.FILES)
    assert np.load(out / "weights.npy").shape == (6, 4970)
    smallcnnzoo._CACHE.clear()
    ip = type("IP", (), {"path": out, "options": {}})()
    refs = smallcnnzoo.list_runs(ip)
    assert sorted(r.name for r in refs) == sorted(r.key for r in runs)
    for ref in refs:
        run = store.get(ref.name)
        rec = smallcnnzoo.read_run(ref, ip)
        hist = {h["epoch"]: h["test_acc"] for h in run.meta()["history"]}
        assert rec.final_epoch == 2 and rec.hparams["optimizer"] == run.spec["optimizer"]
        assert rec.hparams["w_init"] == run.spec["model_kwargs"]["w_init"] and rec.hparams["lr"] == run.spec["lr"]
        for e in (0, 1, 2):
            assert rec.accuracy[e] == pytest.approx(hist[e], abs=1e-9)
            back, orig = rec.weights[e](), run.load_snapshot(e)
            assert back.keys() == orig.keys() and all(torch.equal(back[k], orig[k]) for k in orig)
        # the features' input: centralities of the graph of every snapshot, from a copy holding the read-back weights
        copy = RunStore(tmp_path / "copy").run(run.spec)
        for e in (0, 1, 2):
            copy.save_snapshot(e, rec.weights[e]())
        for r in (run, copy):
            temporal.compute_run(r, [0, 1, 2], ("rolled",), (1, 28, 28))
        a, b = temporal.load_centralities(run), temporal.load_centralities(copy)
        for k in ("epochs", "deg", "evec", "finite"):  # the rest are timings
            assert np.array_equal(a[k], b[k]), k
    smallcnnzoo._CACHE.clear()


def test_command_checks_the_files_and_names_what_is_missing(tmp_path, no_system, monkeypatch, capsys):
    monkeypatch.setattr(fm, "apt_install", lambda: False)  # --setup must not install anything in a test
    assert fm.main(["--root", str(tmp_path), "--setup"]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
    write_fashion(tmp_path / "FashionMNIST" / "raw", gz=False)
    assert fm.main(["--root", str(tmp_path)]) == 2  # files of our own: the checksums fail, by name
    assert "train-images-idx3-ubyte: SHA-256" in capsys.readouterr().err


def test_zoo_draws_and_keras_initialisers():
    """The zoo-style population: 64 networks drawn inside the zoo's ranges, each its own run; the
    initialisers' spread checked by hand (He: sqrt(2 / fan_in), Glorot: sqrt(2 / (fan_in + fan_out)))."""
    from paperlib.profiles import get_profile
    from paperlib.profiles_fmnist import ZOO_DISTRIBUTIONS
    from paperlib.train import trainer
    from paperlib.train.store import spec_key
    from paperlib.train.zoo import SmallCNN

    P = get_profile("fmnist")
    specs = trainer.population_specs(P, P.population("SmallCNN-zoo"))
    assert len(specs) == 64 == len({spec_key(s) for s in specs})
    assert all(5e-4 <= s["lr"] <= 5e-2 and 0 <= s["dropout"] <= 0.7 and s["optimizer"] in ("sgd", "adam") for s in specs)
    assert {s["model_kwargs"]["w_init"] for s in specs} == set(ZOO_DISTRIBUTIONS["w_init"])
    assert {s["train_limit"] for s in specs} == {P.train_limit * f // 1 for f in (0.1, 0.25, 0.5, 1.0)}
    assert specs == trainer.population_specs(P, P.population("SmallCNN-zoo"))  # drawn the same every time
    torch.manual_seed(0)
    net = SmallCNN(filters=64, w_init="he_normal")
    assert float(net.conv2.weight.detach().std()) == pytest.approx((2 / (9 * 64)) ** 0.5, rel=0.03)
    assert float(net.conv2.weight.detach().abs().max()) <= 2 * (2 / (9 * 64)) ** 0.5 / 0.87962566103423978 + 1e-6
    net = SmallCNN(filters=64, w_init="glorot_uniform")
    assert float(net.conv2.weight.detach().abs().max()) <= (6 / (2 * 9 * 64)) ** 0.5
    net = SmallCNN(filters=64, w_init="random_normal", init_std=0.01)
    assert float(net.conv2.weight.detach().std()) == pytest.approx(0.01, rel=0.03)
    assert float(net.conv2.bias.detach().abs().sum()) == 0.0
