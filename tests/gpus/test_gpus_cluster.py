"""Cluster construction, validation and derived link figures."""

from __future__ import annotations

import pytest

import gpus


def test_deepseek_v3_cluster():
    # DeepSeek-V3 report §3.1: 2,048 H800 in nodes of 8 (256 nodes), NVLink in a node, 8 x 400 Gb/s IB.
    c = gpus.cluster("H800", num_gpus=2048)
    assert (c.nodes, c.gpus_per_node, c.num_gpus) == (256, 8, 2048)
    assert c.scale_up_domain_gpus == 8 and c.nodes_per_scale_up_domain == 1
    assert c.scale_up_bandwidth_bytes_per_s_per_direction == 200e9
    assert c.scale_out_bandwidth_bytes_per_s_per_gpu == 50e9
    assert c.scale_out_bandwidth_bytes_per_s_per_node == 400e9
    assert c.num_scale_up_domains == 256


def test_cluster_class_directly_and_default_node():
    c = gpus.Cluster(gpus.get("H20"), 2)
    assert c.gpus_per_node == 8 and c.num_gpus == 16
    assert gpus.Cluster("h20", 2) == c
    assert c.to_dict()["gpu"] == "H20"


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, (1, 8)),
    ({"nodes": 4}, (4, 8)),
    ({"num_gpus": 4}, (1, 4)),
    ({"num_gpus": 16, "nodes": 2}, (2, 8)),
    ({"num_gpus": 16, "nodes": 4}, (4, 4)),
    ({"num_gpus": 12, "gpus_per_node": 4}, (3, 4)),
    ({"nodes": 3, "gpus_per_node": 2}, (3, 2)),
])
def test_cluster_sizes(kwargs, expected):
    c = gpus.cluster("H100", **kwargs)
    assert (c.nodes, c.gpus_per_node) == expected
    assert c.num_gpus == expected[0] * expected[1]


def test_scale_up_domain_is_capped_by_node_and_cluster():
    c = gpus.cluster("H100", nodes=3, gpus_per_node=4)
    assert c.scale_up_domain_gpus == 4
    assert gpus.cluster("H100", num_gpus=2).scale_up_domain_gpus == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_gpus": 12}, "not a whole number of 8-GPU nodes"),
    ({"num_gpus": 10, "nodes": 3}, "does not split evenly over 3 nodes"),
    ({"num_gpus": 16, "nodes": 2, "gpus_per_node": 4}, r"must equal nodes x gpus_per_node \(2 x 4 = 8\)"),
    ({"num_gpus": 0}, "num_gpus must be a positive whole number"),
    ({"num_gpus": -8}, "num_gpus must be a positive whole number"),
    ({"num_gpus": 8.5}, "num_gpus must be a positive whole number"),
    ({"num_gpus": True}, "num_gpus must be a positive whole number"),
    ({"nodes": 0}, "nodes must be a positive whole number"),
    ({"nodes": float("nan")}, "nodes must be a positive whole number"),
    ({"gpus_per_node": "8"}, "gpus_per_node must be a positive whole number"),
])
def test_cluster_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gpus.cluster("H800", **kwargs)


def test_cluster_unknown_gpu():
    with pytest.raises(ValueError, match="unknown GPU 'X1'.*H800"):
        gpus.cluster("X1", num_gpus=8)
    with pytest.raises(ValueError, match="nodes must be a positive whole number"):
        gpus.Cluster("H800", 0)


def test_full_mesh_and_bridge_topologies():
    # AMD MI300X data sheet: 7 Infinity Fabric links x 64 GB/s each way, a full mesh of 8 GPUs.
    mi300x = gpus.cluster("MI300X", nodes=2)
    assert mi300x.scale_up_topology == "full-mesh"
    assert mi300x.scale_up_bandwidth_bytes_per_s_per_direction == 448e9
    assert mi300x.scale_up_pair_bandwidth_bytes_per_s_per_direction == pytest.approx(64e9)
    # NVIDIA H100 PCIe table: NVLink bridge 600 GB/s both ways, pairs of cards only.
    pcie = gpus.cluster("H100-PCIe", nodes=1)
    assert (pcie.scale_up_domain_gpus, pcie.scale_up_domains_per_node) == (2, 4)
    assert pcie.scale_up_pair_bandwidth_bytes_per_s_per_direction == 300e9
    # Through NVSwitch a GPU reaches any other at its full link rate (H800: 200 GB/s, DeepEP #16).
    assert gpus.cluster("H800").scale_up_pair_bandwidth_bytes_per_s_per_direction == 200e9
