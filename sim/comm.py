"""Collective communication time on a cluster: latency plus bytes over effective bandwidth.

Two link types: ``"nvlink"`` (scale-up, inside a scale-up domain: a node of 8, or NVL72) and
``"ib"`` (scale-out, RDMA per GPU across nodes); ``"pcie"`` for host transfers. The effective
bandwidth and latency of a link come from calibration data, never from code constants:

* the device's own file ``gpus/calibration/<device>.json`` (section ``links``) when it has one;
* otherwise the H800 measurements (DeepEP's published tables, fitted by
  ``python -m kernels_numba.validate``), applied as *fractions of the link's peak*: a device
  with a faster NVLink (H100: 450 GB/s per direction) gets the same fraction of its own peak.
  This is the best public evidence for NVLink/NVSwitch + ConnectX-7 systems and is an
  assumption for others (A800, B200); the result's ``calibration`` says which file was used;
* with no calibration at all, the link's peak and zero latency (a pure roofline).

What a fitted time contains: DeepEP's low-latency table times are the GPU time of one kernel
that also casts and packs the tokens before sending and unpacks (dispatch) or weight-sums
(combine) them after receiving (``sim.calibration.published.deepep_tables`` gives the
source). A link says which of those phases its fit holds (:attr:`Link.low_latency_contains`), so
that a caller charging them as kernels of their own can take them out of the transfer
(``sim.serving.stepcost``); a roofline link holds none.

Formulas (per GPU, bandwidth per direction): all-to-all with ``n`` ranks, a scale-up domain of
``d`` GPUs and uniform destinations sends ``(d-1)/n`` of its bytes over NVLink and
``(n-d)/n`` over IB, in parallel: ``t = latency + max(nvlink_bytes / bw_nvlink, ib_bytes /
bw_ib)``. Ring all-reduce inside a domain: ``2 ((n-1)/n * B / bw + latency)``: the
latency is the fixed cost of one collective phase (DeepEP's fitted kernel latency), paid once
per phase because the ring's steps are pipelined; across
domains, hierarchical (reduce-scatter in the domain, all-reduce of ``B/d`` across domains over
each GPU's NIC, all-gather in the domain). Reduce-scatter and all-gather are the halves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from sim import calibration as cal
from sim.record import Record
from sim.timing import finite_non_negative, positive_int

if TYPE_CHECKING:
    from gpus import Cluster

__all__ = [
    "CommTime",
    "DISPATCHERS",
    "Link",
    "link",
    "all_to_all_time",
    "all_reduce_time",
    "custom_all_reduce_time",
    "reduce_scatter_time",
    "all_gather_time",
    "p2p_time",
]

LINK_TYPES = ("nvlink", "ib", "pcie")
# How routed tokens reach their experts, one notion for training plans and serving deployments:
# "deepep" (DeepEP / HybridEP, Megatron's ``flex``: a token crosses InfiniBand once per destination
# node and fans out over NVLink; its low-latency kernels at serving decode), "alltoall" (a plain
# all-to-all of the permuted rows: one copy per selected expert on another GPU, no deduplication)
# and "allgather" (every GPU of the expert group gathers the tokens, computes its experts' rows and
# the outputs are reduced back; the only one that serves experts sharded over GPUs).
DISPATCHERS = ("deepep", "alltoall", "allgather")
LOW_LATENCY_PHASES = ("dispatch_send", "dispatch_recv", "combine_send", "combine_recv")
_REFERENCE_FILE = "h800"  # the one device with published link measurements (DeepEP)


@dataclass(frozen=True)
class Link(Record):
    """One link type of a cluster: effective bandwidth per direction per GPU, and latency."""

    kind: str
    bandwidth_bytes_per_s: float
    latency_s: float
    peak_bandwidth_bytes_per_s: float
    calibration: str
    # phases of DeepEP's low-latency kernels ("dispatch_send", "dispatch_recv", "combine_send",
    # "combine_recv") whose GPU work is inside the times this link was fitted to
    low_latency_contains: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommTime(Record):
    """Time of one collective: seconds, what bounds it ("nvlink", "ib", "pcie", "latency")."""

    predicted_s: float
    bound_by: str
    link: str
    bytes_per_gpu: float = 0.0
    calibration: str = "default"


def _peak(cluster: Cluster, kind: str) -> float:
    profile = cluster.profile
    if kind == "nvlink":
        value = getattr(cluster, "scale_up_bandwidth_bytes_per_s_per_direction", None)
        if value is None:
            value = profile.nvlink_bandwidth_bytes_per_s_per_direction
    elif kind == "ib":
        value = getattr(cluster, "scale_out_bandwidth_bytes_per_s_per_gpu", None)
        if value is None:
            value = profile.node.scale_out_bandwidth_bytes_per_s_per_gpu
    elif kind == "pcie":
        value = profile.pcie_bandwidth_bytes_per_s_per_direction
    else:
        raise ValueError(f"unknown link type {kind!r}; allowed: {', '.join(LINK_TYPES)}")
    return float(value or 0.0)


def link(cluster: Cluster, kind: str) -> Link:
    """The calibrated :class:`Link` of type ``kind`` on ``cluster``'s GPUs."""
    if kind not in LINK_TYPES:
        raise ValueError(f"unknown link type {kind!r}; allowed: {', '.join(LINK_TYPES)}")
    _check_cluster(cluster)
    peak = _peak(cluster, kind)
    if peak <= 0:
        raise ValueError(
            f"{getattr(cluster.profile, 'name', 'this GPU')} has no {kind} link (peak bandwidth 0)"
        )
    profile = cluster.profile
    names = [str(getattr(profile, "name", ""))] + [str(a) for a in getattr(profile, "aliases", ())]
    own = cal.find_calibration(names)
    entry = (own or {}).get("links", {}).get(kind)
    if entry is not None:
        return Link(
            kind,
            float(entry["bandwidth_bytes_per_s"]) * peak / float(entry["peak_bandwidth_bytes_per_s"]),
            float(entry["latency_s"]),
            peak,
            str(own.get("device")) if own else "",
            _phases(entry),
        )
    reference = cal.find_calibration([_REFERENCE_FILE])
    entry = (reference or {}).get("links", {}).get(kind)
    if entry is not None and reference is not None:
        fraction = float(entry["bandwidth_bytes_per_s"]) / float(entry["peak_bandwidth_bytes_per_s"])
        return Link(
            kind,
            fraction * peak,
            float(entry["latency_s"]),
            peak,
            f"{reference.get('device')} fraction of peak",
            _phases(entry),
        )
    return Link(kind, peak, 0.0, peak, "default")


def _phases(entry: dict[str, Any]) -> tuple[str, ...]:
    """The low-latency kernel phases a calibration ``links`` entry's fit contains."""
    phases = tuple(str(p) for p in entry.get("low_latency_kernel_contains", ()))
    unknown = sorted(set(phases) - set(LOW_LATENCY_PHASES))
    if unknown:
        raise ValueError(
            f"unknown low-latency kernel phase(s) {', '.join(unknown)} in a calibration file's links; "
            f"allowed: {', '.join(LOW_LATENCY_PHASES)}"
        )
    return phases


def _check_cluster(cluster: Cluster) -> None:
    for field in ("profile", "num_gpus"):
        if not hasattr(cluster, field):
            raise ValueError(
                "expected a gpus.Cluster (with profile, nodes, gpus_per_node, num_gpus); "
                f"got {type(cluster).__name__}"
            )


def _group(cluster: Cluster, num_gpus: int | None) -> tuple[int, int]:
    _check_cluster(cluster)
    total = int(cluster.num_gpus)
    n = total if num_gpus is None else positive_int(num_gpus, "num_gpus")
    if n < 1 or n > total:
        raise ValueError(f"num_gpus must be between 1 and the cluster's {total} GPUs, got {num_gpus}")
    domain = int(getattr(cluster, "scale_up_domain_gpus", None) or getattr(cluster, "gpus_per_node", 1) or 1)
    return n, max(1, min(domain, n))


def _check_bytes(value: float, name: str) -> float:
    """``value`` as a float: a finite number of bytes >= 0 (``name`` is the parameter's)."""
    return finite_non_negative(value, name)


def all_to_all_time(cluster: Cluster, bytes_per_gpu: float, num_gpus: int | None = None) -> CommTime:
    """All-to-all (MoE dispatch or combine): each GPU sends ``bytes_per_gpu`` spread uniformly
    over ``num_gpus`` ranks (default: the whole cluster), itself included (that part stays)."""
    size = _check_bytes(bytes_per_gpu, "bytes_per_gpu")
    n, d = _group(cluster, num_gpus)
    if n == 1 or size == 0:
        return CommTime(0.0, "latency", "none", size)
    intra_bytes = size * (d - 1) / n
    inter_bytes = size * (n - d) / n
    nv = link(cluster, "nvlink") if d > 1 else None
    ib = link(cluster, "ib") if n > d else None
    intra_s = intra_bytes / nv.bandwidth_bytes_per_s if nv else 0.0
    inter_s = inter_bytes / ib.bandwidth_bytes_per_s if ib else 0.0
    latency = max(nv.latency_s if nv else 0.0, ib.latency_s if ib else 0.0)
    body = max(intra_s, inter_s)
    used = ib if inter_s >= intra_s and ib else nv
    assert used is not None
    bound = "latency" if latency > body else used.kind
    return CommTime(latency + body, bound, used.kind, size, used.calibration)


def _ring(n: int, size: float, chosen: Link, passes: int) -> float:
    """``passes`` ring phases (reduce-scatter or all-gather) of ``size`` bytes over ``n`` ranks."""
    if n <= 1:
        return 0.0
    return passes * ((n - 1) / n * size / chosen.bandwidth_bytes_per_s + chosen.latency_s)


def _collective(cluster: Cluster, size: float, num_gpus: int | None, passes: int) -> CommTime:
    n, d = _group(cluster, num_gpus)
    if n == 1 or size == 0:
        return CommTime(0.0, "latency", "none", size)
    if n <= d:
        nv = link(cluster, "nvlink")
        t = _ring(n, size, nv, passes)
        return CommTime(t, "nvlink", "nvlink", size, nv.calibration)
    nv_link = link(cluster, "nvlink") if d > 1 else None
    ib = link(cluster, "ib")
    domains = -(-n // d)
    intra = _ring(d, size, nv_link, passes) if nv_link else 0.0
    inter = _ring(domains, size / d, ib, passes)
    bound = "ib" if inter >= intra else "nvlink"
    return CommTime(intra + inter, bound, "ib", size, ib.calibration)


def all_reduce_time(cluster: Cluster, bytes_per_gpu: float, num_gpus: int | None = None) -> CommTime:
    """All-reduce of ``bytes_per_gpu`` (each rank holds the full buffer) over ``num_gpus`` ranks."""
    return _collective(cluster, _check_bytes(bytes_per_gpu, "bytes_per_gpu"), num_gpus, passes=2)


CUSTOM_ALL_REDUCE_FILE = "collectives/custom_allreduce.json"  # under the calibration folder


@lru_cache(maxsize=16)
def _custom_all_reduce_table(
    n: int, mtime_ns: int
) -> tuple[tuple[float, ...], tuple[float, ...], float, str]:
    """Sizes and times (bytes, seconds) of the custom all-reduce over the smallest measured group of
    at least ``n`` GPUs (the largest measured group beyond it), as its monotone lower envelope; the
    NVLink per-direction bandwidth of the device it was measured on, and that device (read once per
    modification time ``mtime_ns`` of the file)."""
    data = cal.load_file(cal.calibration_dir() / CUSTOM_ALL_REDUCE_FILE)
    tables = {
        int(g): sorted((float(b), float(t)) for b, t in pts)
        for g, pts in data["measured_s_by_group_and_bytes"].items()
    }
    group = min((g for g in tables if g >= n), default=max(tables))
    # a buffer never takes longer than a larger one measured faster (the kernel could pad it): the
    # monotone lower envelope smooths the table's noise at its smallest sizes
    points = tables[group]
    sizes = tuple(b for b, _ in points)
    times = tuple(min(t for _, t in points[i:]) for i in range(len(points)))
    return sizes, times, float(data["nvlink_bandwidth_bytes_per_s_per_direction"]), str(data["device"])


def custom_all_reduce_time(cluster: Cluster, bytes_per_gpu: float, num_gpus: int | None = None) -> CommTime:
    """Tensor-parallel all-reduce by a custom NVLink kernel (one-shot for small buffers, two-shot for
    large), as vLLM, SGLang and TensorRT-LLM run inside one NVLink domain; a group that spans
    domains falls back to NCCL's (:func:`all_reduce_time`).

    The time is read off the measured table (``gpus/calibration/collectives/custom_allreduce.json``,
    H100), interpolated linearly in the buffer size between measured sizes, the smallest size's time
    below them and the last two sizes' slope beyond them. On another GPU the part above the table's
    floor (the per-call synchronisation, which no bandwidth shortens) scales with the inverse of its
    NVLink bandwidth per direction."""
    size = _check_bytes(bytes_per_gpu, "bytes_per_gpu")
    n, d = _group(cluster, num_gpus)
    if n == 1 or size == 0:
        return CommTime(0.0, "latency", "none", size)
    if n > d:
        return all_reduce_time(cluster, size, n)
    path = cal.calibration_dir() / CUSTOM_ALL_REDUCE_FILE
    sizes, times, table_bw, device = _custom_all_reduce_table(n, cal.mtime_ns(path))
    if size >= sizes[-1]:  # beyond the table: its last two sizes' slope
        slope = (times[-1] - times[-2]) / (sizes[-1] - sizes[-2])
        t = times[-1] + slope * (size - sizes[-1])
    else:  # linear between measured sizes, the smallest size's time below them
        t = float(np.interp(size, sizes, times))
    floor = min(times)
    peak = _peak(cluster, "nvlink")
    scaled = floor + max(0.0, t - floor) * (table_bw / peak if peak > 0 else 1.0)
    bound = "latency" if scaled < 2.0 * floor else "nvlink"
    return CommTime(scaled, bound, "nvlink", size, f"custom all-reduce ({device} table)")


def reduce_scatter_time(cluster: Cluster, bytes_per_gpu: float, num_gpus: int | None = None) -> CommTime:
    """Reduce-scatter of a ``bytes_per_gpu`` buffer (each rank ends with 1/n of it)."""
    return _collective(cluster, _check_bytes(bytes_per_gpu, "bytes_per_gpu"), num_gpus, passes=1)


def all_gather_time(cluster: Cluster, bytes_per_gpu: float, num_gpus: int | None = None) -> CommTime:
    """All-gather into a ``bytes_per_gpu`` buffer (each rank contributes 1/n of it)."""
    return _collective(cluster, _check_bytes(bytes_per_gpu, "bytes_per_gpu"), num_gpus, passes=1)


def p2p_time(link_or_cluster: Link | Cluster, bytes_moved: float, kind: str | None = None) -> CommTime:
    """Point-to-point send of ``bytes_moved`` over a :class:`Link`, or over ``cluster``'s link of
    type ``kind`` (default: "ib" when the cluster has several nodes, else "nvlink")."""
    size = _check_bytes(bytes_moved, "bytes_moved")
    if isinstance(link_or_cluster, Link):
        chosen = link_or_cluster
    else:
        _check_cluster(link_or_cluster)
        if kind is None:
            kind = "ib" if int(getattr(link_or_cluster, "nodes", 1)) > 1 else "nvlink"
        chosen = link(link_or_cluster, kind)
    body = size / chosen.bandwidth_bytes_per_s
    bound = "latency" if chosen.latency_s > body else chosen.kind
    return CommTime(chosen.latency_s + body, bound, chosen.kind, size, chosen.calibration)
