"""A fleet of one GPU type: nodes x GPUs per node, with its scale-up and scale-out links.

``Cluster(profile, nodes, gpus_per_node=None)`` takes a ``GPUProfile`` (or a name) and derives
the figures that collective-communication models need (all per GPU and per direction, SI):

* scale-up (NVLink / NVSwitch, HCCS, Infinity Fabric): ``scale_up_bandwidth_bytes_per_s_per_direction``
  inside a scale-up domain of ``scale_up_domain_gpus`` GPUs. A domain is either inside one node
  (8 on HGX; 2 for NVLink-bridged PCIe cards) or spans ``nodes_per_scale_up_domain`` whole nodes
  (NVL72). A GPU without any scale-up link talks to its node-mates over PCIe.
* scale-out (InfiniBand / RoCE NICs): ``scale_out_bandwidth_bytes_per_s_per_gpu``, the node's NIC
  bandwidth shared over its GPUs (H800 in DeepSeek's cluster: 8 x 400 Gbit/s per 8 GPUs = 50e9).

``cluster(name, num_gpus=None, nodes=None, gpus_per_node=None)`` is the convenient constructor
(``gpus.cluster("H800", num_gpus=2048)`` -> 256 nodes of 8).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

from .profile import GPUProfile


def _whole_number(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a positive whole number, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        if isinstance(value, float) and value.is_integer():
            number = int(value)
        else:
            raise ValueError(f"{what} must be a positive whole number, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{what} must be a positive whole number (1 or more), got {value!r}")
    return number


@dataclass(frozen=True)
class Cluster:
    """``nodes`` nodes of ``gpus_per_node`` GPUs of one profile (default: the profile's typical node)."""

    profile: GPUProfile
    nodes: int
    gpus_per_node: int = None  # type: ignore[assignment]  # None -> the profile's typical node

    def __post_init__(self) -> None:
        from .loader import get

        object.__setattr__(self, "profile", get(self.profile))
        object.__setattr__(self, "nodes", _whole_number(self.nodes, "nodes"))
        per_node = self.profile.node.gpus_per_node if self.gpus_per_node is None else self.gpus_per_node
        object.__setattr__(self, "gpus_per_node", _whole_number(per_node, "gpus_per_node"))
        domain = self.profile.node.scale_up_domain_gpus
        if domain > self.profile.node.gpus_per_node and domain % self.gpus_per_node != 0:
            raise ValueError(
                f"{self.profile.name}'s scale-up domain spans {domain} GPUs over several nodes; "
                f"gpus_per_node must divide it, got {self.gpus_per_node}")

    # -- sizes ----------------------------------------------------------------------------------

    @property
    def num_gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def scale_up_domain_gpus(self) -> int:
        """GPUs joined by the scale-up fabric, capped by the node (for in-node domains) and by the
        cluster size."""
        domain = self.profile.node.scale_up_domain_gpus
        if domain <= self.profile.node.gpus_per_node:
            domain = min(domain, self.gpus_per_node)
        return min(domain, self.num_gpus)

    @property
    def nodes_per_scale_up_domain(self) -> int:
        """Nodes in one scale-up domain: 1 unless the domain spans nodes (NVL72 with 4-GPU trays: 18)."""
        return max(1, self.scale_up_domain_gpus // self.gpus_per_node)

    @property
    def scale_up_domains_per_node(self) -> int:
        """Scale-up domains inside one node: 1 for HGX, 4 for 8 PCIe cards bridged in pairs."""
        return max(1, self.gpus_per_node // self.scale_up_domain_gpus)

    @property
    def num_scale_up_domains(self) -> int:
        return -(-self.num_gpus // self.scale_up_domain_gpus)

    # -- links (per GPU, per direction, bytes/s) ------------------------------------------------

    @property
    def scale_up_bandwidth_bytes_per_s_per_direction(self) -> float:
        """Per-GPU scale-up bandwidth per direction; PCIe when the GPU has no scale-up link."""
        nvlink = self.profile.nvlink_bandwidth_bytes_per_s_per_direction
        return nvlink if nvlink > 0 else self.profile.pcie_bandwidth_bytes_per_s_per_direction

    @property
    def scale_up_topology(self) -> str:
        return self.profile.node.scale_up_topology

    @property
    def scale_up_pair_bandwidth_bytes_per_s_per_direction(self) -> float:
        """Bandwidth one GPU can send to one other GPU of its domain, per direction: the full link
        through a switch or a bridge; one of the (domain - 1) links in a full mesh."""
        if self.scale_up_topology == "full-mesh" and self.scale_up_domain_gpus > 1:
            links = self.profile.node.scale_up_domain_gpus - 1
            return self.scale_up_bandwidth_bytes_per_s_per_direction / links
        return self.scale_up_bandwidth_bytes_per_s_per_direction

    @property
    def scale_out_bandwidth_bytes_per_s_per_gpu(self) -> float:
        """Per-GPU share of the node's NIC bandwidth, per direction."""
        return self.profile.node.scale_out_bandwidth_bytes_per_s_per_gpu

    @property
    def scale_out_bandwidth_bytes_per_s_per_node(self) -> float:
        return self.scale_out_bandwidth_bytes_per_s_per_gpu * self.gpus_per_node

    @property
    def pcie_bandwidth_bytes_per_s_per_direction(self) -> float:
        return self.profile.pcie_bandwidth_bytes_per_s_per_direction

    @property
    def multi_node(self) -> bool:
        return self.nodes > 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu": self.profile.name,
            "nodes": self.nodes,
            "gpus_per_node": self.gpus_per_node,
            "num_gpus": self.num_gpus,
            "scale_up_domain_gpus": self.scale_up_domain_gpus,
            "scale_up_topology": self.scale_up_topology,
            "nodes_per_scale_up_domain": self.nodes_per_scale_up_domain,
            "scale_up_bandwidth_bytes_per_s_per_direction": self.scale_up_bandwidth_bytes_per_s_per_direction,
            "scale_out_bandwidth_bytes_per_s_per_gpu": self.scale_out_bandwidth_bytes_per_s_per_gpu,
        }


def cluster(name: str | GPUProfile, num_gpus: int | None = None, nodes: int | None = None,
            gpus_per_node: int | None = None) -> Cluster:
    """A ``Cluster`` of ``name`` GPUs, from any consistent subset of the sizes.

    * ``num_gpus`` only: whole nodes of the profile's node size (or one smaller node when
      ``num_gpus`` is below a node: ``cluster("H800", num_gpus=4)`` is one node of 4).
    * ``nodes`` only: that many full nodes.  Neither: one node.
    * ``num_gpus`` and ``nodes``: ``num_gpus`` must split evenly over the nodes.
    ``gpus_per_node`` overrides the profile's node size; every size must be a positive whole
    number and num_gpus = nodes x gpus_per_node must hold.
    """
    from .loader import get

    profile = get(name)
    default_per_node = profile.node.gpus_per_node
    total = None if num_gpus is None else _whole_number(num_gpus, "num_gpus")
    count = None if nodes is None else _whole_number(nodes, "nodes")
    per_node = None if gpus_per_node is None else _whole_number(gpus_per_node, "gpus_per_node")

    if total is None:
        return Cluster(profile, 1 if count is None else count, per_node or default_per_node)
    if count is not None:
        if per_node is None:
            if total % count != 0:
                raise ValueError(f"num_gpus ({total}) does not split evenly over {count} nodes")
            per_node = total // count
        if count * per_node != total:
            raise ValueError(
                f"num_gpus ({total}) must equal nodes x gpus_per_node "
                f"({count} x {per_node} = {count * per_node})")
        return Cluster(profile, count, per_node)
    if per_node is None:
        if total < default_per_node:
            return Cluster(profile, 1, total)
        per_node = default_per_node
    if total % per_node != 0:
        raise ValueError(
            f"num_gpus ({total}) is not a whole number of {per_node}-GPU nodes of {profile.name}; "
            f"use a multiple of {per_node}, or pass gpus_per_node")
    return Cluster(profile, total // per_node, per_node)
