"""Capacity at a latency target, fleet sizing over a daily load curve, bounds and projections.

These use the same step-cost model as the simulator (:class:`sim.serving.stepcost.StepCostModel`)
analytically: a decode instance whose every request sees the mean KV length runs steps of
``decode_step(batch, kv)``; its TPOT is step time / tokens per step. The simulator also charges
core attention at the busiest attention-DP rank's KV (``ServingResult.kv_imbalance``, a few
percent above the mean at the Day-6 shape); these analytic sizes do not. Fleet sizes are checked
against the discrete-event simulation in the tests and the report (one instance pair at the
per-instance load: instances scale linearly, a property the tests check).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sim import comm
from sim.cost import SECONDS_PER_HOUR, api_price, is_finite_number, price_range
from sim.serving.deployment import InstanceSpec, memory_plan, parse_deployment
from sim.serving.stepcost import LayerCost, StepCostModel, two_stream_schedule
from sim.serving.workloads import DailyLoadCurve, Workload, parse_workload

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel
    from sim.serving.api import ServingResult


@dataclass(frozen=True)
class DecodeCapacity:
    """Largest decode batch per attention-data-parallel rank (``batch_per_gpu``: a rank is one GPU,
    or ``tp`` GPUs with tensor-parallel attention) meeting a TPOT target, and what it yields."""

    feasible: bool
    batch_per_gpu: int
    step_time_s: float
    tpot_s: float
    tokens_per_s_per_user: float
    output_tokens_per_s_per_gpu: float
    requests_per_s_per_instance: float
    bound_by: str
    limit: str  # what stopped the batch growing: "latency", "kv_capacity", "max_batch"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decode_capacity(
    model: MoEModel,
    gpu: GPUProfile,
    inst: InstanceSpec,
    workload: Workload,
    tpot_target_s: float,
    rng: np.random.Generator | None = None,
    max_batch: int = 1024,
) -> DecodeCapacity:
    """Bisection on the batch per GPU for the largest with step / tokens-per-step <= target."""
    rng = rng if rng is not None else np.random.default_rng(0)
    cost = StepCostModel(model, gpu, inst, workload.mtp_draft_tokens, rng)
    r = workload.tokens_per_decode_step
    n_in, n_out = workload.mean_input_len, workload.mean_output_len
    kv = int(round(n_in + n_out / 2.0))
    plan = memory_plan(model, gpu, inst, workload.mtp_draft_tokens)
    kv_cap = int(plan.kv_capacity_tokens // inst.attn_dp // (n_in + n_out))
    cap = min(max_batch, kv_cap, inst.max_batch_per_gpu or max_batch)
    if cap < 1:
        return DecodeCapacity(False, 0, math.nan, math.nan, 0.0, 0.0, 0.0, "kv_capacity", "kv_capacity")

    def tpot(b: int) -> float:
        return cost.decode_step(b, kv).time_s / r

    if tpot(1) > tpot_target_s:
        step = cost.decode_step(1, kv)
        return DecodeCapacity(
            False, 0, step.time_s, step.time_s / r, r / step.time_s, 0.0, 0.0, step.bound_by, "latency"
        )
    lo, hi = 1, cap
    if tpot(hi) <= tpot_target_s:
        lo = hi
        limit = "kv_capacity" if cap == kv_cap else "max_batch"
    else:
        limit = "latency"
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if tpot(mid) <= tpot_target_s:
                lo = mid
            else:
                hi = mid
    step = cost.decode_step(lo, kv)
    per_gpu = lo * r / step.time_s / inst.tp  # ``lo`` requests per attention rank of tp GPUs
    return DecodeCapacity(
        True,
        lo,
        step.time_s,
        step.time_s / r,
        r / step.time_s,
        per_gpu,
        per_gpu * inst.gpus / max(n_out, 1.0),
        step.bound_by,
        limit,
    )


@dataclass(frozen=True)
class PrefillCapacity:
    input_tokens_per_s_per_instance: float
    computed_tokens_per_s_per_instance: float
    batch_time_s: float
    requests_per_s_per_instance: float
    bound_by: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    dcap = decode_capacity(m, g, dep.decode, wl, tpot_target_s, rng)
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
class DecodeBound:
    ep_step_s: float
    layer_s: float
    tpot_s: float
    tokens_per_s_per_user: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


# ------------------------------------------------------------------------------------------------
# Projections


def _api_output_price(model_name: str) -> float | None:
    """DeepSeek's API list price per million output tokens (sim/data/api_prices.toml), or None."""
    price = api_price(model_name)
    return None if price is None else price.usd_per_million_output


PROJECTION_NODES = (1, 2, 4, 8, 16, 18, 32)
PROJECTION_TP = (1, 2, 4, 8)  # attention tensor parallelism inside a node (where it divides the node)


def projections(
    models: Sequence[str] = ("deepseek-v4-flash", "deepseek-v4-pro"),
    gpu_names: Sequence[str] = ("H100", "H800", "H20", "A800"),
    tokens_per_s_per_user: Sequence[float] = (20.0, 50.0, 100.0),
    input_len: float = 4383,
    output_len: float = 1211,
    cache_hit_rate: float = 0.563,
    nodes_options: Sequence[int] = PROJECTION_NODES,
    tp_options: Sequence[int] = PROJECTION_TP,
) -> list[dict[str, Any]]:
    """USD per million output tokens of decode at each interactivity target, for each model and GPU.

    For each decode instance shape (nodes; attention tensor-parallel over ``tp`` GPUs of a node and
    data-parallel over the rest, ``tp`` dividing the node; EP over all its GPUs; the model's own MTP
    with 85% acceptance; KV cache in FP8 where the GPU has FP8 and BF16 otherwise), the largest batch
    meeting the target TPOT; the cheapest per output token wins. Priced at each GPU profile's rental
    price (and its low-high range). "infeasible" names the bound of the fastest single-request step
    when no shape meets the target (tensor parallelism is what shortens that step: it splits the
    attention and dense weights that every step reads).
    """
    import gpus
    import moe

    for name, options in (("nodes_options", nodes_options), ("tp_options", tp_options)):
        if not options or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in options):
            raise ValueError(f"{name} must be a non-empty list of whole numbers >= 1, got {options!r}.")
    rows = []
    for model_name in models:
        m = moe.get(model_name)
        for gpu_name in gpu_names:
            g = gpus.get(gpu_name)
            wl = parse_workload(
                {
                    "input_len": input_len,
                    "output_len": output_len,
                    "cache_hit_rate": cache_hit_rate,
                    "arrival_rate_per_s": 1.0,
                },
                default_mtp_draft_tokens=min(1, int(m.num_mtp_modules or 0)),
                default_mtp_acceptance=0.85,
            )
            price = price_range(g.price)
            for target in tokens_per_s_per_user:
                best: dict[str, Any] | None = None
                fastest: tuple[float, str] | None = None
                shapes = [(n, t) for n in nodes_options for t in tp_options if g.node.gpus_per_node % t == 0]
                for nodes, tp in shapes:
                    num = nodes * g.node.gpus_per_node
                    ep = num
                    routed = int(m.num_routed_experts)
                    redundant = (-routed) % ep
                    spec = {
                        "nodes": nodes,
                        "tp": tp,
                        "ep": ep,
                        "redundant_experts": redundant,
                        "kv_dtype": "fp8" if g.supports("fp8") else "bf16",
                    }
                    try:
                        dep = parse_deployment(
                            {"mode": "disaggregated", "prefill": spec, "decode": spec}, m, g
                        )
                    except ValueError as err:
                        if fastest is None:
                            fastest = (math.inf, "memory capacity: " + str(err).split(":")[0])
                        continue
                    assert dep.decode is not None
                    cap = decode_capacity(m, g, dep.decode, wl, 1.0 / target)
                    if not cap.feasible:
                        if fastest is None or cap.tpot_s < fastest[0]:
                            fastest = (
                                cap.tpot_s,
                                f"{cap.bound_by} (one request: "
                                f"{cap.tokens_per_s_per_user:.0f} tok/s/user on {nodes} nodes, tp {tp})",
                            )
                        continue
                    usd = price.usd_per_gpu_hour / SECONDS_PER_HOUR / cap.output_tokens_per_s_per_gpu * 1e6
                    if best is None or usd < best["usd_per_million_output_tokens"]:
                        best = {
                            "usd_per_million_output_tokens": usd,
                            "usd_low": price.usd_per_gpu_hour_low
                            / SECONDS_PER_HOUR
                            / cap.output_tokens_per_s_per_gpu
                            * 1e6,
                            "usd_high": price.usd_per_gpu_hour_high
                            / SECONDS_PER_HOUR
                            / cap.output_tokens_per_s_per_gpu
                            * 1e6,
                            "decode_nodes": nodes,
                            "tp": tp,
                            "batch_per_gpu": cap.batch_per_gpu,
                            "bound_by": cap.bound_by,
                            "limit": cap.limit,
                        }
                row: dict[str, Any] = {
                    "model": model_name,
                    "gpu": gpu_name,
                    "tokens_per_s_per_user": target,
                    "api_usd_per_million_output": _api_output_price(model_name),
                }
                if best is None:
                    row["result"] = "infeasible"
                    row["bound_by"] = fastest[1] if fastest else "unknown"
                else:
                    row["result"] = "ok"
                    row.update(best)
                rows.append(row)
    return rows


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
