"""``sim.estimate_serving``: run the serving simulation and report DESIGN.md's figures.

Result meanings (DESIGN.md): "per node" is per node of that role (prefill or decode nodes; in
colocated mode, all nodes); prefill input tokens count cache hits; ``output_tokens_per_s_per_gpu``
and ``total_tokens_per_s_per_gpu`` divide by every GPU of the deployment; ``tokens_per_s_per_user``
is the mean over requests of 1/TPOT.

Cost: each role's GPU-hours are charged to the tokens that role produced (prefill GPUs to input
tokens, decode GPUs to output tokens; colocated iterations split by their share of prefill and
decode tokens). Input cost splits into cache hits (the prefill time their prefix adds to the
attention of the new tokens) and misses (the rest). ``cost_range`` gives each USD figure at the low
and high ends of the GPU profile's price range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.cost import PriceRange, TCOSpec, price_range, usd_per_million_tokens
from sim.serving.deployment import Deployment, memory_plan, parse_deployment
from sim.serving.engine import Simulation
from sim.serving.metrics import latency_stats
from sim.serving.workloads import Workload, parse_workload

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel

# MTP as DeepSeek runs it for V3 when a workload does not say: one draft token (V3 has one MTP module),
# second-token acceptance 85% (V3-TR section 5.4.3: "between 85% and 90%"; the low end, for a production
# mix of tasks). Models without MTP modules draft nothing. Why on: the V3 report and ISCA'25 (p.5)
# present MTP speculative decoding as part of V3's inference (1.8x TPS), and DeepSeek states its own
# decode kernels' figures at two query tokens per request (FlashMLA sparse decode for V3.2, 2025-09:
# B=128, h=128, s_q=2; deepseek_figures.md section 4.3), the shape one draft token gives; that is later
# than Day 6 (2025-02), so it shows the practice, not the Day-6 setting. Against: Day 6 and the
# profile-data README describe the deployment without naming MTP. Day-6 figures with and without it
# are in tests/sim/serving/test_serving_reference.py.
DEFAULT_MTP_ACCEPTANCE = 0.85


@dataclass(frozen=True)
class ServingResult:
    """Figures of one serving run (DESIGN.md names; SI units; USD)."""

    model: str
    gpu: str
    mode: str
    prefill_input_tokens_per_s_per_node: float
    decode_output_tokens_per_s_per_node: float
    output_tokens_per_s_per_gpu: float
    total_tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float
    ttft_p50_s: float
    ttft_p99_s: float
    tpot_p50_s: float
    tpot_p99_s: float
    usd_per_million_input_tokens: float
    usd_per_million_output_tokens: float
    usd_per_million_input_tokens_cache_hit: float
    usd_per_million_input_tokens_cache_miss: float
    cost_range: dict[str, tuple[float, float]]
    usd_per_gpu_hour: float
    input_tokens_per_s: float
    output_tokens_per_s: float
    requests_per_s: float
    mean_requests_in_system: float
    e2e_mean_s: float
    e2e_p50_s: float
    e2e_p99_s: float
    ttft_mean_s: float
    tpot_mean_s: float
    queueing_mean_s: float
    queueing_p99_s: float
    decode_wait_mean_s: float  # first token to admission into a decode batch (KV transfer, capacity)
    num_requests: int
    prefill_nodes: int
    decode_nodes: int
    total_gpus: int
    utilisation: dict[str, float]
    mean_batch_per_gpu: dict[str, float]
    # decode roles: KV tokens on the busiest attention-DP rank over the ranks' mean, mean over steps
    kv_imbalance: dict[str, float]
    bound_by: str
    breakdown_s: dict[str, dict[str, float]]
    memory: dict[str, dict[str, float]]
    workload: dict[str, Any]
    deployment: dict[str, Any]
    duration_s: float
    warmup_s: float
    events: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cost_range"] = {k: list(v) for k, v in self.cost_range.items()}
        out["notes"] = list(self.notes)
        return out


def _resolve(model: str | MoEModel, gpu: str | GPUProfile) -> tuple[MoEModel, GPUProfile]:
    import gpus
    import moe

    m = moe.get(model) if isinstance(model, str) else model
    g = gpus.get(gpu) if isinstance(gpu, str) else gpu
    return m, g


def estimate_serving(
    model: str | MoEModel,
    gpu: str | GPUProfile,
    deployment: Mapping[str, Any],
    workload: Mapping[str, Any],
    usd_per_gpu_hour: float | None = None,
    duration_s: float = 600.0,
    seed: int = 0,
    warmup_s: float | None = None,
    tco: TCOSpec | Mapping[str, Any] | None = None,
) -> ServingResult:
    """Simulate ``duration_s`` seconds of serving after a warm-up (default: a quarter of the duration)
    and return the figures of DESIGN.md. Unknown deployment or workload keys are ValueErrors.

    A workload with ``requests`` is a finite benchmark instead (an offline batch at t = 0, or a
    bounded closed or open loop): it runs until its last request finishes and every figure is
    measured over that makespan (``sim/serving/workloads.py``)."""
    result, _ = simulate(model, gpu, deployment, workload, usd_per_gpu_hour, duration_s, seed, warmup_s, tco)
    return result


def simulate(
    model: str | MoEModel,
    gpu: str | GPUProfile,
    deployment: Mapping[str, Any],
    workload: Mapping[str, Any],
    usd_per_gpu_hour: float | None = None,
    duration_s: float = 600.0,
    seed: int = 0,
    warmup_s: float | None = None,
    tco: TCOSpec | Mapping[str, Any] | None = None,
) -> tuple[ServingResult, dict[str, np.ndarray]]:
    """As :func:`estimate_serving`, plus the per-request table: columns ``arrival_s``,
    ``prefill_start_s``, ``first_token_s``, ``decode_admit_s``, ``finish_s`` (NaN where not reached),
    ``input_len``, ``output_len``, ``cached_tokens``, and derived ``ttft_s``, ``tpot_s``, ``e2e_s``,
    ``queueing_s`` (seconds), one row per request in creation order, warm-up included."""
    m, g = _resolve(model, gpu)
    if not (isinstance(duration_s, int | float) and math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a positive number of seconds, got {duration_s!r}.")
    warm = duration_s / 4.0 if warmup_s is None else warmup_s
    if not (isinstance(warm, int | float) and math.isfinite(warm) and warm >= 0):
        raise ValueError(f"warmup_s must be a number of seconds >= 0, got {warmup_s!r}.")
    default_draft = min(1, int(getattr(m, "num_mtp_modules", 0) or 0))
    wl = parse_workload(
        workload, default_mtp_draft_tokens=default_draft, default_mtp_acceptance=DEFAULT_MTP_ACCEPTANCE
    )
    dep = parse_deployment(deployment, m, g)
    price = price_range(g.price, usd_per_gpu_hour, tco)
    rng = np.random.default_rng(seed)
    sim = Simulation(m, g, dep, wl, float(duration_s), float(warm), rng)
    sim.run()
    return summarise(sim, m, g, dep, wl, price), request_table(sim)


def request_table(sim: Simulation) -> dict[str, np.ndarray]:
    log = sim.log
    table = {name: log.column(name).copy() for name in log.times}
    table["input_len"] = log.input_len[: log.size].copy()
    table["output_len"] = log.output_len[: log.size].copy()
    table["cached_tokens"] = log.cached_tokens[: log.size].copy()
    table["ttft_s"] = table["first_token_s"] - table["arrival_s"]
    table["e2e_s"] = table["finish_s"] - table["arrival_s"]
    table["queueing_s"] = table["prefill_start_s"] - table["arrival_s"]
    steps = np.maximum(table["output_len"] - 1, 1)
    tpot = (table["finish_s"] - table["first_token_s"]) / steps
    table["tpot_s"] = np.where(table["output_len"] > 1, tpot, np.nan)
    return table


def summarise(
    sim: Simulation, model: MoEModel, gpu: GPUProfile, dep: Deployment, wl: Workload, price: PriceRange
) -> ServingResult:
    window = sim.end_s - sim.start_s
    stats = latency_stats(sim.log, sim.start_s, sim.end_s)
    in_tok = sim.input_tokens.total / window
    hit_tok = sim.cached_input_tokens.total / window
    out_tok = sim.output_tokens.total / window
    total_gpus = dep.total_gpus
    if dep.mode == "disaggregated":
        assert dep.prefill is not None and dep.decode is not None
        p_nodes, d_nodes = dep.prefill.total_nodes, dep.decode.total_nodes
        p_gpus, d_gpus = dep.prefill.total_gpus, dep.decode.total_gpus
        p_stats = sim.stats["prefill"]
        busy_p = p_stats.busy_s / (window * dep.prefill.instances)
        hit_frac = p_stats.hit_s / p_stats.busy_s if p_stats.busy_s else 0.0
        prefill_gpu_share = float(p_gpus)
        decode_gpu_share = float(d_gpus)
        prefill_per_node = in_tok / p_nodes
        decode_per_node = out_tok / d_nodes
    else:
        assert dep.colocated is not None
        p_nodes = d_nodes = dep.colocated.total_nodes
        c_stats = sim.stats["colocated"]
        share = c_stats.breakdown_s.get("prefill_share_s", 0.0) / c_stats.busy_s if c_stats.busy_s else 0.0
        prefill_gpu_share = total_gpus * share
        decode_gpu_share = total_gpus * (1.0 - share)
        prefill_s = c_stats.breakdown_s.get("prefill_share_s", 0.0)
        hit_frac = min(1.0, c_stats.hit_s / prefill_s) if prefill_s else 0.0
        prefill_per_node = in_tok / p_nodes
        decode_per_node = out_tok / d_nodes
        busy_p = 0.0

    def costs(usd_h: float) -> dict[str, float]:
        miss_tok = max(0.0, in_tok - hit_tok)  # the two are sums of step shares: no rounding below 0
        return {
            "usd_per_million_input_tokens": usd_per_million_tokens(prefill_gpu_share, usd_h, in_tok),
            "usd_per_million_output_tokens": usd_per_million_tokens(decode_gpu_share, usd_h, out_tok),
            "usd_per_million_input_tokens_cache_hit": (
                usd_per_million_tokens(prefill_gpu_share * hit_frac, usd_h, hit_tok)
                if hit_tok > 0
                else math.nan
            ),
            "usd_per_million_input_tokens_cache_miss": usd_per_million_tokens(
                prefill_gpu_share * max(0.0, 1.0 - hit_frac), usd_h, miss_tok
            ),
        }

    mid = costs(price.usd_per_gpu_hour)
    low = costs(price.usd_per_gpu_hour_low)
    high = costs(price.usd_per_gpu_hour_high)
    cost_range = {k: (low[k], high[k]) for k in mid}

    utilisation: dict[str, float] = {}
    batch: dict[str, float] = {}
    imbalance: dict[str, float] = {}
    breakdown: dict[str, dict[str, float]] = {}
    memory: dict[str, dict[str, float]] = {}
    bounds: list[str] = []
    for spec in dep.instances:
        st = sim.stats[spec.role]
        utilisation[spec.role] = st.busy_s / (window * spec.instances)
        batch[spec.role] = (st.batch_sum / st.steps / spec.attn_dp) if st.steps else 0.0
        breakdown[spec.role] = dict(st.breakdown_s)
        if spec.role != "prefill":
            imbalance[spec.role] = (
                st.kv_imbalance_sum / st.kv_imbalance_steps if st.kv_imbalance_steps else math.nan
            )
            memory[spec.role] = memory_plan(model, gpu, spec, wl.mtp_draft_tokens).to_dict()
        step_bound = max(st.bound_votes, key=lambda k: st.bound_votes[k]) if st.bound_votes else "idle"
        if st.steps and st.kv_blocked_steps > 0.5 * st.steps:
            step_bound = "kv_capacity"
        bounds.append(f"{spec.role}: {step_bound} (busy {utilisation[spec.role]:.0%})")
    if dep.mode == "disaggregated":
        # The role that bounds throughput is the one requests wait for. A decode instance steps
        # whenever it holds a request, so its busy time says nothing of saturation; prefill is
        # the bound when it is saturated and requests wait longer for it than for admission
        # into a decode batch (a closed loop starved by too little prefill: decode runs small
        # batches back to back).
        d_stats = sim.stats["decode"]
        kv_bound = bool(d_stats.steps and d_stats.kv_blocked_steps > 0.5 * d_stats.steps)
        decode_wait = stats.decode_wait_mean_s if math.isfinite(stats.decode_wait_mean_s) else 0.0
        prefill_wait = stats.queueing_mean_s if math.isfinite(stats.queueing_mean_s) else 0.0
        limiting = "prefill" if (not kv_bound and busy_p > 0.95 and prefill_wait > decode_wait) else "decode"
        bound_by = f"{limiting}; " + "; ".join(bounds)
    else:
        bound_by = "; ".join(bounds)
    notes = [
        f"MTP: {wl.mtp_draft_tokens} draft token(s), acceptance {wl.mtp_acceptance:.2f}, "
        f"{wl.tokens_per_decode_step:.3f} tokens per request per decode step",
        f"price {price.usd_per_gpu_hour:.3f} USD/GPU-h (range {price.usd_per_gpu_hour_low:.3f}-"
        f"{price.usd_per_gpu_hour_high:.3f}); {price.source[:120]}",
    ]
    if sim.window_open > 0:
        notes.append(
            f"{sim.window_open} of the requests that arrived in the measured window had not finished "
            f"{sim.drain_limit_s - sim.end_s:.0f} s after it (the simulation follows them that long); "
            "latency and per-user figures leave them out"
        )
    if wl.finite:
        notes.append(
            f"a finite benchmark of {wl.requests} requests ({wl.kind}): figures are measured over its "
            f"makespan ({window:.1f} s, first arrival to last completion), warm-up and tail included, "
            "as benchmark tools measure them; duration_s and warmup_s do not apply"
        )
    elif stats.num_requests and math.isfinite(stats.e2e_mean_s) and window < 2.0 * stats.e2e_mean_s:
        notes.append(
            f"the measured window ({window:.0f} s) spans fewer than two request lifetimes (mean end-to-end "
            f"{stats.e2e_mean_s:.0f} s): throughput and cost depend on where it falls; a longer duration_s "
            "averages them"
        )
    if sim.window_arrivals == 0:
        notes.append(
            "no request arrived in the measured window (a closed loop whose requests all outlast it): "
            "latency and per-user figures are NaN; raise duration_s above a request's end-to-end time"
        )
    completed = sim.completed_in_window / window
    return ServingResult(
        model=str(getattr(model, "name", model)),
        gpu=str(getattr(gpu, "name", gpu)),
        mode=dep.mode,
        prefill_input_tokens_per_s_per_node=prefill_per_node,
        decode_output_tokens_per_s_per_node=decode_per_node,
        output_tokens_per_s_per_gpu=out_tok / total_gpus,
        total_tokens_per_s_per_gpu=(in_tok + out_tok) / total_gpus,
        tokens_per_s_per_user=stats.tokens_per_s_per_user,
        ttft_p50_s=stats.ttft_p50_s,
        ttft_p99_s=stats.ttft_p99_s,
        tpot_p50_s=stats.tpot_p50_s,
        tpot_p99_s=stats.tpot_p99_s,
        usd_per_million_input_tokens=mid["usd_per_million_input_tokens"],
        usd_per_million_output_tokens=mid["usd_per_million_output_tokens"],
        usd_per_million_input_tokens_cache_hit=mid["usd_per_million_input_tokens_cache_hit"],
        usd_per_million_input_tokens_cache_miss=mid["usd_per_million_input_tokens_cache_miss"],
        cost_range=cost_range,
        usd_per_gpu_hour=price.usd_per_gpu_hour,
        input_tokens_per_s=in_tok,
        output_tokens_per_s=out_tok,
        requests_per_s=completed,
        mean_requests_in_system=completed * stats.e2e_mean_s if stats.num_requests else math.nan,
        e2e_mean_s=stats.e2e_mean_s,
        e2e_p50_s=stats.e2e_p50_s,
        e2e_p99_s=stats.e2e_p99_s,
        ttft_mean_s=stats.ttft_mean_s,
        tpot_mean_s=stats.tpot_mean_s,
        queueing_mean_s=stats.queueing_mean_s,
        queueing_p99_s=stats.queueing_p99_s,
        decode_wait_mean_s=stats.decode_wait_mean_s,
        num_requests=stats.num_requests,
        prefill_nodes=p_nodes,
        decode_nodes=d_nodes,
        total_gpus=total_gpus,
        utilisation=utilisation,
        mean_batch_per_gpu=batch,
        kv_imbalance=imbalance,
        bound_by=bound_by,
        breakdown_s=breakdown,
        memory=memory,
        workload=wl.to_dict(),
        deployment=dep.to_dict(),
        duration_s=window,
        warmup_s=sim.start_s,
        events=sim.events,
        notes=tuple(notes),
    )
