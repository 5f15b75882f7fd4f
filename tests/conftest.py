"""Shared fixtures: the smoke pipeline run once per test session in a temporary project root,
and synthetic result tables.

Tests never write into the repository's ``results/`` or ``figures/``: the pipeline under test
runs in a temporary root (``PAPERLIB_ROOT``) that holds copies of the notebooks and of
``results/published``; in-process tests redirect :mod:`paperlib.paths` (fixture ``tmp_results``).
A session that leaves ``git status`` of ``results/`` or ``figures/`` changed fails
(see ``pytest_sessionfinish``).

**Disk bound.** A thread of the main pytest process samples the size of the test run's temporary
folder (pytest's basetemp, which holds the basetemps of pytest-xdist's workers too: every
``tmp_path``, the smoke and paper project roots, their run stores) every
:data:`DISK_SAMPLE_SECONDS`; the run fails when the peak exceeds :data:`DISK_BOUND` bytes, and
the terminal summary states the peak. ``PAPERLIB_TEST_DISK_BOUND`` (bytes) changes the bound.
A passing test's ``tmp_path`` is removed when it ends (``tmp_path_retention_policy = "failed"``
in ``pyproject.toml``); module fixtures remove their folders when their module ends.

**Two workers.** ``make test`` runs the suite on two pytest-xdist workers (:func:`pytest_xdist_make_scheduler`).
Each test module is one group (its module fixtures are built once) and the modules that share the
smoke pipeline are one group (it runs once; its root is removed after the group's last test). The
groups start longest first (:data:`HEAVY`): the paper-profile test on one worker, the smoke group
on the other, so that the two workers finish together.
"""

from __future__ import annotations

import os

# Each pytest-xdist worker is one of the processes that share the cores (one per core: `make test`),
# so each computes on one thread: BLAS and OpenMP pools sized for the whole machine would
# oversubscribe it, and their spinning threads cost more than they gain. Set before numpy and torch
# load; pipelines run by a test inherit it. No number depends on it (paperlib fixes the threads of
# every computation whose bits depend on them; tests/test_kernels.py and test_train.py vary them).
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paperlib  # noqa: F401  first: it pins numpy's and torch's CPU kernels before they load (paperlib.kernels)
import numpy as np
import pandas as pd
import pytest

from paperlib import paths
from paperlib.profiles import get_profile

GUARDED = ("results", "figures")
# tests/browser needs Debian's chromium and minutes: only `make browser-test` (PAPERLIB_BROWSER=1) collects it
collect_ignore = [] if os.environ.get("PAPERLIB_BROWSER", "") not in ("", "0") else ["browser"]


def _git_status() -> str | None:
    try:
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", *GUARDED],
                              cwd=paths.CODE, capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None


DISK_BOUND = int(os.environ.get("PAPERLIB_TEST_DISK_BOUND", 1_000_000_000))  # bytes, the suite's peak
DISK_SAMPLE_SECONDS = 1.0


def tree_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` (their sizes; links not followed; vanishing files skipped)."""
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def tree_parts(root: Path, depth: int = 2) -> dict[str, int]:
    """Bytes of the files under ``root`` by their folder ``depth`` levels down (relative, '/'-joined)."""
    parts: dict[str, int] = {}
    root = Path(root)
    for dirpath, _, names in os.walk(root):
        rel = Path(dirpath).relative_to(root).parts[:depth]
        key = "/".join(rel) or "."
        for name in names:
            try:
                parts[key] = parts.get(key, 0) + os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return parts


class DiskSampler(threading.Thread):
    """Peak of the bytes under ``root``, sampled every ``every`` seconds until :meth:`stop`;
    :attr:`at_peak` is the peak's split by folder (:func:`tree_parts`) and :attr:`peak_seconds`
    its time since the start."""

    def __init__(self, root: Path, every: float = DISK_SAMPLE_SECONDS):
        super().__init__(name="disk-sampler", daemon=True)
        self.root, self.every = Path(root), every
        self.peak, self.samples = 0, 0
        self.at_peak: dict[str, int] = {}
        self.peak_seconds = 0.0
        self._t0 = time.perf_counter()
        self._halt = threading.Event()

    def sample(self) -> int:
        parts = tree_parts(self.root)
        size = sum(parts.values())
        if size > self.peak:
            self.peak, self.at_peak, self.peak_seconds = size, parts, time.perf_counter() - self._t0
        self.samples += 1
        return size

    def run(self) -> None:
        while not self._halt.wait(self.every):
            self.sample()

    def stop(self) -> int:
        self._halt.set()
        self.join(timeout=30)
        self.sample()
        return self.peak


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")  # a pytest-xdist worker; the main process has none


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    config._paperlib_git_status = _git_status()  # type: ignore[attr-defined]
    if not _is_worker(config):  # the main process: its basetemp holds every worker's
        config._paperlib_disk_sampler = DiskSampler(config._tmp_path_factory.getbasetemp())  # type: ignore
        config._paperlib_disk_sampler.start()  # type: ignore[attr-defined]


# The smoke pipeline's users share one group (the pipeline runs once). Every other module is its
# own group. HEAVY: the groups that take longest (measured seconds on 2 cores), started first.
SMOKE_GROUP = "smoke-pipeline"
GROUPS = {"test_outputs": SMOKE_GROUP, "test_verify": SMOKE_GROUP}
HEAVY = ("test_paper_profile", SMOKE_GROUP, "test_sources", "test_gpu_check", "test_graph_torchvision", "test_kernels", "test_pipeline",
         "test_train", "test_notebooks", "test_models", "test_tables")


def group_of(nodeid: str) -> str:
    """The xdist group of a test: its module's name, or the shared group of :data:`GROUPS`."""
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
    return GROUPS.get(module, module)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest groups first (the order in which the workers receive them), then the collection order."""
    def rank(item: pytest.Item) -> int:
        g = group_of(item.nodeid)
        return HEAVY.index(g) if g in HEAVY else len(HEAVY)

    strays = [i.nodeid for i in items if "smoke_pipeline" in getattr(i, "fixturenames", ())
              and group_of(i.nodeid) != SMOKE_GROUP]
    if strays:
        raise pytest.UsageError(f"tests using the smoke_pipeline fixture must be in conftest.GROUPS' {SMOKE_GROUP!r} "
                                f"(its root is removed after that group): {strays[:3]}")
    items.sort(key=rank)


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """pytest-xdist's scope scheduling with :func:`group_of` as the scope: a group runs on one
    worker, in order; groups go to the worker that is free, in the order of the collection.
    (Its ``xdist_group`` marks are not used: they rename node ids, which pytest 9 ignores.)"""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)


def _disk_peak(config: pytest.Config) -> int | None:
    sampler = getattr(config, "_paperlib_disk_sampler", None)
    if sampler is None:
        return None
    if not hasattr(config, "_paperlib_disk_peak"):
        config._paperlib_disk_peak = sampler.stop()  # type: ignore[attr-defined]
    return config._paperlib_disk_peak  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    peak = _disk_peak(config)
    if peak is not None:
        sampler = config._paperlib_disk_sampler  # type: ignore[attr-defined]
        largest = sorted(sampler.at_peak.items(), key=lambda kv: -kv[1])[:3]
        where = ", ".join(f"{k} {v / 1e6:.0f}" for k, v in largest if v >= 1e6)
        terminalreporter.write_line(f"peak disk use of the temporary folder: {peak / 1e6:.0f} MB "
                                    f"(bound {DISK_BOUND / 1e6:.0f} MB), {sampler.peak_seconds:.0f} s into the run"
                                    + (f"; largest folders then (MB): {where}" if where else ""))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    peak = _disk_peak(session.config)
    if peak is not None and peak > DISK_BOUND:
        sys.stderr.write(f"\nERROR: the tests used {peak / 1e6:.0f} MB of disk at their peak (temporary folder), "
                         f"over the bound of {DISK_BOUND / 1e6:.0f} MB\n")
        session.exitstatus = 1
    before = getattr(session.config, "_paperlib_git_status", None)
    after = _git_status()
    if before is None or after is None or before == after:
        return
    changed = sorted(set(after.splitlines()) - set(before.splitlines()))
    if changed:
        sys.stderr.write("\nERROR: the tests changed files of the repository (they must write into a temporary "
                         "root):\n  " + "\n  ".join(changed) + "\n")
        session.exitstatus = 1


@dataclass
class PipelineRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    root: Path  # the temporary project root the pipeline ran in


def make_root(dest: Path, profiles: tuple[str, ...] = ()) -> Path:
    """A project root at ``dest``: copies of ``notebooks/*.ipynb``, ``results/published`` and, for each of
    ``profiles``, the committed ``results/<profile>`` (without a run store) and ``figures/<profile>``."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "notebooks").mkdir(exist_ok=True)
    for nb in (paths.CODE / "notebooks").glob("*.ipynb"):
        shutil.copy2(nb, dest / "notebooks" / nb.name)
    shutil.copytree(paths.CODE / "results" / "published", dest / "results" / "published", dirs_exist_ok=True)
    for profile in profiles:
        src = paths.CODE / "results" / profile
        if src.is_dir():
            shutil.copytree(src, dest / "results" / profile, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("store"))
        if (paths.CODE / "figures" / profile).is_dir():
            shutil.copytree(paths.CODE / "figures" / profile, dest / "figures" / profile, dirs_exist_ok=True)
    return dest


def pipeline_env(root: Path) -> dict[str, str]:
    """The environment of a pipeline run in ``root``: this checkout's code, no outside store."""
    env = {k: v for k, v in os.environ.items() if k not in {"PAPERLIB_STORE", "PAPERLIB_ROOT"}}
    env["PAPERLIB_ROOT"] = str(root)
    env["PYTHONPATH"] = os.pathsep.join([str(paths.CODE), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return env


def run_pipeline(root: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    """``python -m paperlib.pipeline *args`` with ``root`` as the project root (and working directory)."""
    return subprocess.run([sys.executable, "-m", "paperlib.pipeline", *args], cwd=root, env=pipeline_env(root),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def smoke_pipeline(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """Run ``python -m paperlib.pipeline --profile smoke`` once per session, in a temporary root.

    Fails the dependent tests, not the session, when the pipeline fails: the output is kept in
    the returned record for their messages.
    """
    root = make_root(tmp_path_factory.mktemp("smoke-root"))
    t0 = time.perf_counter()
    from paperlib.steps import STEPS

    only = [a for s in STEPS if s.notebook.exists() for a in ("--only", s.name)]  # test_notebooks checks the rest
    proc = run_pipeline(root, "--profile", "smoke", *only)  # with the progress lines, as a user sees it
    run = PipelineRun(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0, root)
    _SMOKE_ROOTS.append(root)
    return run


_SMOKE_ROOTS: list[Path] = []  # removed after the last test of SMOKE_GROUP (pytest_runtest_teardown)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """After the last test of :data:`SMOKE_GROUP` (the group runs as one block on one worker) the
    smoke root is removed: the rest of the suite does not pay its disk."""
    yield
    if group_of(item.nodeid) == SMOKE_GROUP and (nextitem is None or group_of(nextitem.nodeid) != SMOKE_GROUP):
        while _SMOKE_ROOTS:
            shutil.rmtree(_SMOKE_ROOTS.pop(), ignore_errors=True)


# --------------------------------------------------------------------------- synthetic results
SYNTH_FEATURES = ("deg", "evec", "unroll-deg", "unroll-evec", "B_Wl", "B_What", "B_Wprime", "learning-curve")
GRAPH = {"deg", "evec", "unroll-deg", "unroll-evec"}


def write_result(path: Path, df: pd.DataFrame) -> None:
    """Write a (partial) synthetic table as the step that makes it would: every promised column of
    :data:`paperlib.files.TABLES` present (empty where the test does not set it), in order."""
    from paperlib import files

    spec = files.TABLES[Path(path).name]
    cols = list(spec.columns) + [c for c in df.columns if c not in spec.columns]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    df.reindex(columns=cols).to_csv(path, index=False)


def synthetic_runs(profile: str = "smoke", n: int = 8, seed: int = 0) -> pd.DataFrame:
    """A ``runs.csv`` of ``n`` networks per population, one of them diverged."""
    rng = np.random.default_rng(seed)
    p = get_profile(profile)
    rows = []
    for pop in p.populations:
        for i in range(n):
            diverged = i == 0
            rows.append({
                "key": f"{pop.arch.lower()}-{i:02d}", "arch": pop.arch, "dataset": pop.dataset, "model": pop.model,
                "lr": 0.1, "dropout": 0.0, "seed": i, "optimizer": "sgd",
                "status": "diverged" if diverged else "finished", "diverged": diverged,
                "epochs_trained": 2 if diverged else pop.epochs,
                "early_stop_epoch": 1 if diverged else int(rng.integers(1, pop.epochs + 1)),
                "final_acc": float("nan") if diverged else float(rng.uniform(10, 95)),
                "train_seconds": 4.0, "epoch_seconds": float(rng.uniform(0.5, 1.5)),
            })
    return pd.DataFrame(rows)


def synthetic_q1(profile: str = "smoke", seeds: tuple[int, ...] = (0, 1, 2), seed: int = 0) -> pd.DataFrame:
    """A tidy ``q1.csv``: every architecture, feature set, mode, classifier, t and fold seed."""
    rng = np.random.default_rng(seed)
    p = get_profile(profile)
    rows = []
    for pop in p.populations:
        for fs in SYNTH_FEATURES:
            for mode in (p.modes if fs in GRAPH else ("plain",)):
                for clf in p.classifiers:
                    for t in range(1, pop.t_max + 1):
                        for s in seeds:
                            rows.append({
                                "dataset": pop.dataset, "arch": pop.arch, "feature_set": fs, "mode": mode,
                                "classifier": clf, "t": t, "fold_seed": s,
                                "accuracy": float(np.clip(0.55 + 0.1 * t + rng.normal(0, 0.05), 0, 1)),
                                "spearman": float(rng.uniform(-1, 1)),
                                "threshold": pop.threshold, "n_networks": 8, "n_high": 3,
                            })
    return pd.DataFrame(rows)


def synthetic_q2(profile: str = "smoke", seeds: tuple[int, ...] = (0, 1), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = get_profile(profile)
    rows = []
    for tr in p.transfers:
        t_max = p.population(tr.test).t_max
        for fs in ("deg", "evec", "learning-curve"):
            for mode in (p.modes if fs in GRAPH else ("plain",)):
                for clf in p.classifiers:
                    for t in range(1, t_max + 1):
                        for s in seeds:
                            rows.append({"transfer": tr.name, "train_archs": "+".join(tr.train), "test_arch": tr.test,
                                         "feature_set": fs, "mode": mode, "classifier": clf, "t": t, "seed": s,
                                         "accuracy": float(rng.uniform(0.4, 1.0)), "spearman": 0.1})
    return pd.DataFrame(rows)


def synthetic_q3(profile: str = "smoke") -> pd.DataFrame:
    from paperlib.files import Q3_COLUMNS

    p = get_profile(profile)
    rows = []
    for k, pop in enumerate(p.populations):
        r = {c: 0.01 * (k + 1) for c in Q3_COLUMNS}
        r.update({"dataset": pop.dataset, "arch": pop.arch, "t_needed": 2, "t_rule": "synthetic",
                  "train_to_early_stop_seconds": 10.0 * (k + 1), "unrolled_explicit_note": "",
                  "unrolled_explicit_total_seconds": float("nan") if k == 0 else 1.0})
        rows.append(r)
    return pd.DataFrame(rows, columns=Q3_COLUMNS)


@pytest.fixture
def tmp_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Redirect ``results/`` and ``figures/`` (not ``results/published``) to a temporary folder."""
    monkeypatch.setattr(paths, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(paths, "FIGURES", tmp_path / "figures")
    monkeypatch.delenv("PAPERLIB_STORE", raising=False)  # the run store under the temporary results too
    return tmp_path


@pytest.fixture
def synthetic_smoke(tmp_results: Path) -> Path:
    """Synthetic runs.csv, q1.csv, q2.csv and q3.csv of the smoke profile in a temporary results folder."""
    out = paths.ensure(paths.results_dir("smoke"))
    write_result(out / "runs.csv", synthetic_runs())
    write_result(out / "q1.csv", synthetic_q1())
    write_result(out / "q2.csv", synthetic_q2())
    write_result(out / "q3.csv", synthetic_q3())
    return out
