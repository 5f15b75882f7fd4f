"""Feature arrays of a population (step S3): computed from the run store, cached, and read back.

The feature sets are those of :mod:`paperlib.features.sets`; what every array holds is stated there.

Choices stated here once:

* **The information horizon** (:meth:`PopulationFeatures.alive`). At epoch ``t`` a
  network is *alive* when its epochs ``1..t`` were all trained and are finite: it
  did not diverge at or before ``t`` (``diverged_epoch > t``) and did not stop
  before ``t`` (``epochs_trained >= t``). Only alive networks enter an evaluation
  at ``t``; the others were *decided* before ``t`` and are counted
  (``n_decided`` in every result row), never filled in.
* **A missing epoch of an alive run is an error** naming the run directory: a
  snapshot, a centrality cache entry or a history entry that should exist and
  does not (or a non-finite value of a run that had not diverged) stops the step.
  A whole source that is absent for a run (no unrolled centralities computed)
  leaves that feature set out, with the reason.
* **Labels.** A network is "high" when its final test accuracy is at least the
  population's threshold (``Population.threshold``) and it did not diverge;
  diverged runs and runs without a final accuracy are "low".
* **Configurations** (:attr:`PopulationFeatures.groups`). Networks that share
  every hyperparameter but the seed (the ``runs.csv`` columns of
  :data:`CONFIG_COLUMNS` that are present) form one configuration; the
  evaluation keeps a configuration in one fold.

:func:`build_profile_features` writes the arrays to
``results/<profile>/features/<arch>.npz`` and an index to
``results/<profile>/features.csv``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .. import files, paths
from ..files import diverged, read_runs
from ..profile_types import Population, Profile
from ..train.store import Run, load_tensors
from .sets import (CONFIG_COLUMNS, SIZE_AWARE_SETS, MissingEpochError, feature_set, last_layer, size_aware,
                   weight_stats)
from .signatures import aggregate_rows


# --------------------------------------------------------------------------- one population
@dataclass
class PopulationFeatures:
    """Cached features of one population: arrays ``(n_runs, n_epochs, k)`` per stored feature set.

    ``groups`` is the integer id of every run's configuration (every hyperparameter but the
    seed); ``diverged_epoch`` is the epoch a run diverged (``np.inf`` when it never did).
    """

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
    groups: np.ndarray
    diverged_epoch: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return population_labels(self.final_acc, self.diverged, self.threshold)

    @property
    def n_runs(self) -> int:
        return len(self.keys)

    def alive(self, t: int) -> np.ndarray:
        """Boolean mask of the networks inside the information horizon at epoch ``t``.

        Alive: epochs ``1..t`` all trained and finite, i.e. not diverged at or before ``t``
        (``diverged_epoch > t``) and not stopped before ``t`` (``epochs_trained >= t``).
        Only these networks may enter an evaluation at ``t``.
        """
        t = int(t)
        return (np.asarray(self.epochs_trained) >= t) & (np.asarray(self.diverged_epoch, dtype=float) > t)

    def available(self, name: str) -> bool:
        fs = feature_set(name)
        if fs.source == "derived":
            return all(self.available(p) for p in fs.parts)
        return name in self.arrays

    def why_missing(self, name: str) -> str:
        fs = feature_set(name)
        if fs.source == "derived":
            return "; ".join(f"{p}: {self.why_missing(p)}" for p in fs.parts if not self.available(p))
        return self.missing.get(name, "not computed")

    def array(self, name: str) -> np.ndarray:
        """``(n_runs, n_epochs, k)`` of a stored or derived feature set (NaN where no snapshot)."""
        fs = feature_set(name)
        if not self.available(name):
            raise KeyError(f"{self.arch}: feature set {name!r} is not available ({self.why_missing(name)})")
        if fs.source != "derived":
            return self.arrays[name]
        if name in SIZE_AWARE_SETS:
            return size_aware(self.array(fs.parts[0]))
        return np.concatenate([self.array(p) for p in fs.parts], axis=2)

    def matrix(self, name: str) -> np.ndarray:
        """``(n_runs, n_epochs * k)``: the input layout of the signature transformers."""
        a = self.array(name)
        return a.reshape(a.shape[0], -1)

    def width(self, name: str) -> int:
        return self.array(name).shape[2]


def population_labels(final_acc: np.ndarray, diverged: np.ndarray, threshold: float) -> np.ndarray:
    """1 ("high") where ``final_acc >= threshold`` and the run did not diverge, else 0."""
    acc = np.asarray(final_acc, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        high = np.nan_to_num(acc, nan=-np.inf) >= threshold
    return (high & ~np.asarray(diverged, dtype=bool)).astype(int)


def configuration_groups(df: pd.DataFrame) -> np.ndarray:
    """Integer id of each row's configuration: equal values in every present :data:`CONFIG_COLUMNS` column.

    Ids are numbered in order of first appearance. Raises ValueError when no configuration
    column is present (the seed alone cannot define a group).
    """
    cols = [c for c in CONFIG_COLUMNS if c in df.columns]
    if not cols:
        raise ValueError(f"runs.csv has none of the configuration columns {CONFIG_COLUMNS}; cannot group seeds")
    key = df[cols].astype(object).where(df[cols].notna(), "").astype(str).agg("|".join, axis=1)  # empty: ""
    return pd.factorize(key)[0].astype(int)


def _default_centralities() -> Callable[[Run, str], dict[str, np.ndarray]]:
    from ..graph import temporal

    return temporal.load_centralities


def _diverged_column(df: pd.DataFrame) -> np.ndarray:
    return diverged(df).to_numpy()


def _diverged_epoch_column(df: pd.DataFrame, diverged: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """Epoch of divergence (``inf`` when never); a diverged run without one diverged at its last epoch."""
    if "diverged_epoch" in df:
        ep = pd.to_numeric(df["diverged_epoch"], errors="coerce").to_numpy(dtype=float)
    else:
        ep = np.full(len(df), np.nan)
    ep = np.where(diverged & np.isnan(ep), trained.astype(float), ep)
    return np.where(diverged, ep, np.inf)


def _fill_epochs(run: Run, epochs: np.ndarray, rows: np.ndarray, n_epochs: int, need: int, what: str) -> np.ndarray:
    """Rows for epochs ``0..n_epochs-1`` from the given ``epochs`` (NaN where absent).

    Every epoch ``1..need`` must be present and finite (the run is alive there): else
    :class:`MissingEpochError` naming the run directory.
    """
    out = np.full((n_epochs, rows.shape[1]), np.nan)
    epochs = np.asarray(epochs, dtype=int)
    keep = (epochs >= 0) & (epochs < n_epochs)
    out[epochs[keep]] = rows[keep]
    for e in range(1, need + 1):
        if e not in set(epochs[keep].tolist()):
            raise MissingEpochError(f"{run.dir}: {what} of epoch {e} is missing, but the run trained it and was "
                                    "alive then; recompute it (never filled from another epoch)")
        if not np.isfinite(out[e]).all():
            raise MissingEpochError(f"{run.dir}: {what} of epoch {e} is not finite, but the run had not diverged "
                                    "by then")
    return out


def compute_population(
    pop: Population,
    runs: pd.DataFrame,
    runs_root: Path,
    names: tuple[str, ...],
    centralities: Callable[[Run, str], dict[str, np.ndarray]] | None = None,
) -> tuple[PopulationFeatures, list[dict[str, Any]]]:
    """Compute the stored feature sets ``names`` for every run of ``pop`` listed in ``runs``.

    Returns the features and one index row per feature set. A feature set whose
    source is absent for some run (e.g. no unrolled centralities) is left out and
    its reason recorded; an epoch missing inside a run's alive range is an error
    (:class:`MissingEpochError`).
    """
    df = runs[runs["arch"] == pop.arch].sort_values("key").reset_index(drop=True)
    n = len(df)
    trained = df["epochs_trained"].fillna(0).astype(int).to_numpy() if "epochs_trained" in df else np.zeros(n, int)
    diverged = _diverged_column(df)
    div_epoch = _diverged_epoch_column(df, diverged, trained)
    t_avail = int(min(pop.t_max, trained.max())) if n else 0
    n_epochs = t_avail + 1
    # last epoch of each run inside its alive range (and the cached range)
    alive_to = np.minimum(np.minimum(trained, t_avail), np.where(np.isfinite(div_epoch), div_epoch - 1, 10**9))
    alive_to = alive_to.astype(int)
    run_objs = [Run(Path(runs_root) / k) for k in df["key"]]
    arrays: dict[str, np.ndarray] = {}
    missing: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    by_source: dict[str, list[str]] = {}
    for name in names:
        fs = feature_set(name)
        if fs.source == "derived":
            raise ValueError(f"{name!r} is derived from {fs.parts}; it is not stored (list the parts instead)")
        by_source.setdefault(fs.source, []).append(name)

    for source, group in by_source.items():
        t0 = time.perf_counter()
        raw: dict[str, list[np.ndarray]] = {name: [] for name in group}
        reason = None
        for run, n_tr, need in zip(run_objs, trained, alive_to):
            last = min(int(n_tr), t_avail)
            try:
                if source in ("rolled", "unrolled"):
                    if centralities is None:
                        centralities = _default_centralities()
                    c = centralities(run, source)
                elif source == "history":
                    hist = run.meta().get("history", [])
            except (FileNotFoundError, KeyError, ModuleNotFoundError) as exc:
                reason = f"{source} source unavailable for {run.dir.name}: {type(exc).__name__}: {exc}"
                break
            if source in ("rolled", "unrolled"):
                ep = np.asarray(c["epochs"], dtype=int)
                keep = ep <= t_avail
                for name in group:
                    key = "deg" if name.endswith("deg") else "evec"
                    sig = aggregate_rows(np.asarray(c[key], dtype=np.float64)[keep])
                    if "finite" in c:
                        sig[~np.asarray(c["finite"], dtype=bool)[keep]] = np.nan
                    raw[name].append(_fill_epochs(run, ep[keep], sig, n_epochs, need, f"{source} {key} centrality"))
            elif source == "last-layer":
                eps = []
                for e in range(last + 1):
                    if run.snapshot_path(e).exists():
                        eps.append(e)
                    elif e <= need:
                        raise MissingEpochError(f"{run.dir}: snapshot of epoch {e} is missing, but the run trained "
                                                "it and was alive then; retrain the run (01_train)")
                w_rows = [last_layer(load_tensors(run.snapshot_path(e))) for e in eps]
                sizes = {len(r) for r in w_rows}
                if len(sizes) > 1:
                    raise ValueError(f"{run.dir}: last layer changes size between snapshots ({sorted(sizes)})")
                w = np.stack(w_rows)
                for name in group:
                    vals = w if name == "B_Wl" else weight_stats(w) if name == "B_What" else aggregate_rows(w)
                    raw[name].append(_fill_epochs(run, np.array(eps), vals, n_epochs, need, "last layer"))
            elif source == "history":
                ep = np.array([h["epoch"] for h in hist if h["epoch"] <= t_avail], dtype=int)
                acc = np.array([[np.nan if h.get("test_acc") is None else h["test_acc"]]
                                for h in hist if h["epoch"] <= t_avail], dtype=np.float64).reshape(-1, 1)
                raw[group[0]].append(_fill_epochs(run, ep, acc, n_epochs, need, "test accuracy (history)"))
            else:  # pragma: no cover - registry and code disagree
                raise ValueError(f"unknown source {source!r}")
        seconds = time.perf_counter() - t0
        for name in group:
            fs = feature_set(name)
            row = {"dataset": pop.dataset, "arch": pop.arch, "feature_set": name, "source": source,
                   "n_networks": n, "n_epochs": n_epochs, "t_available": t_avail,
                   "temporal": fs.temporal, "seconds": seconds / len(group),
                   "seconds_per_network": seconds / len(group) / max(n, 1)}
            if reason is not None or n == 0:
                missing[name] = reason or "no runs"
                row.update(status="missing", reason=missing[name], dim_per_epoch=0, n_nan_epochs=0)
            else:
                stacked = np.stack(raw[name])
                arrays[name] = stacked
                row.update(status="ok", reason="", dim_per_epoch=stacked.shape[2],
                           n_nan_epochs=int((~np.isfinite(stacked[:, 1:]).all(axis=2)).sum()))
            rows.append(row)

    feats = PopulationFeatures(
        arch=pop.arch, dataset=pop.dataset, keys=df["key"].astype(str).to_numpy(),
        final_acc=df["final_acc"].to_numpy(dtype=np.float64), diverged=diverged,
        epochs_trained=trained, threshold=float(pop.threshold), t_available=t_avail,
        arrays=arrays, missing=missing, groups=configuration_groups(df) if n else np.zeros(0, int),
        diverged_epoch=div_epoch)
    for row in rows:
        row.update(threshold=pop.threshold, n_high=int(feats.labels.sum()),
                   n_configurations=int(len(np.unique(feats.groups))),
                   n_diverged_by_t=int((div_epoch <= t_avail).sum()),
                   n_stopped_before_t=int((trained < t_avail).sum()),
                   n_alive_at_t=int(feats.alive(t_avail).sum()) if t_avail else n)
    return feats, rows


def save_population(path: Path, feats: PopulationFeatures) -> None:
    """Write the features of one population (:func:`paperlib.files.write_features`)."""
    fields = {"keys": feats.keys.astype(str), "final_acc": feats.final_acc, "diverged": feats.diverged,
              "epochs_trained": feats.epochs_trained, "t_available": np.array(feats.t_available),
              "threshold": np.array(feats.threshold), "arch": np.array(feats.arch),
              "dataset": np.array(feats.dataset), "groups": feats.groups, "diverged_epoch": feats.diverged_epoch,
              "missing_names": np.array(list(feats.missing), dtype=str),
              "missing_reasons": np.array(list(feats.missing.values()), dtype=str)}
    files.write_features(path, fields, feats.arrays)


def load_population_file(path: Path) -> PopulationFeatures:
    """The features of one population as :func:`save_population` wrote them."""
    z, arrays = files.read_features(path)
    return PopulationFeatures(
        arch=str(z["arch"]), dataset=str(z["dataset"]), keys=z["keys"], final_acc=z["final_acc"],
        diverged=z["diverged"].astype(bool), epochs_trained=z["epochs_trained"],
        threshold=float(z["threshold"]), t_available=int(z["t_available"]), arrays=arrays,
        missing=dict(zip(z["missing_names"].tolist(), z["missing_reasons"].tolist())),
        groups=z["groups"].astype(int), diverged_epoch=z["diverged_epoch"].astype(float))


def build_profile_features(
    profile: Profile,
    centralities: Callable[[Run, str], dict[str, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """Compute and cache every stored feature set of the profile for every population.

    Parameters
    ----------
    profile : Profile
        Reads ``results/<profile>/runs.csv`` and the run store.
    centralities : callable, optional
        ``(run, kind) -> {"epochs", "deg", "evec", "finite"}``; defaults to
        ``paperlib.graph.temporal.load_centralities``.

    Returns
    -------
    DataFrame
        One row per (population, feature set), also written to
        ``results/<profile>/features.csv``: status ("ok"/"missing" and why), networks,
        configurations, per-epoch dimension, epochs cached, networks alive at the last t,
        diverged by it and stopped before it, NaN epochs (diverged snapshots), and the
        seconds spent.
    """
    runs = read_runs(profile.name)
    names = tuple(n for n in profile.feature_sets if feature_set(n).source != "derived")
    rows: list[dict[str, Any]] = []
    computed = []
    for pop in profile.populations:
        feats, pop_rows = compute_population(pop, runs, paths.runs_dir(profile.name), names, centralities)
        computed.append((pop, feats))
        rows.extend(pop_rows)
    for pop, feats in computed:  # write only once every population is computed
        out = files.features_path(profile.name, pop.arch)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_population(out, feats)
    index = pd.DataFrame(rows, columns=files.FEATURE_INDEX_COLUMNS)
    files.write_table(profile, "features.csv", index)
    return index


def load_population(profile: Profile, arch: str) -> PopulationFeatures:
    """The cached features of one population (computed by :func:`build_profile_features`).

    Raises FileNotFoundError when the cache is missing and ValueError when it no
    longer matches ``runs.csv`` (re-run the features notebook).
    """
    path = files.features_path(profile.name, arch)
    feats = load_population_file(path)
    runs = read_runs(profile.name)
    keys = np.sort(runs.loc[runs["arch"] == arch, "key"].astype(str).to_numpy())
    if not np.array_equal(keys, np.sort(feats.keys)):
        raise ValueError(f"{path}: cached features do not match runs.csv; re-run the features notebook")
    pop = profile.population(arch)
    feats.threshold = float(pop.threshold)
    return feats
