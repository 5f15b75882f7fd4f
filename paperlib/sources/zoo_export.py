"""Export a trained ``small-cnn-zoo`` population in the Small CNN Zoo's own files.

    python -m paperlib.sources.zoo_export --profile fmnist --arch SmallCNN-zoo --out DIR

writes into ``DIR`` the three files of one archive of the zoo (Unterthiner et al., 2020), read back
by :mod:`paperlib.sources.smallcnnzoo` (``source = "smallcnnzoo"`` in a profile file):

``weights.npy``
    ``float32``, one row per snapshot of every run of the population (4,970 values), in
    TensorFlow layouts with each layer's bias before its kernel
    (:func:`paperlib.sources.smallcnnzoo.tf_row`). Runs in the order of ``runs.csv``, each run's
    snapshots by epoch (epoch 0, the initialisation, first); every stored epoch is exported, not
    the zoo's subset 0, 1, 2, 3, 20, 40, 60, 80, 86.
``metrics.csv.gz``
    row i describes row i of ``weights.npy``: ``modeldir`` (the run's key), ``step`` (the epoch),
    ``test_accuracy`` (a fraction, as the zoo's), ``train_loss`` (the epoch's mean training loss;
    empty at epoch 0, where nothing was trained), and the ``config.*`` columns the zoo has and the
    run's specification determines: ``learning_rate``, ``dropout``, ``optimizer`` (``sgd`` is SGD
    with momentum 0.9 here), ``activation``, ``cnn_stride``, ``batchsize``, ``epochs``,
    ``random_seed``, ``dataset``, ``num_layers`` 3, ``num_units`` 16, ``dnn_architecture`` ``cnn``.
``layout.csv``
    ``varname, start_idx, end_idx, shape`` of the row, Keras variable names.

Every run is exported with the epochs it has (an early-stopped run fewer); a diverged run's last
snapshot is exported as it is, non-finite values included, as the zoo keeps its NaN runs.

``config.w_init``, ``config.init_std`` and ``config.train_fraction`` (the run's ``train_limit``
over the 60,000 images) are written where the run drew them (:class:`paperlib.profiles_fmnist.ZooDraws`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import files, paths
from ..train.store import Run
from .smallcnnzoo import tf_row

MODEL = "small-cnn-zoo"


def _config(spec: dict[str, Any]) -> dict[str, Any]:
    kw = spec["model_kwargs"]
    return {
        "config.learning_rate": spec["lr"], "config.dropout": spec["dropout"], "config.optimizer": spec["optimizer"],
        "config.activation": kw.get("activation", "relu"), "config.cnn_stride": kw.get("stride", 2),
        "config.batchsize": spec["batch_size"], "config.epochs": spec["epochs"], "config.random_seed": spec["seed"],
        "config.dataset": spec["dataset"], "config.num_layers": 3, "config.num_units": 16,
        "config.dnn_architecture": "cnn",
        **({"config.w_init": kw["w_init"], "config.init_std": kw.get("init_std", 0.05)} if "w_init" in kw else {}),
        "config.train_fraction": (spec["train_limit"] or 60_000) / 60_000,
    }


def export_runs(runs: list[Run], out: Path | str) -> tuple[Path, int]:
    """Write ``weights.npy``, ``metrics.csv.gz`` and ``layout.csv`` of ``runs`` into ``out``; (folder, rows)."""
    out = paths.ensure(Path(out))
    rows, meta, layout = [], [], None
    for run in runs:
        spec = run.spec
        if spec["model"] != MODEL:
            raise ValueError(f"{run.dir}: model {spec['model']!r}; only {MODEL!r} runs have the zoo's layout")
        history = {int(h["epoch"]): h for h in run.meta().get("history", [])}
        for epoch in run.snapshot_epochs():
            row, this_layout = tf_row(run.load_snapshot(epoch))
            if layout is not None and this_layout != layout:
                raise ValueError(f"{run.dir}: epoch {epoch} does not have the layout of the runs before it")
            layout = this_layout
            h = history.get(epoch, {})
            loss = h.get("train_loss") if epoch > 0 else None
            rows.append(row)
            meta.append({"modeldir": run.key, "step": epoch,
                         "test_accuracy": h["test_acc"] / 100.0 if "test_acc" in h else np.nan,
                         "train_loss": np.nan if loss is None else float(loss), **_config(spec)})
    if not rows:
        raise ValueError("no snapshots to export")
    np.save(out / "weights.npy", np.stack(rows).astype(np.float32))
    files.write_source_csv(out / "metrics.csv.gz", pd.DataFrame(meta))
    files.write_source_csv(out / "layout.csv", pd.DataFrame(
        [{"varname": n, "start_idx": s, "end_idx": e, "shape": str(tuple(sh))} for n, s, e, sh in layout]))
    return out, len(rows)


def export_population(profile: str, arch: str, out: Path | str) -> tuple[Path, int]:
    """Export population ``arch`` of ``profile``: its runs as ``results/<profile>/runs.csv`` lists them."""
    runs_csv = files.read_runs(profile)
    keys = [str(k) for k in runs_csv.loc[runs_csv["arch"] == arch, "key"]]
    if not keys:
        raise ValueError(f"{paths.relative(files.runs_path(profile))} lists no run of {arch!r} "
                         f"(it has {sorted(set(runs_csv['arch']))})")
    return export_runs([Run(paths.runs_dir(profile) / k) for k in keys], out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paperlib.sources.zoo_export",
                                     description="Write a small-cnn-zoo population in the Small CNN Zoo's files.")
    parser.add_argument("--profile", default="fmnist")
    parser.add_argument("--arch", default="SmallCNN-zoo", help="the population (its display name)")
    parser.add_argument("--out", required=True, help="folder for weights.npy, metrics.csv.gz and layout.csv")
    args = parser.parse_args(argv)
    try:
        folder, n = export_population(args.profile, args.arch, args.out)
    except (ValueError, OSError, files.CorruptFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{n} snapshots of {args.profile}/{args.arch} written to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
