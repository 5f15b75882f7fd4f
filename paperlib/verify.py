"""``make verify``: the artifact checks its committed results, in minutes, without writing to them.

``python -m paperlib.verify [--profile default] [--per-arch 3] [--seed N]`` runs three checks,
each in a temporary project root (``PAPERLIB_ROOT``), and prints one report:

1. **Training.** A random sample of the committed networks (``--per-arch`` per architecture,
   3 by default, 1 for the Fashion-MNIST profiles: :data:`PER_ARCH`;
   ``--seed`` picks them, a fresh seed each time unless given, and the report prints it) is
   retrained from its specification, and the SHA-256 of every snapshot is compared with
   ``results/<profile>/snapshots.csv`` (the index 01_train commits: key, epoch, bytes, SHA-256 of
   every snapshot, not the snapshots); the retrained rows of ``runs.csv`` are compared with the
   committed rows.
2. **Graphs and features.** 02_graph and 03_features run on the retrained networks, and their
   feature arrays are compared, row by row, with the committed ``features/<arch>.npz``.
3. **Evaluation.** 04_q1, 05_q2, 06_q3 and 07_early_stopping run from copies of the committed
   inputs, and every file they declare as an output is compared with the committed one.

Every comparison is exact (bytes, then cell by cell for the first difference), except what is a
measurement: ``q3.csv``'s seconds and the counts of timed repeats, Fig. 5, and the ``q3``
section of ``metrics.json`` (06 times the graph code on this machine); for those the report
says ``measured`` and compares the rest (sizes, counts, rules). Nothing under ``results/`` or
``figures/`` is written. The exit status is 0 only when every check holds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import files, paths

EVALUATION_STEPS = ("04_q1", "05_q2", "06_q3", "07_early_stopping")
#: outputs that measure this machine (compared in their decided parts only)
MEASURED_FILES = {"figures/{profile}/fig5.png", "figures/{profile}/fig5.pdf"}


def _q3_measured(column: str) -> bool:
    return "seconds" in column or "speedup" in column or "overhead" in column or column.endswith("_runs")


@dataclass
class Check:
    what: str  # file or item, relative to the root
    verdict: str  # "identical", "measured" or "DIFFERENT"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict != "DIFFERENT"


# --------------------------------------------------------------------------- comparisons
def _first_csv_difference(new: pd.DataFrame, old: pd.DataFrame, skip=lambda c: False) -> str | None:
    cols_new, cols_old = [c for c in new.columns if not skip(c)], [c for c in old.columns if not skip(c)]
    if cols_new != cols_old:
        return f"columns differ: {sorted(set(cols_new) ^ set(cols_old)) or 'order'}"
    if len(new) != len(old):
        return f"{len(new)} rows, committed {len(old)}"
    for i in range(len(new)):
        for c in cols_new:
            a, b = new.iat[i, new.columns.get_loc(c)], old.iat[i, old.columns.get_loc(c)]
            if a != b and not (pd.isna(a) and pd.isna(b)):
                return f"first difference: data row {i + 1}, column {c!r}: {a!r} (committed {b!r})"
    return None


def compare_csv(new: Path, old: Path, name: str, measured=None) -> Check:
    """Exact comparison of two CSV files: bytes, or the first differing row and column."""
    if not new.exists():
        return Check(name, "DIFFERENT", "not written by the rerun")
    if not old.exists():
        return Check(name, "DIFFERENT", "no committed file to compare with")
    if measured is None and new.read_bytes() == old.read_bytes():
        return Check(name, "identical")
    a = files.read_cells(new)
    b = files.read_cells(old)
    diff = _first_csv_difference(a, b, measured or (lambda c: False))
    if diff is None and measured is not None:
        n = sum(1 for c in a.columns if measured(c))
        return Check(name, "measured", f"{n} timing columns not compared, {len(a.columns) - n} others identical")
    return Check(name, "DIFFERENT", diff or "bytes differ (line endings or quoting)")


def _json_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}/{k}: only in {'the rerun' if k in a else 'the committed file'}"
            d = _json_difference(a[k], b[k], f"{path}/{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            d = _json_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    same = a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)  # NaN is NaN
    return None if same else f"{path or '/'}: {a!r} (committed {b!r})"


def compare_bytes(new: Path, old: Path, name: str) -> Check:
    """Exact comparison of two files; for ``.npz`` and ``.json`` the first differing entry."""
    if not new.exists():
        return Check(name, "DIFFERENT", "not written by the rerun")
    if not old.exists():
        return Check(name, "DIFFERENT", "no committed file to compare with")
    if new.read_bytes() == old.read_bytes():
        return Check(name, "identical")
    if new.suffix == ".json":
        return Check(name, "DIFFERENT", _json_difference(json.loads(new.read_text()), json.loads(old.read_text()))
                     or "bytes differ (formatting)")
    if new.suffix == ".npz":
        with np.load(new, allow_pickle=False) as za, np.load(old, allow_pickle=False) as zb:
            for k in sorted(set(za.files) | set(zb.files)):
                if k not in za.files or k not in zb.files:
                    return Check(name, "DIFFERENT", f"array {k!r} only in one of them")
                x, y = za[k], zb[k]
                if x.shape != y.shape or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                    idx = "shape" if x.shape != y.shape else tuple(int(i) for i in np.argwhere(
                        ~((x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else x == y))[0])
                    return Check(name, "DIFFERENT", f"array {k!r} differs first at {idx}")
        return Check(name, "DIFFERENT", "bytes differ (archive layout)")
    return Check(name, "DIFFERENT", f"bytes differ ({new.stat().st_size} vs {old.stat().st_size} bytes)")


# --------------------------------------------------------------------------- the temporary roots
def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PAPERLIB_STORE", "PAPERLIB_ROOT"}}
    env["PAPERLIB_ROOT"] = str(root)
    env.setdefault("PAPERLIB_DATA", str(paths.data_root()))  # the datasets stay where they are (fmnist)
    env["PYTHONPATH"] = os.pathsep.join([str(paths.CODE), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                          if p]])
    return env


def _root(dest: Path, profile: str, files: list[str]) -> Path:
    """A project root: the notebooks, the paper's numbers, and copies of ``files`` of ``results/<profile>``."""
    (dest / "notebooks").mkdir(parents=True)
    for nb in paths.NOTEBOOKS.glob("*.ipynb"):
        shutil.copy2(nb, dest / "notebooks" / nb.name)
    shutil.copytree(paths.PUBLISHED, dest / "results" / "published")
    for rel in files:
        src = paths.results_dir(profile) / rel
        dst = dest / "results" / profile / rel
        if src.is_dir():
            shutil.copytree(src, dst)
        elif src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return dest


def _run(args: list[str], root: Path, log: Path) -> int:
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(args)}\n")
        fh.flush()
        return subprocess.run([sys.executable, *args], cwd=root, env=_env(root), stdout=fh,
                              stderr=subprocess.STDOUT).returncode


def _pipeline(root: Path, profile: str, steps: tuple[str, ...], log: Path) -> int:
    return _run(["-m", "paperlib.pipeline", "--profile", profile, "--no-progress",
                 *[a for s in steps for a in ("--only", s)]], root, log)


# --------------------------------------------------------------------------- 1 + 2: a sample retrained
def sample(runs: pd.DataFrame, per_arch: int, seed: int) -> list[str]:
    """``per_arch`` keys per architecture, drawn with ``seed`` (sorted keys, so any machine draws the same).

    With a ``replicate`` column (:func:`_committed_runs`), an architecture's draws are spread over the
    population replicates: replicate r gets ``per_arch // R`` of them, plus one for the first
    ``per_arch % R`` replicates counted from the architecture's position (so a small sample still
    reaches every replicate across architectures).
    """
    rng = random.Random(seed)
    keys = []
    for i, arch in enumerate(sorted(runs["arch"].unique())):
        sub = runs[runs["arch"] == arch]
        reps = sorted(sub["replicate"].unique()) if "replicate" in sub.columns else [None]
        for j, r in enumerate(reps):
            n = per_arch // len(reps) + ((j - i) % len(reps) < per_arch % len(reps))
            pool = sorted((sub["key"] if r is None else sub.loc[sub["replicate"] == r, "key"]).astype(str))
            keys += rng.sample(pool, min(n, len(pool)))
    return keys


def _replicates(profile: str) -> list[str]:
    """The names of the population replicates of ``profile`` (``<profile>``, ``<profile>/r1``, ...)."""
    from .profiles import effective_profile

    return [r.name for r in effective_profile(profile).replicate_profiles()]


def _committed_runs(profile: str, name: str = "runs.csv", base: Path | None = None) -> pd.DataFrame:
    """``name`` of every replicate of ``profile`` (under ``base``, default ``results/``), with a ``replicate`` column."""
    base = paths.RESULTS if base is None else base
    return pd.concat([files.read_cells(base / rp / name).assign(replicate=r)
                      for r, rp in enumerate(_replicates(profile)) if (base / rp / name).exists()],
                     ignore_index=True)


def _train_sample(profile: str, keys: list[str]) -> None:
    """In a temporary root (``PAPERLIB_ROOT``): train the runs of ``keys`` and write their runs.csv and
    snapshots.csv there. Run as ``python -m paperlib.verify --train-keys ...``."""
    from . import files
    from .train import populations, trainer as train
    from .profiles import effective_profile
    from .train.store import spec_key

    P = effective_profile(profile)
    by_key = {spec_key(spec): (arch, spec, R.name) for R in P.replicate_profiles() for arch, spec in train.profile_specs(R)}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise SystemExit(f"verify: no specification of profile {profile!r} has the committed keys {unknown[:3]}: "
                         "the code that trained the committed networks is not this code")
    for rep in dict.fromkeys(by_key[k][2] for k in keys):  # each replicate's sampled runs in its own folder
        pairs = [by_key[k][:2] for k in keys if by_key[k][2] == rep]
        df = populations.train_specs(paths.runs_dir(profile), pairs, workers=P.workers, checksums=True)
        files.write_table(rep, "runs.csv", df)
        files.write_table(rep, "snapshots.csv", populations.snapshot_index(paths.runs_dir(profile), pairs))


def check_training(profile: str, per_arch: int, seed: int, work: Path, log: Path) -> tuple[list[Check], Path]:
    committed = _committed_runs(profile)
    keys = sample(committed, per_arch, seed)
    root = _root(work / "retrain", profile, ["overrides.json"])
    rc = _run(["-m", "paperlib.verify", "--profile", profile, "--train-keys", ",".join(keys)], root, log)
    if rc != 0:
        return [Check("training of the sample", "DIFFERENT", f"failed (exit {rc}); see {log}")], root
    checks, same = [], {}
    new_idx = _committed_runs(profile, "snapshots.csv", root / "results").drop(columns="replicate")
    old_idx = _committed_runs(profile, "snapshots.csv").drop(columns="replicate")
    for key in keys:
        a = new_idx[new_idx["key"] == key].reset_index(drop=True)
        b = old_idx[old_idx["key"] == key].reset_index(drop=True)
        arch = committed.loc[committed["key"] == key, "arch"].iloc[0]
        diff = _first_csv_difference(a, b)
        same[key] = diff is None
        checks.append(Check(f"snapshots of {arch} network {key} ({len(b)} epochs)",
                            "identical" if diff is None else "DIFFERENT", diff or ""))
    new_runs = _committed_runs(profile, "runs.csv", root / "results").drop(columns="replicate")
    old_runs = _committed_runs(profile).drop(columns="replicate")
    old_runs = old_runs.set_index("key").loc[new_runs["key"]].reset_index()
    diff = _first_csv_difference(new_runs, old_runs)
    checks.append(Check(f"results/{profile}/runs.csv ({len(keys)} rows)", "identical" if diff is None else "DIFFERENT",
                        diff or ""))
    checks += network_differences(profile, new_runs, old_runs, same)
    return checks, root


def network_differences(profile: str, new_runs: pd.DataFrame, old_runs: pd.DataFrame,
                        same: dict[str, bool]) -> list[Check]:
    """What a retrained network that differs means for the results: its final accuracy beside the
    committed one, whether its high/low label (the population's threshold) agrees, its stopping
    epoch; and the counts identical / same label / other label."""
    from .profiles import effective_profile

    thresholds = {p.arch: p.threshold for p in effective_profile(profile).populations}
    old = old_runs.set_index("key")
    counts = {"identical": 0, "same label": 0, "other label": 0}
    checks = []
    for _, new in new_runs.iterrows():
        if same.get(new["key"], False):
            counts["identical"] += 1
            continue
        ref, cut = old.loc[new["key"]], thresholds[new["arch"]]
        agree = (float(new["final_acc"]) >= cut) == (float(ref["final_acc"]) >= cut)
        counts["same label" if agree else "other label"] += 1
        checks.append(Check(f"network {new['key']} ({new['arch']})", "DIFFERENT",
                            f"final accuracy {float(new['final_acc']):.4f} (committed {float(ref['final_acc']):.4f}), "
                            f"label {'agrees' if agree else 'DIFFERS'} (threshold {cut:g}), stopped at epoch "
                            f"{int(new['early_stop_epoch'])} (committed {int(ref['early_stop_epoch'])})"))
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    checks.append(Check(f"retrained networks: {summary}", "identical" if not checks else "DIFFERENT",
                        "" if not checks else "the bits of this machine's training differ from the committed ones; "
                        "where only accuracies move and labels agree, the readings are unaffected up to that spread"))
    return checks


def check_fingerprint() -> Check:
    """This CPU's primitives against the records of the CPUs the committed results were verified on."""
    from . import fingerprint

    text, ok = fingerprint.report(fingerprint.fingerprint(), fingerprint.records())
    print(text, flush=True)
    return Check(f"fingerprint of this CPU against {len(fingerprint.records())} records in results/fingerprints/",
                 "identical" if ok else "DIFFERENT", "" if ok else "a primitive the project relies on differs (above)")


def check_features(profile: str, root: Path, log: Path) -> list[Check]:
    rc = _pipeline(root, profile, ("02_graph", "03_features"), log)
    if rc != 0:
        return [Check("02_graph + 03_features on the sample", "DIFFERENT", f"failed (exit {rc}); see {log}")]
    checks = []
    for new in sorted(p for rp in _replicates(profile) for p in (root / "results" / rp / "features").glob("*.npz")):
        name = str(new.relative_to(root))
        old = paths.RESULTS / new.relative_to(root / "results")
        (fa, aa), (fb, ab) = files.read_features(new), files.read_features(old)
        rows = {k: i for i, k in enumerate(fb["keys"].astype(str))}
        idx = [rows.get(k) for k in fa["keys"].astype(str)]
        if any(i is None for i in idx) or set(aa) != set(ab):
            checks.append(Check(name, "DIFFERENT", "networks or feature sets not in the committed file"))
            continue
        bad = None
        for fs in sorted(aa):
            x, y = aa[fs], ab[fs][idx]
            n = min(x.shape[1], y.shape[1])  # epochs: the sample may stop earlier than the population
            if x.shape[2:] != y.shape[2:] or not np.array_equal(x[:, :n], y[:, :n], equal_nan=True):
                where = np.argwhere(~((x[:, :n] == y[:, :n]) | (np.isnan(x[:, :n]) & np.isnan(y[:, :n]))))
                bad = (f"feature set {fs!r}, network {fa['keys'][where[0][0]]}, epoch {where[0][1]}"
                       if len(where) else f"feature set {fs!r}: shapes {x.shape} vs {y.shape}")
                break
        checks.append(Check(f"{name} ({len(idx)} networks, {len(aa)} feature sets)",
                            "identical" if bad is None else "DIFFERENT", bad or ""))
    return checks


# --------------------------------------------------------------------------- 3: the evaluation rerun
def check_evaluation(profile: str, work: Path, log: Path) -> list[Check]:
    from .pipeline.inputs import expand_templates
    from .steps import STEPS

    steps = [s for s in STEPS if s.name in EVALUATION_STEPS]
    outputs = [p for s in steps for t in s.outputs for p in expand_templates(t, profile)]
    inputs = {p for s in steps for i in s.inputs for p in expand_templates(i.path, profile)} - set(outputs)
    results = paths.results_dir(profile)
    rel = sorted({str(p.relative_to(results)) for p in map(Path, inputs) if paths.RESULTS / profile in p.parents}
                 | {"overrides.json", "timings", "q3_snapshots"}
                 | {rp[len(profile) + 1:] for rp in _replicates(profile)[1:]})  # replicate folders r1, r2, ...
    root = _root(work / "evaluate", profile, rel)
    rc = _pipeline(root, profile, EVALUATION_STEPS, log)
    checks = [] if rc == 0 else [Check("04-07 from the committed features", "DIFFERENT", f"failed (exit {rc}); see {log}")]
    for p in map(Path, outputs):
        name = paths.relative(p)
        new = root / name
        if name in {m.format(profile=profile) for m in MEASURED_FILES}:
            checks.append(Check(name, "measured" if new.exists() else "DIFFERENT",
                                "timings of this machine" if new.exists() else "not written by the rerun"))
        elif name == f"results/{profile}/q3.csv":
            checks.append(compare_csv(new, p, name, measured=_q3_measured))
        elif p.suffix == ".csv":
            checks.append(compare_csv(new, p, name))
        else:
            checks.append(compare_bytes(new, p, name))
    new_m = json.loads((root / "results" / profile / "metrics.json").read_text()) if (
        root / "results" / profile / "metrics.json").exists() else {}
    old_m = json.loads(paths.metrics_path(profile).read_text())
    for section in sorted(new_m):
        name = f"results/{profile}/metrics.json [{section}]"
        if section == "q3":
            checks.append(Check(name, "measured", "timings of this machine"))
            continue
        diff = _json_difference(new_m[section], old_m.get(section))
        checks.append(Check(name, "identical" if diff is None else "DIFFERENT", diff or ""))
    return checks


# --------------------------------------------------------------------------- the command
def report(checks: list[Check], header: list[str]) -> str:
    lines = list(header)
    for c in checks:
        lines.append(f"  {c.verdict:<10} {c.what}" + (f": {c.detail}" if c.detail else ""))
    n = {v: sum(c.verdict == v for c in checks) for v in ("identical", "measured", "DIFFERENT")}
    lines.append(f"verify: {n['identical']} identical, {n['measured']} measured, {n['DIFFERENT']} different")
    return "\n".join(lines)


#: networks retrained per architecture where a profile's networks cost more than ``default``'s: an fmnist
#: network evaluates all 10,000 test images after each of up to 15 epochs (minutes on one core), so its
#: sample is one per architecture (seven networks) to keep ``make verify PROFILE=fmnist`` near 10 minutes
PER_ARCH: dict[str, int] = {"fmnist": 1, "fmnist-full": 1}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m paperlib.verify", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Checks the committed results of a profile (make verify) in a few minutes, without writing to\n"
                    "them. 1. Retrains a random sample of the committed networks and compares the SHA-256 of every\n"
                    "snapshot with results/<profile>/snapshots.csv. 2. Recomputes their graphs and features (02, 03)\n"
                    "and compares them with the committed features/<arch>.npz. 3. Reruns 04-07 from the committed\n"
                    "features in a temporary folder and compares every file they write with the committed one.\n"
                    "Prints one line per file (identical, measured or DIFFERENT with the first difference); exit\n"
                    "status 0 only when every check holds. Nothing under results/ or figures/ is written.",
        epilog="examples:\n"
               "  python -m paperlib.verify                       the default profile, a fresh sample (seed printed)\n"
               "  python -m paperlib.verify --seed 7              repeat the sample of seed 7\n"
               "  python -m paperlib.verify --skip-training       only check 3 (04-07 from the committed features)")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--per-arch", type=int, default=None,
                    help="networks retrained per architecture (default 3; 1 for the fmnist profiles, see PER_ARCH)")
    ap.add_argument("--seed", type=int, default=None, help="picks the sample (default: a fresh one, printed)")
    ap.add_argument("--skip-training", action="store_true", help="leave out checks 1 and 2 (training, features)")
    ap.add_argument("--skip-evaluation", action="store_true", help="leave out check 3 (04-07)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary roots (their path is printed)")
    ap.add_argument("--train-keys", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.per_arch is None:
        a.per_arch = PER_ARCH.get(paths.base_profile(a.profile), 3)
    if a.train_keys:
        _train_sample(a.profile, a.train_keys.split(","))
        return 0
    from . import kernels, lock

    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(10**6)
    work = Path(tempfile.mkdtemp(prefix="paperlib-verify-"))
    log = work / "verify.log"
    t0 = time.perf_counter()
    header = [f"== verify: profile {a.profile}, kernels {kernels.isa_class()}, lock sha256 "
              f"{(lock.sha256() or 'missing')[:12]} (installed matches: {lock.status()['installed_matches']})"]
    checks: list[Check] = []
    try:
        print("[0/3] this CPU's numeric primitives against the recorded CPUs ...", flush=True)
        checks.append(check_fingerprint())
        if not a.skip_training:
            print(f"[1/3] retraining {a.per_arch} networks per architecture (seed {seed}) ...", flush=True)
            found, root = check_training(a.profile, a.per_arch, seed, work, log)
            checks += found
            if (root / "results" / a.profile / "runs.csv").exists():
                print("[2/3] graphs and features of the retrained networks (02, 03) ...", flush=True)
                checks += check_features(a.profile, root, log)
        if not a.skip_evaluation:
            print("[3/3] 04-07 from the committed features ...", flush=True)
            checks += check_evaluation(a.profile, work, log)
    finally:
        header.append(f"   sample seed {seed} ({a.per_arch} per architecture); {time.perf_counter() - t0:.0f} s; "
                      + (f"work folder {work}" if a.keep else "log in the work folder (removed)"))
        print(report(checks, header), flush=True)
        bad = [c for c in checks if not c.ok]
        if bad and not a.keep:
            print(f"--- last lines of the log ---\n{''.join(log.read_text().splitlines(True)[-30:])}"
                  if log.exists() else "", flush=True)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if checks and all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
