"""Fleet sizing over a daily load curve, prefill capacity, and the ISCA'25 decode bound.

These use the same step-cost model as the simulator (:class:`sim.serving.stepcost.StepCostModel`)
analytically: a decode instance's capacity at a TPOT target is the plan search's decode operating
point (:func:`sim.serving.plan.decode_operating_point`: every request at the mean KV length, steps of
``decode_step(batch, kv)``, TPOT = step time / tokens per step). The simulator also charges
core attention at the busiest attention-DP rank's KV (``ServingResult.kv_imbalance``, a few
percent above the mean at the Day-6 shape); these analytic sizes do not. Fleet sizes are checked
against the discrete-event simulation in the tests and the report (one instance pair at the
per-instance load: instances scale linearly, a property the tests check). Projections across
models and GPUs are plan searches (:func:`sim.plan_serving`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sim import comm
from sim.cost import is_finite_number, price_range
from sim.record import Record
from sim.serving.deployment import InstanceSpec, parse_deployment
from sim.serving.plan import DecodeCapacity, PrefillCapacity, decode_operating_point
from sim.serving.stepcost import LayerCost, StepCostModel, two_stream_schedule
from sim.serving.workloads import DailyLoadCurve, Workload, parse_workload

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel
    from sim.serving.api import ServingResult


def prefill_capacity(
    model: MoEModel,
    gpu: GPUProfile,
    inst: InstanceSpec,
    workload: Workload,
    rng: np.random.Generator | None = None,
    cost: StepCostModel | None = None,
) -> PrefillCapacity:
    """Throughput of one prefill instance running full batches of the workload's mean request
    (``cost``: a step-cost model of ``inst`` to reuse, as the plan search does)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    if cost is None:
        cost = StepCostModel(model, gpu, inst, workload.mtp_draft_tokens, rng)
    n_in = workload.mean_input_len
    cached = workload.cache_hit_rate * n_in
    new = max(1, int(round(n_in - cached)))
    per_gpu_requests = max(1, inst.max_tokens_per_gpu // new)
    attn = cost.prefill_attention(new, int(round(cached))) * per_gpu_requests
    step = cost.prefill_step(per_gpu_requests * new, attn)
    reqs = per_gpu_requests * inst.attn_dp / step.time_s
    return PrefillCapacity(reqs * n_in, reqs * new, step.time_s, reqs, step.bound_by)


@dataclass(frozen=True)
class FleetPlan:
    """Instances per hour for a daily load curve at a latency target, and the daily cost."""

    prefill_instances_by_hour: tuple[int, ...]
    decode_instances_by_hour: tuple[int, ...]
    nodes_by_hour: tuple[int, ...]
    daily_cost_usd: float
    daily_cost_usd_low: float
    daily_cost_usd_high: float
    mean_nodes: float
    decode: DecodeCapacity
    prefill: PrefillCapacity
    prefill_utilisation_target: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["notes"] = list(self.notes)
        return out


def size_fleet(
    model: str | MoEModel,
    gpu: str | GPUProfile,
    deployment: Mapping[str, Any],
    workload: Mapping[str, Any],
    load_curve: DailyLoadCurve,
    tpot_target_s: float,
    ttft_target_s: float,
    usd_per_gpu_hour: float | None = None,
    seed: int = 0,
) -> FleetPlan:
    """Prefill and decode instances per hour for ``load_curve`` with TPOT <= ``tpot_target_s`` (every
    request sees the mean KV length) and prefill utilisation low enough that a batch waits at most
    ``ttft_target_s``: an arriving request waits for the batch in progress and then its own, so the
    target is met while 2 x batch time <= ttft_target_s and the instances run below
    1 - batch_time / ttft_target_s of their capacity (a deterministic-service queue's headroom).

    ``workload`` gives lengths, cache hits and MTP (its concurrency / rate keys are ignored).
    """
    import gpus
    import moe

    if not isinstance(load_curve, DailyLoadCurve):
        raise ValueError(
            "load_curve must be a DailyLoadCurve (24 hourly request counts, e.g. "
            f"DailyLoadCurve(tuple(counts)) or day6_load_curve()), got {type(load_curve).__name__}."
        )
    for name, value in (("tpot_target_s", tpot_target_s), ("ttft_target_s", ttft_target_s)):
        if not is_finite_number(value) or value <= 0:
            raise ValueError(f"{name} must be a finite positive number of seconds, got {value!r}.")
    m = moe.get(model) if isinstance(model, str) else model
    g = gpus.get(gpu) if isinstance(gpu, str) else gpu
    if not isinstance(workload, Mapping):
        raise ValueError(
            f"workload must be a dict of DESIGN.md's workload keys, got {type(workload).__name__}."
        )
    spec = dict(workload)
    for key in ("concurrency", "arrival_rate_per_s", "trace"):
        spec.pop(key, None)
    spec["arrival_rate_per_s"] = 1.0
    wl = parse_workload(
        spec, default_mtp_draft_tokens=min(1, int(m.num_mtp_modules or 0)), default_mtp_acceptance=0.85
    )
    dep = parse_deployment(deployment, m, g)
    if dep.mode != "disaggregated" or dep.prefill is None or dep.decode is None:
        raise ValueError(
            "Fleet sizing takes a disaggregated deployment (prefill and decode instance shapes)."
        )
    rng = np.random.default_rng(seed)
    dcap = decode_operating_point(m, g, dep.decode, wl, tpot_target_s, rng)
    if not dcap.feasible:
        raise ValueError(
            f"No decode batch meets TPOT {tpot_target_s * 1e3:.1f} ms on this instance shape: one "
            f"request alone takes {dcap.tpot_s * 1e3:.1f} ms per token (bound by {dcap.bound_by})."
        )
    pcap = prefill_capacity(m, g, dep.prefill, wl, rng)
    if 2 * pcap.batch_time_s > ttft_target_s:
        raise ValueError(
            f"A full prefill batch takes {pcap.batch_time_s:.2f} s, more than half the TTFT target "
            f"{ttft_target_s:.2f} s: use smaller prefill batches (max_tokens_per_gpu)."
        )
    rho = 1.0 - pcap.batch_time_s / ttft_target_s
    price = price_range(g.price, usd_per_gpu_hour)
    pre, dec, nodes = [], [], []
    for rate in load_curve.arrival_rate_per_s:
        d = math.ceil(rate / dcap.requests_per_s_per_instance) if rate > 0 else 0
        p = math.ceil(rate / (pcap.requests_per_s_per_instance * rho)) if rate > 0 else 0
        pre.append(p)
        dec.append(d)
        nodes.append(p * dep.prefill.nodes + d * dep.decode.nodes)
    gpu_hours = (
        sum(nodes) * g.node.gpus_per_node
        if dep.prefill.gpus_per_node == g.node.gpus_per_node
        else sum(p * dep.prefill.gpus + d * dep.decode.gpus for p, d in zip(pre, dec, strict=True))
    )
    notes = (
        f"decode: {dcap.batch_per_gpu} requests per GPU (limit: {dcap.limit}), "
        f"{dcap.tokens_per_s_per_user:.1f} "
        f"tok/s/user, {dcap.output_tokens_per_s_per_gpu * g.node.gpus_per_node:.0f} output tok/s per node",
        f"prefill: {pcap.input_tokens_per_s_per_instance / dep.prefill.nodes:.0f} input tok/s per node "
        "at full "
        f"batches, run at utilisation <= {rho:.2f} for TTFT {ttft_target_s:.1f} s",
    )
    return FleetPlan(
        tuple(pre),
        tuple(dec),
        tuple(nodes),
        gpu_hours * price.usd_per_gpu_hour,
        gpu_hours * price.usd_per_gpu_hour_low,
        gpu_hours * price.usd_per_gpu_hour_high,
        float(np.mean(nodes)),
        dcap,
        pcap,
        rho,
        notes,
    )


# ------------------------------------------------------------------------------------------------
# ISCA'25 decode bound


@dataclass(frozen=True)
class DecodeBound(Record):
    ep_step_s: float
    layer_s: float
    tpot_s: float
    tokens_per_s_per_user: float


def isca_decode_bound(
    gpu: str | GPUProfile = "H800",
    tokens_per_expert: int = 32,
    experts_per_token: int = 9,
    hidden_size: int = 7000,
    num_layers: int = 61,
    dispatch_bytes: float = 1.0,
    combine_bytes: float = 2.0,
) -> DecodeBound:
    """ISCA'25 section 2.3.2's upper bound on decode speed over the scale-out network.

    Computation and network latency are zero; each GPU sends and receives tokens_per_expert x
    experts_per_token hidden vectors per dispatch (dispatch_bytes per value) and per combine
    (combine_bytes) at the NIC's peak bandwidth per direction; two micro-batches overlap, so a layer
    costs two EP steps (the same two-stream schedule as the simulator, with zero compute).
    """
    import gpus

    for name, count in (
        ("tokens_per_expert", tokens_per_expert),
        ("experts_per_token", experts_per_token),
        ("hidden_size", hidden_size),
        ("num_layers", num_layers),
    ):
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {count!r}.")
    for name, size in (("dispatch_bytes", dispatch_bytes), ("combine_bytes", combine_bytes)):
        if not is_finite_number(size) or size <= 0:
            raise ValueError(f"{name} (bytes per value) must be a finite number > 0, got {size!r}.")
    g = gpus.get(gpu) if isinstance(gpu, str) else gpu
    cluster = gpus.Cluster(g, nodes=2, gpus_per_node=g.node.gpus_per_node)
    ib = comm.link(cluster, "ib")
    bandwidth = ib.peak_bandwidth_bytes_per_s
    values = tokens_per_expert * experts_per_token * hidden_size
    dispatch = values * dispatch_bytes / bandwidth
    combine = values * combine_bytes / bandwidth
    # two micro-batches of tokens_per_expert tokens each
    layers = [LayerCost(0.0, 0.0, dispatch, combine)] * num_layers
    sched = two_stream_schedule(layers, 2)
    return DecodeBound(dispatch + combine, sched.total_s / num_layers, sched.total_s, 1.0 / sched.total_s)


def verify_fleet_hour(
    model: str | MoEModel,
    gpu: str | GPUProfile,
    deployment: Mapping[str, Any],
    workload: Mapping[str, Any],
    plan: FleetPlan,
    load_curve: DailyLoadCurve,
    hour: int,
    duration_s: float = 240.0,
    warmup_s: float = 120.0,
    usd_per_gpu_hour: float | None = None,
    seed: int = 0,
) -> ServingResult:
    """Simulate one hour's plan with the discrete-event engine (open loop, Poisson at that hour's rate).

    The fleet is divided by the greatest common divisor of its prefill and decode instance counts
    (instances scale linearly, a property the tests check), so the run is a slice of the fleet.
    """
    from sim.serving.api import estimate_serving

    if isinstance(hour, bool) or not isinstance(hour, int | np.integer) or not 0 <= hour < 24:
        raise ValueError(f"hour must be a whole number 0..23 (hour 0 = the curve's first), got {hour!r}.")
    p, d = plan.prefill_instances_by_hour[hour], plan.decode_instances_by_hour[hour]
    if p == 0 or d == 0:
        raise ValueError(f"Hour {hour} has no load to simulate.")
    k = math.gcd(p, d)
    dep = {
        "mode": "disaggregated",
        "prefill": {**deployment["prefill"], "instances": p // k},
        "decode": {**deployment["decode"], "instances": d // k},
    }
    spec = {
        key: v for key, v in workload.items() if key not in ("concurrency", "arrival_rate_per_s", "trace")
    }
    spec["arrival_rate_per_s"] = load_curve.arrival_rate_per_s[hour] / k
    return estimate_serving(
        model,
        gpu,
        dep,
        spec,
        usd_per_gpu_hour=usd_per_gpu_hour,
        duration_s=duration_s,
        seed=seed,
        warmup_s=warmup_s,
    )
