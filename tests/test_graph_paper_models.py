"""The paper's architectures (paperlib.train.models): rolled node counts at width 1 on CIFAR-10
inputs, and the option A ResNet against the reference."""

import pytest
import torch

from paperlib import graph
from paperlib.train import models

from test_graph_reference import assert_rolled_equal


@pytest.mark.parametrize("name,kw,nodes", [("lenet", {}, 239), ("alexnet", {}, 2925), ("vgg", {}, 1613),
                                           ("resnet_cifar", {"depth": 32}, 1149)])
def test_rolled_node_counts_at_width_one(name, kw, nodes):
    torch.manual_seed(0)
    net = models.build_model(name, 10, 3, 32, **kw)
    assert graph.GraphPlan(net, (3, 32, 32)).rolled().n_nodes == nodes


def test_option_a_resnet_matches_reference():
    torch.manual_seed(0)
    net = models.build_model("resnet_cifar", 10, 3, 32, depth=8, width=0.5)
    g = graph.rolled_graph(net, (3, 32, 32))
    assert_rolled_equal(g, net, (3, 32, 32))
