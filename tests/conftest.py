"""Shared fixtures: one run of the smoke pipeline per test session, and synthetic result tables."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paperlib import paths
from paperlib.profiles import get_profile


@dataclass
class PipelineRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@pytest.fixture(scope="session")
def smoke_pipeline() -> PipelineRun:
    """Run ``python -m paperlib.pipeline --profile smoke`` once per session (shared by every test).

    Fails the dependent tests, not the session, when the pipeline fails: the output is kept in
    the returned record for their messages.
    """
    import time

    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "paperlib.pipeline", "--profile", "smoke", "--no-progress"],
        cwd=paths.ROOT, capture_output=True, text=True, timeout=1200,
    )
    return PipelineRun(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0)


# --------------------------------------------------------------------------- synthetic results
SYNTH_FEATURES = ("deg", "evec", "unroll-deg", "unroll-evec", "B_Wl", "B_What", "B_Wprime", "learning-curve")
GRAPH = {"deg", "evec", "unroll-deg", "unroll-evec"}


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
    from paperlib.timing import Q3_COLUMNS

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
    return tmp_path


@pytest.fixture
def synthetic_smoke(tmp_results: Path) -> Path:
    """Synthetic runs.csv, q1.csv, q2.csv and q3.csv of the smoke profile in a temporary results folder."""
    out = paths.ensure(paths.results_dir("smoke"))
    synthetic_runs().to_csv(out / "runs.csv", index=False)
    synthetic_q1().to_csv(out / "q1.csv", index=False)
    synthetic_q2().to_csv(out / "q2.csv", index=False)
    synthetic_q3().to_csv(out / "q3.csv", index=False)
    return out
