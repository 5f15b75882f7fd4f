"""Named feature sets, ours and the baselines, per run and per epoch (step S3).

Every feature set is computed for every run of a population and every epoch
``0..T`` (``T`` = the population's ``t_max``, or fewer where no run trained that
long) and cached as one array of shape ``(n_runs, T + 1, k + 1)``: ``k`` values per
epoch and a last column that flags replaced values (see *Diverged networks*).
The experiments then pick epochs ``1..t`` (graph signatures, learning curve) or
epoch ``t`` alone (weight baselines) with the transformers of
:mod:`paperlib.signatures`.

==================  =========================================================  ======  ============
name                per epoch                                                  k       epochs used
==================  =========================================================  ======  ============
``deg``             signature of the weighted degree, rolled graph             5       1..t
``evec``            signature of the eigenvector centrality, rolled graph      5       1..t
``unroll-deg``      signature of the weighted degree, unrolled graph           5       1..t
``unroll-evec``     signature of the eigenvector centrality, unrolled graph    5       1..t
``B_Wl``            last layer, flattened: weights (row-major), then biases   in*out  t
``B_What``          mean, variance, percentiles 0/25/50/75/100 of ``B_Wl``      7       t
``B_Wprime``        the five signature aggregators of ``B_Wl``                 5       t
``learning-curve``  test accuracy (%) after the epoch                          1       1..t
==================  =========================================================  ======  ============

Choices stated here once:

* **Epochs of the baselines.** The weight baselines (after Unterthiner et al.,
  2020) read the snapshot of epoch ``t`` only: the same information horizon as a
  temporal signature up to ``t``, and the setting in which the paper compares
  them at "the last timestamp t". The variance of ``B_What`` is the population
  variance (``ddof=0``); percentiles are ``numpy.percentile``'s linear ones.
* **The learning curve**, the baseline the paper left out, is the sequence of
  test accuracies after epochs ``1..t`` from the run's history.
* **Runs that stopped before epoch t** (early stopping, divergence) keep their
  last snapshot: the network does not change after training stops, so its
  features at later epochs are those of its last trained epoch (forward fill).
* **Diverged networks.** A snapshot with non-finite weights gives non-finite
  centralities and signatures (:func:`paperlib.signatures.aggregate`). All the
  values of such an epoch are replaced by ``FILL_VALUE`` (0.0) and the epoch's
  flag column is set to 1.0 (0.0 everywhere else), so every feature is finite and a classifier can
  still tell a diverged network apart. Diverged runs stay in the data set with
  the label "low".
* **Labels.** A network is "high" when its final test accuracy is at least the
  population's threshold (``Population.threshold``); diverged runs and runs
  without a final accuracy are "low".

:func:`build_profile_features` writes the arrays to
``<store>/features/<arch>.npz`` and an index to ``results/<profile>/features.csv``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from . import paths
from .profiles import Population, Profile
from .signatures import AGGREGATORS, aggregate_rows
from .store import Run, load_npz, load_tensors, save_npz

FILL_VALUE = 0.0
WEIGHT_STATS: tuple[str, ...] = ("mean", "var", "p0", "p25", "p50", "p75", "p100")


@dataclass(frozen=True)
class FeatureSet:
    """One named feature set.

    ``source`` is what it is computed from ("rolled", "unrolled", "last-layer",
    "history"); ``temporal`` says whether epochs ``1..t`` are concatenated (else
    epoch ``t`` alone); ``modes`` are the signature modes that apply to it.
    """

    name: str
    source: str
    columns: tuple[str, ...] | None  # per-epoch column names; None: the flattened last layer
    temporal: bool
    modes: tuple[str, ...]
    description: str


_GRAPH_MODES = ("plain", "wavg", "expavg")
FEATURE_SETS: dict[str, FeatureSet] = {
    fs.name: fs
    for fs in (
        FeatureSet("deg", "rolled", AGGREGATORS, True, _GRAPH_MODES, "weighted degree, rolled graph"),
        FeatureSet("evec", "rolled", AGGREGATORS, True, _GRAPH_MODES, "eigenvector centrality, rolled graph"),
        FeatureSet("unroll-deg", "unrolled", AGGREGATORS, True, _GRAPH_MODES, "weighted degree, unrolled graph"),
        FeatureSet("unroll-evec", "unrolled", AGGREGATORS, True, _GRAPH_MODES,
                   "eigenvector centrality, unrolled graph"),
        FeatureSet("B_Wl", "last-layer", None, False, ("plain",), "last layer's weights and biases, flattened"),
        FeatureSet("B_What", "last-layer", WEIGHT_STATS, False, ("plain",),
                   "mean, variance, percentiles 0/25/50/75/100 of the last layer"),
        FeatureSet("B_Wprime", "last-layer", AGGREGATORS, False, ("plain",),
                   "the five signature aggregators of the last layer"),
        FeatureSet("learning-curve", "history", ("test_acc",), True, ("plain",), "test accuracy after each epoch"),
    )
}


def feature_set(name: str) -> FeatureSet:
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise KeyError(f"unknown feature set {name!r}; choose one of {sorted(FEATURE_SETS)}") from None


# --------------------------------------------------------------------------- per-epoch values
def weight_stats(values: np.ndarray) -> np.ndarray:
    """``B_What`` of every row: mean, variance (ddof=0), percentiles 0/25/50/75/100 (NaN rows stay NaN)."""
    x = np.asarray(values, dtype=np.float64)
    out = np.full((x.shape[0], len(WEIGHT_STATS)), np.nan)
    ok = np.isfinite(x).all(axis=1)
    if ok.any():
        v = x[ok]
        out[ok] = np.column_stack([v.mean(axis=1), v.var(axis=1),
                                   np.percentile(v, [0, 25, 50, 75, 100], axis=1).T])
    return out


def last_layer(state_dict: dict[str, Any]) -> np.ndarray:
    """The classifier's parameters, flattened: weight matrix (row-major), then bias.

    The classifier is the last ``nn.Linear`` registered in every model, so its
    weight is the last 2-D ``*weight`` entry of the state dict.
    """
    keys = list(state_dict)
    for key in reversed(keys):
        if key.endswith("weight") and getattr(state_dict[key], "ndim", 0) == 2:
            prefix = key[: -len("weight")]
            parts = [np.asarray(state_dict[key], dtype=np.float64).ravel()]
            if prefix + "bias" in state_dict:
                parts.append(np.asarray(state_dict[prefix + "bias"], dtype=np.float64).ravel())
            return np.concatenate(parts)
    raise ValueError("no 2-D weight (linear layer) in the state dict")


def _forward_fill(epochs: np.ndarray, rows: np.ndarray, n_epochs: int) -> np.ndarray:
    """Rows for epochs ``0..n_epochs-1``: the row of the latest available epoch <= e (NaN before any)."""
    epochs = np.asarray(epochs, dtype=int)
    out = np.full((n_epochs, rows.shape[1]), np.nan)
    order = np.argsort(epochs)
    epochs, rows = epochs[order], rows[order]
    idx = np.searchsorted(epochs, np.arange(n_epochs), side="right") - 1
    have = idx >= 0
    out[have] = rows[idx[have]]
    return out


def with_flag(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace every value of a row with a non-finite entry by ``FILL_VALUE``; append the flag column.

    ``values`` has shape ``(..., k)``; returns ``(..., k + 1)`` and the number of
    flagged rows.
    """
    bad = ~np.isfinite(values).all(axis=-1)
    out = np.concatenate([np.where(bad[..., None], FILL_VALUE, values), bad[..., None].astype(float)], axis=-1)
    return out, int(bad.sum())


# --------------------------------------------------------------------------- one population
@dataclass
class PopulationFeatures:
    """Cached features of one population: arrays ``(n_runs, n_epochs, k + 1)`` per feature set."""

    arch: str
    dataset: str
    keys: np.ndarray
    final_acc: np.ndarray
    diverged: np.ndarray
    epochs_trained: np.ndarray
    threshold: float
    t_available: int
    arrays: dict[str, np.ndarray]
    missing: dict[str, str]  # feature set -> why it is not available

    @property
    def labels(self) -> np.ndarray:
        return population_labels(self.final_acc, self.diverged, self.threshold)

    def matrix(self, name: str) -> np.ndarray:
        """``(n_runs, n_epochs * (k + 1))``: the input layout of the signature transformers."""
        a = self.arrays[name]
        return a.reshape(a.shape[0], -1)

    def width(self, name: str) -> int:
        return self.arrays[name].shape[2]


def population_labels(final_acc: np.ndarray, diverged: np.ndarray, threshold: float) -> np.ndarray:
    """1 ("high") where ``final_acc >= threshold`` and the run did not diverge, else 0."""
    acc = np.asarray(final_acc, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        high = np.nan_to_num(acc, nan=-np.inf) >= threshold
    return (high & ~np.asarray(diverged, dtype=bool)).astype(int)


def _safe_name(arch: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", arch)


def features_path(profile: str, arch: str) -> Path:
    return paths.store_dir(profile) / "features" / f"{_safe_name(arch)}.npz"


def _default_centralities() -> Callable[[Run, str], dict[str, np.ndarray]]:
    from . import temporal

    return temporal.load_centralities


def read_runs(profile: str) -> pd.DataFrame:
    """``results/<profile>/runs.csv``, written by the training step."""
    path = paths.results_dir(profile) / "runs.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no runs table; run the training notebook (01_train) first")
    return pd.read_csv(path)


def _diverged_column(df: pd.DataFrame) -> np.ndarray:
    if "diverged" in df:
        return df["diverged"].astype(str).str.lower().isin({"true", "1", "1.0"}).to_numpy()
    return (df.get("status", pd.Series("finished", index=df.index)) == "diverged").to_numpy()


def compute_population(
    pop: Population,
    runs: pd.DataFrame,
    runs_root: Path,
    names: tuple[str, ...],
    centralities: Callable[[Run, str], dict[str, np.ndarray]] | None = None,
) -> tuple[PopulationFeatures, list[dict[str, Any]]]:
    """Compute the feature sets ``names`` for every run of ``pop`` listed in ``runs``.

    Returns the features and one index row per feature set. A feature set whose
    source is missing for some run (e.g. no unrolled centralities) is left out
    and its reason recorded.
    """
    df = runs[runs["arch"] == pop.arch].sort_values("key").reset_index(drop=True)
    n = len(df)
    trained = df["epochs_trained"].fillna(0).astype(int).to_numpy() if "epochs_trained" in df else np.zeros(n, int)
    t_avail = int(min(pop.t_max, trained.max())) if n else 0
    n_epochs = t_avail + 1
    run_objs = [Run(Path(runs_root) / k) for k in df["key"]]
    arrays: dict[str, np.ndarray] = {}
    missing: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    by_source: dict[str, list[str]] = {}
    for name in names:
        by_source.setdefault(feature_set(name).source, []).append(name)

    for source, group in by_source.items():
        t0 = time.perf_counter()
        raw: dict[str, list[np.ndarray]] = {name: [] for name in group}
        reason = None
        try:
            for run, n_tr in zip(run_objs, trained):
                last = min(int(n_tr), t_avail)
                if source in ("rolled", "unrolled"):
                    if centralities is None:
                        centralities = _default_centralities()
                    c = centralities(run, source)
                    ep = np.asarray(c["epochs"], dtype=int)
                    keep = ep <= t_avail
                    for name in group:
                        key = "deg" if name.endswith("deg") else "evec"
                        vals = np.asarray(c[key], dtype=np.float64)[keep]
                        sig = aggregate_rows(vals)
                        if "finite" in c:
                            sig[~np.asarray(c["finite"], dtype=bool)[keep]] = np.nan
                        raw[name].append(_forward_fill(ep[keep], sig, n_epochs))
                elif source == "last-layer":
                    eps = [e for e in range(last + 1) if run.snapshot_path(e).exists()]
                    if not eps:
                        raise FileNotFoundError(f"{run.dir}: no snapshots")
                    w = np.stack([last_layer(load_tensors(run.snapshot_path(e))) for e in eps])
                    for name in group:
                        if name == "B_Wl":
                            vals = w
                        elif name == "B_What":
                            vals = weight_stats(w)
                        else:
                            vals = aggregate_rows(w)
                        raw[name].append(_forward_fill(np.array(eps), vals, n_epochs))
                elif source == "history":
                    hist = run.meta().get("history", [])
                    ep = np.array([h["epoch"] for h in hist if h["epoch"] <= t_avail], dtype=int)
                    acc = np.array([[np.nan if h.get("test_acc") is None else h["test_acc"]]
                                    for h in hist if h["epoch"] <= t_avail], dtype=np.float64).reshape(-1, 1)
                    raw[group[0]].append(_forward_fill(ep, acc, n_epochs))
                else:  # pragma: no cover - registry and code disagree
                    raise ValueError(f"unknown source {source!r}")
        except (FileNotFoundError, KeyError, ModuleNotFoundError) as exc:
            reason = f"{source} source unavailable: {type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t0
        for name in group:
            fs = feature_set(name)
            row = {"dataset": pop.dataset, "arch": pop.arch, "feature_set": name, "source": source,
                   "n_networks": n, "n_epochs": n_epochs, "t_available": t_avail,
                   "temporal": fs.temporal, "seconds": seconds / len(group),
                   "seconds_per_network": seconds / len(group) / max(n, 1)}
            if reason is not None or n == 0:
                missing[name] = reason or "no runs"
                row.update(status="missing", reason=missing[name], dim_per_epoch=0, n_flagged=0)
            else:
                stacked = np.stack(raw[name])
                arrays[name], flagged = with_flag(stacked)
                row.update(status="ok", reason="", dim_per_epoch=stacked.shape[2], n_flagged=flagged)
            rows.append(row)

    feats = PopulationFeatures(
        arch=pop.arch, dataset=pop.dataset, keys=df["key"].astype(str).to_numpy(),
        final_acc=df["final_acc"].to_numpy(dtype=np.float64), diverged=_diverged_column(df),
        epochs_trained=trained, threshold=float(pop.threshold), t_available=t_avail,
        arrays=arrays, missing=missing)
    for row in rows:
        row.update(threshold=pop.threshold, n_high=int(feats.labels.sum()),
                   n_stopped_before_t=int((trained < t_avail).sum()))
    return feats, rows


def save_population(path: Path, feats: PopulationFeatures) -> None:
    arrays = {f"fs:{k}": v for k, v in feats.arrays.items()}
    save_npz(path, keys=feats.keys.astype(str), final_acc=feats.final_acc, diverged=feats.diverged,
             epochs_trained=feats.epochs_trained, t_available=np.array(feats.t_available),
             threshold=np.array(feats.threshold), arch=np.array(feats.arch), dataset=np.array(feats.dataset),
             missing_names=np.array(list(feats.missing), dtype=str),
             missing_reasons=np.array(list(feats.missing.values()), dtype=str), **arrays)


def load_population_file(path: Path) -> PopulationFeatures:
    z = load_npz(path)
    return PopulationFeatures(
        arch=str(z["arch"]), dataset=str(z["dataset"]), keys=z["keys"], final_acc=z["final_acc"],
        diverged=z["diverged"].astype(bool), epochs_trained=z["epochs_trained"],
        threshold=float(z["threshold"]), t_available=int(z["t_available"]),
        arrays={k[3:]: v for k, v in z.items() if k.startswith("fs:")},
        missing=dict(zip(z["missing_names"].tolist(), z["missing_reasons"].tolist())))


INDEX_COLUMNS = ["dataset", "arch", "feature_set", "status", "reason", "source", "temporal", "n_networks",
                 "n_high", "threshold", "dim_per_epoch", "n_epochs", "t_available", "n_stopped_before_t",
                 "n_flagged", "seconds", "seconds_per_network"]


def build_profile_features(
    profile: Profile,
    centralities: Callable[[Run, str], dict[str, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """Compute and cache every feature set of the profile for every population.

    Parameters
    ----------
    profile : Profile
        Reads ``results/<profile>/runs.csv`` and the run store.
    centralities : callable, optional
        ``(run, kind) -> {"epochs", "deg", "evec", "finite"}``; defaults to
        ``paperlib.temporal.load_centralities``.

    Returns
    -------
    DataFrame
        One row per (population, feature set), also written to
        ``results/<profile>/features.csv``: status ("ok"/"missing" and why),
        networks, per-epoch dimension (without the flag column), epochs cached,
        flagged (non-finite) snapshots, and the seconds spent.
    """
    runs = read_runs(profile.name)
    rows: list[dict[str, Any]] = []
    for pop in profile.populations:
        feats, pop_rows = compute_population(pop, runs, paths.runs_dir(profile.name),
                                             tuple(profile.feature_sets), centralities)
        out = features_path(profile.name, pop.arch)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_population(out, feats)
        rows.extend(pop_rows)
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    paths.ensure(paths.results_dir(profile.name))
    index.to_csv(paths.results_dir(profile.name) / "features.csv", index=False)
    return index


def load_population(profile: Profile, arch: str) -> PopulationFeatures:
    """The cached features of one population (computed by :func:`build_profile_features`).

    Raises FileNotFoundError when the cache is missing and ValueError when it no
    longer matches ``runs.csv`` (re-run the features notebook).
    """
    path = features_path(profile.name, arch)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no cached features; run the features notebook (03_features) first")
    feats = load_population_file(path)
    runs = read_runs(profile.name)
    keys = np.sort(runs.loc[runs["arch"] == arch, "key"].astype(str).to_numpy())
    if not np.array_equal(keys, np.sort(feats.keys)):
        raise ValueError(f"{path}: cached features do not match runs.csv; re-run the features notebook")
    pop = profile.population(arch)
    feats.threshold = float(pop.threshold)
    return feats
