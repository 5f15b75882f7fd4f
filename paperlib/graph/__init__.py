"""Graphs of a neural network (S1), their centralities (S2), and the temporal graphs of a run.

Both graphs are read from the data flow of the network, never from the order in which
modules are registered: the network is traced with ``torch.fx`` (in eval mode, so the graph
does not depend on the mode) and interpreted node by node, following for every value which
elements of which producer (the input, or a weighted layer) feed each of its elements.

Modules
-------
``tracing``
    tracing and input-shape guessing.
``values``
    what the walker computes: incidences, flows, the weighted layers; the errors it raises.
``routing``
    the routing kinds (weighted, elementwise, data movement, pooling, reduction): which module
    types and callables fall in each.
``flow``
    :class:`FlowWalker`, the interpreter over values; what it cannot follow is refused with the
    module's qualified name and type, the operation and the construct.
``plan``
    :class:`GraphPlan`: the layers of an architecture, their input incidences and the edge
    rules of the rolled graph, computed once and applied to any snapshot;
    :func:`rolled_graph`, :func:`unrolled_graph`.
``rolled``
    :class:`RolledGraph` (Section 2 of the paper): one node per channel/filter/unit, edges
    weighted by the L2 norms of kernel slices (``|w|`` for a linear layer).
``unrolled``
    :class:`UnrolledGraph` (Rieck et al., 2019): one node per element of every map; explicit
    or matrix-free.
``sizes``
    :func:`write_size_table`.
``centrality``
    :func:`weighted_degree` and :func:`eigenvector_centrality` (S2).
``temporal``
    per-run temporal graphs: centralities of every snapshot, cached (not imported here: it reads
    the run store).
"""

from .values import SUPPORTED, UnsupportedGraphError
from .centrality import eigenvector_centrality, weighted_degree
from .plan import GraphPlan, rolled_graph, unrolled_graph
from .rolled import RolledGraph, stack_rolled
from .sizes import write_size_table
from .tracing import DEFAULT_SIDES, infer_input_shape, trace
from .unrolled import DEFAULT_MAX_BYTES, UnrolledGraph

__all__ = [
    "GraphPlan", "RolledGraph", "UnrolledGraph", "rolled_graph", "unrolled_graph", "stack_rolled", "trace",
    "infer_input_shape", "write_size_table", "DEFAULT_MAX_BYTES", "DEFAULT_SIDES", "UnsupportedGraphError",
    "SUPPORTED", "weighted_degree", "eigenvector_centrality",
]
