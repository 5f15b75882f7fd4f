"""Nodes, edges and memory of the rolled and unrolled graphs of a profile's architectures."""

from __future__ import annotations

from typing import Any

import torch

from .plan import GraphPlan

__all__ = ["write_size_table"]


def write_size_table(profile) -> "Any":
    """Nodes, edges and memory of the rolled and unrolled graphs of every architecture.

    An untrained model of each population of ``profile`` is built with
    ``paperlib.train.models.build_model`` (the dataset's input channels and classes, the profile's
    image size). Bytes are those of a CSR matrix holding both directions of every edge
    (float64 weights, int32 indices below 2**31 entries). Written to
    ``results/<profile>/graph_sizes.csv``.

    Returns
    -------
    pandas.DataFrame
        one row per architecture: arch, model, dataset, image_size, rolled_nodes,
        rolled_edges, rolled_bytes, unrolled_nodes, unrolled_edges, unrolled_bytes,
        unrolled_over_rolled_edges.
    """
    import pandas as pd

    from ..train import data, models
    from .. import files

    rows = []
    for pop in profile.populations:
        info = data.DATASETS[pop.dataset]
        size = profile.image_size[pop.dataset]
        torch.manual_seed(0)
        net = models.build_model(pop.model, info.num_classes, info.in_channels, size, **pop.model_kwargs)
        plan = GraphPlan(net, (info.in_channels, size, size))
        r, u = plan.rolled(), plan.unrolled()
        rows.append({
            "arch": pop.arch, "model": pop.model, "dataset": pop.dataset, "image_size": size,
            "rolled_nodes": r.n_nodes, "rolled_edges": r.n_edges, "rolled_bytes": r.nbytes,
            "unrolled_nodes": u.n_nodes, "unrolled_edges": u.n_edges, "unrolled_bytes": u.nbytes,
            "unrolled_over_rolled_edges": u.n_edges / max(r.n_edges, 1),
        })
    df = pd.DataFrame(rows)
    files.write_table(profile, "graph_sizes.csv", df)
    return df
