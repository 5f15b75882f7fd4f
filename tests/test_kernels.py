"""The CPU kernels are pinned, so training and evaluation give the same bits whatever the CPU offers.

The other CPUs are simulated on this one with the libraries' own switches, in fresh interpreters
(the libraries read them when they load): an AVX2-only CPU (``ONEDNN_MAX_CPU_ISA=AVX2``,
``ATEN_CPU_CAPABILITY=avx2``, ``MKL_ENABLE_INSTRUCTIONS=AVX2``, ``NPY_DISABLE_CPU_FEATURES``), other
OpenBLAS kernels (``OPENBLAS_CORETYPE``) and other thread counts. On an AVX-512 machine a control
shows that the same simulations *do* move the bits when the pin is switched off
(``PAPERLIB_KERNELS=native``), so the equalities are not vacuous.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from paperlib import kernels, paths

PINNED = kernels.isa_class() == kernels.PINNED_CLASS
AVX512 = "avx512f" in kernels._cpu_flags()
needs_pin = pytest.mark.skipif(not PINNED, reason=f"kernels are pinned only on x86-64-v3 (this is {kernels.isa_class()})")
needs_avx512 = pytest.mark.skipif(not AVX512, reason="the control needs a CPU with AVX-512 (the simulations are "
                                                     "then no-ops)")

AVX2_CPU = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
            "OPENBLAS_CORETYPE": "Haswell"}
OTHER_BLAS = {"OPENBLAS_CORETYPE": "Sandybridge", "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2",
              "MKL_NUM_THREADS": "2"}


def _python(code: str, env: dict[str, str], native: bool = False, tmp=None) -> dict:
    """Run ``code`` in a fresh interpreter; ``tmp`` (a test's ``tmp_path``) becomes its temporary folder, so
    what it writes there is counted by the suite's disk bound and removed with pytest's folders."""
    full = {k: v for k, v in os.environ.items() if k not in kernels.PIN and k != "PAPERLIB_KERNELS"}
    full.update(env)
    if tmp is not None:
        full["TMPDIR"] = str(tmp)
    full["PYTHONPATH"] = str(paths.CODE)
    full["PAPERLIB_QUIET"] = "1"
    if native:
        full["PAPERLIB_KERNELS"] = "native"
    proc = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


STATE = "import json, numpy, torch, paperlib.kernels as k; torch.ones(3).sum(); print(json.dumps(k.state()))"


@needs_pin
def test_import_paperlib_pins_whatever_the_environment_asks_for():
    hostile = {"OPENBLAS_CORETYPE": "Sandybridge", "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
               "NPY_ENABLE_CPU_FEATURES": ""}
    got = _python("import paperlib\n" + STATE, hostile)
    assert got == {"isa": "x86-64-v3", "numpy_x86_v4": False, "openblas": ["Haswell"], "torch": "AVX2"}


@needs_pin
def test_numpy_loaded_before_paperlib_is_refused_with_what_to_do():
    code = ("import os; os.environ['OPENBLAS_CORETYPE'] = 'Sandybridge'\nimport numpy, json\n"
            "import paperlib.kernels as k\ntry:\n    k.check('evaluation')\nexcept k.KernelError as e:\n"
            "    print(json.dumps({'error': str(e)}))\nelse:\n    print(json.dumps({}))")
    msg = _python(code, {}).get("error", "")
    assert "evaluation" in msg and "Sandybridge" in msg and "import paperlib first" in msg


def test_opting_out_names_its_own_class():
    got = _python("import paperlib\n" + STATE, {}, native=True)
    assert got["isa"].endswith("-native")


_TRAIN = r"""
import hashlib, json, tempfile
from pathlib import Path
from paperlib import profiles
from paperlib.train import trainer as train
P = profiles.get_profile("default")
out = {}
for arch, spec in train.profile_specs(P, networks=1):
    if arch not in ("AlexNet", "VGG", "ResNet-20"):
        continue
    root = Path(tempfile.mkdtemp())
    meta = train.train_run(root, dict(spec, epochs=2))
    out[arch] = [meta["snapshots"][e]["sha256"] for e in ("1", "2")]
print(json.dumps(out))
"""


@needs_pin
@pytest.mark.slow
def test_training_gives_the_same_snapshots_on_an_avx2_only_cpu(tmp_path):
    native_cpu = _python(_TRAIN, {}, tmp=tmp_path)
    avx2_cpu = _python(_TRAIN, AVX2_CPU, tmp=tmp_path)
    assert native_cpu == avx2_cpu and len(native_cpu) == 3


@needs_pin
@needs_avx512
@pytest.mark.slow
def test_control_without_the_pin_the_avx2_simulation_moves_the_snapshots(tmp_path):
    assert _python(_TRAIN, {}, native=True, tmp=tmp_path) != _python(_TRAIN, AVX2_CPU, native=True, tmp=tmp_path)


_EVAL = r"""
import json
from paperlib.evaluate import evaluation  # first: numpy loads with the pinned kernels
import numpy as np
rng = np.random.default_rng(1)
n, d = 60, 40
Z = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, d)
y = (Z[:, :5].sum(1) + rng.normal(scale=3, size=n) > 0).astype(int)
groups, acc = np.arange(n) // 2, rng.uniform(0, 100, n)
out = {}
with evaluation.single_thread():
    for clf in ("svm", "mlp"):
        for seed in range(3):
            r = evaluation.nested_cv(Z, y, groups, acc, clf, seed, 5, evaluation.FitCounter())
            out[f"{clf}{seed}"] = [r["accuracy"], r["fold_accuracy"], r["params"], repr(r["spearman"])]
print(json.dumps(out))
"""


@needs_pin
def test_evaluation_gives_the_same_numbers_with_other_blas_kernels_and_threads():
    assert _python(_EVAL, {}) == _python(_EVAL, OTHER_BLAS) == _python(_EVAL, AVX2_CPU)


@needs_pin
@needs_avx512
def test_control_without_the_pin_other_kernels_move_the_evaluation():
    avx2_cpu = dict(AVX2_CPU, NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR")
    native, simulated = _python(_EVAL, {}, native=True), _python(_EVAL, avx2_cpu, native=True)
    assert native != simulated
    assert simulated == _python(_EVAL, {}), "the pinned numbers are those of an AVX2-only CPU"


@needs_pin
def test_a_kernel_started_outside_the_runner_is_pinned(tmp_path):
    """papermill by hand, as a JupyterLab kernel starts: no environment from the runner."""
    import nbformat
    import papermill as pm

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys; sys.path.insert(0, %r)" % str(paths.CODE)),
                nbformat.v4.new_code_cell("from paperlib import kernels\nimport numpy, torch\ntorch.ones(2).sum()\n"
                                          "print(kernels.check('a reader kernel'))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, out = tmp_path / "k.ipynb", tmp_path / "k.out.ipynb"
    nbformat.write(nb, src)
    env = {k: os.environ.pop(k) for k in [*kernels.PIN, "PAPERLIB_KERNELS"] if k in os.environ}
    try:
        pm.execute_notebook(str(src), str(out), kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    finally:
        os.environ.update(env)
    text = nbformat.read(out, as_version=4).cells[1].outputs[0]["text"]
    assert "'openblas': ['Haswell']" in text and "'torch': 'AVX2'" in text and "'numpy_x86_v4': False" in text


_MKL_CALLS = r"""
import json, sys, tempfile
from pathlib import Path
from paperlib import profiles
from paperlib.train import trainer as train
P = profiles.get_profile("default")
for arch, spec in train.profile_specs(P, networks=1):
    if arch in ("LeNet", "AlexNet", "ResNet-20"):
        train.train_run(Path(tempfile.mkdtemp()), dict(spec, epochs=1, dropout=0.5))
print("END-OF-TRAINING", flush=True)
import torch
torch.mm(torch.ones(64, 64), torch.ones(64, 64))  # control: MKL_VERBOSE does report torch's BLAS
print(json.dumps({}))
"""


@needs_pin
@pytest.mark.slow
def test_a_training_run_makes_no_mkl_call(tmp_path):
    """MKL follows the CPU's vendor (MKL_CBWR=AVX2 is ignored on AMD): a run's GEMMs are OpenBLAS's."""
    env = {k: v for k, v in os.environ.items() if k not in kernels.PIN and k != "PAPERLIB_KERNELS"}
    env.update(MKL_VERBOSE="1", PYTHONPATH=str(paths.CODE), PAPERLIB_QUIET="1", TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", _MKL_CALLS], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    during, _, after = proc.stdout.partition("END-OF-TRAINING")
    assert "MKL_VERBOSE" not in during, during[:2000]
    assert "MKL_VERBOSE SGEMM" in after, "control: MKL_VERBOSE=1 reports torch's MKL calls"


_LAYER_OPS = r"""
import json
import paperlib
import torch
from torch.profiler import profile
from paperlib.train import device as dev
model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 10 * 10, 4))
x = torch.randn(16, 3, 12, 12)
def ops():
    with profile() as p:
        model(x).sum().backward()
    return sorted({e.name for e in p.events()})
out = {"outside": ops()}
with dev.run_context("cpu", 1):
    dev.portable_layers(model, "cpu")
    out["inside"] = ops()
print(json.dumps(out))
"""


@needs_pin
def test_training_layers_run_on_openblas_not_onednn_nnpack_or_mkl():
    """oneDNN and NNPACK block by the CPU's cache sizes, MKL by its vendor: inside a run, neither
    torch's convolutions nor its addmm run; the layers are paperlib.blas's."""
    got = _python(_LAYER_OPS, {})
    torch_ops = {"aten::convolution", "aten::addmm", "aten::mm", "aten::mkldnn_convolution",
                 "aten::_slow_conv2d_forward", "aten::convolution_backward"}
    assert not torch_ops & set(got["inside"]), got["inside"]
    assert "_Conv2d" in got["inside"] and "_Linear" in got["inside"]
    assert "aten::convolution" in got["outside"], "control: outside a run torch's own layers run"


_THREADS = {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@needs_pin
@pytest.mark.slow
def test_training_gives_the_same_snapshots_whatever_the_threads_of_the_environment(tmp_path):
    """A run fixes its own threads (torch's and the BLAS's) to the specification's."""
    assert _python(_TRAIN, _ONE_THREAD, tmp=tmp_path) == _python(_TRAIN, _THREADS, tmp=tmp_path)


_BIG_CONV = r"""
import hashlib, json, sys, torch
from paperlib import blas
from paperlib.train import device as dev
kept = dev.keep_freed_memory() if sys.argv[-1] == "keep" else False
g = torch.Generator().manual_seed(0)
x = torch.randn((512, 4, 28, 28), generator=g, requires_grad=True)  # a patch matrix of 58 MB: above glibc's mmap bound
w = torch.randn((4, 4, 3, 3), generator=g, requires_grad=True)
h = hashlib.sha256()
for _ in range(2):  # the second pass reuses what the first freed
    y = blas.conv2d(x, w, None, 1, 1)
    y.square().sum().backward()
    for t in (y, x.grad, w.grad):
        h.update(t.detach().contiguous().numpy().tobytes())
print(json.dumps({"kept": kept, "sha256": h.hexdigest()}))
"""


@needs_pin
def test_keeping_freed_memory_changes_no_bit(tmp_path):
    """run_context makes a process keep the memory it frees (glibc's mallopt, paperlib.train.device): the
    evaluation's 58 MB patch matrices are then not faulted in afresh on every batch. Where memory comes from
    must not change a result: a convolution's output and gradients, twice over, with and without it."""
    kept = _python(_BIG_CONV.replace("sys.argv[-1]", "'keep'"), {}, tmp=tmp_path)
    fresh = _python(_BIG_CONV.replace("sys.argv[-1]", "'no'"), {}, tmp=tmp_path)
    assert kept["kept"] is True  # glibc took the settings
    assert kept["sha256"] == fresh["sha256"]
