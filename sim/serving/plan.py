"""``sim.plan_serving``: the cheapest deployment that meets a latency target, across GPUs.

Two stages, one cost model.

1. **Screen.** Every configuration (one fully specified deployment: mode, nodes, TP, MoE TP, EP,
   attention DP, stack, weight and KV dtypes, MTP on or off, decode batch cap, prefill batch size,
   prefill:decode ratio) is costed at its operating point in closed form from the step costs the
   discrete-event engines charge (:class:`sim.serving.stepcost.StepCostModel`): a decode instance
   whose every request sees the mean KV length (input + half the output) runs steps of
   ``decode_step(batch, kv)``, its TPOT is step time / tokens per step (MTP), and its operating
   batch is the largest one that meets the TPOT target, fits the KV cache and the batch cap. Step
   costs are cached per instance shape, so every configuration that shares a shape (stacks that
   set the same kernels, batch caps, prefill pairings) reuses them: that reuse, and a bound that
   skips shapes which cannot beat the best plan found or reach the Pareto front, is what makes the
   screen fast.
2. **Refinement.** The ``refine_top`` cheapest plans are simulated with the discrete-event engine
   (:func:`sim.serving.api.estimate_serving`, a closed loop at the plan's operating batch), and
   the ranking is redone on the simulated cost.

Prefill (disaggregated): a prefill instance runs full batches of ``max_tokens_per_gpu`` tokens per
GPU, formed as the engine forms them (:func:`_prefill_capacity`); an arriving request waits for the batch in
progress and then its own, so the TTFT target holds while 2 x batch time <= target, at a
utilisation of at most 1 - batch time / target (as :func:`sim.serving.fleet.size_fleet`). The
prefill shape with the fewest GPU-seconds per request is paired with each decode shape, and the
prefill:decode ratio is the smallest whole-number ratio (up to ``max_decode_instances`` decode
instances) whose prefill keeps up with the decode instances' request rate.

Colocated: an iteration carries the decode batch and, on average, the prefill of
``q = batch x attn_dp x tokens per step / output length`` new requests (continuous batching with
chunked prefill, :meth:`StepCostModel.mixed_step`); the mean iteration time mixes iterations with
``floor(q)`` and ``ceil(q)`` requests' prefill (one request's attention at least, as the engine
charges the busiest rank).

Cost: every GPU of the deployment (prefill included), at the GPU profile's rental price (or
``usd_per_gpu_hour``), per million output tokens at the workload's input mix; tokens/s per GPU
divides output tokens by every GPU.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.calibration import files_held
from sim.cost import SECONDS_PER_HOUR, is_finite_number, price_range
from sim.record import Record
from sim.serving.deployment import (
    DEFAULT_PREFILL_TOKENS_PER_GPU,
    InstanceSpec,
    memory_plan,
    parse_instance,
)
from sim.serving.stack import get as get_stack
from sim.serving.stack import names as stack_names
from sim.serving.stepcost import StepCost, StepCostModel
from sim.serving.workloads import LengthSpec, Workload, parse_workload

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel
    from sim.serving.api import ServingResult

__all__ = [
    "DecodeCapacity",
    "PrefillCapacity",
    "ServingPlan",
    "ServingSearch",
    "ServingSpace",
    "ServingTargets",
    "decode_operating_point",
    "framework_flags",
    "plan_serving",
    "refine_plan",
]

TARGET_KEYS = frozenset({"tpot_p50_s", "ttft_p99_s", "tokens_per_s_per_user", "max_gpus", "max_usd_per_hour"})
# The stated default (CLI and API): DeepSeek's Day-6 request mix (open-infra-index, 2025-02: 608B input and
# 168B output tokens a day, 56.3% of the input a cache hit; mean lengths as sim.serving.workloads derives),
# at 20 tokens/s per user (Day 6 reports 20-22) and a TTFT p99 of 5 s (not published: an assumption).
DEFAULT_WORKLOAD = {"input_len": 4383, "output_len": 1211, "cache_hit_rate": 0.563}
DEFAULT_TARGETS = {"tokens_per_s_per_user": 20.0, "ttft_p99_s": 5.0}
MTP_ACCEPTANCE = 0.85  # as sim.serving.api.DEFAULT_MTP_ACCEPTANCE (V3-TR section 5.4.3, the low end)
REJECTIONS = ("does not fit", "misses the target", "exceeds the budget")
# a simulated TPOT p50 within 5% of the limit meets it: MTP acceptance makes each request's TPOT a draw
TPOT_TOLERANCE = 1.05


@dataclass(frozen=True)
class ServingTargets:
    """What a plan must meet: TPOT p50 and TTFT p99 (seconds), tokens/s per user (a floor, i.e. a
    TPOT of at most 1 / that), and a budget in GPUs or USD per hour for the whole deployment."""

    tpot_p50_s: float | None = None
    ttft_p99_s: float | None = None
    tokens_per_s_per_user: float | None = None
    max_gpus: int | None = None
    max_usd_per_hour: float | None = None

    @property
    def tpot_limit_s(self) -> float:
        limits = [math.inf]
        if self.tpot_p50_s is not None:
            limits.append(self.tpot_p50_s)
        if self.tokens_per_s_per_user is not None:
            limits.append(1.0 / self.tokens_per_s_per_user)
        return min(limits)

    @property
    def ttft_limit_s(self) -> float:
        return math.inf if self.ttft_p99_s is None else self.ttft_p99_s

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def parse_targets(spec: Mapping[str, Any] | ServingTargets | None) -> ServingTargets:
    """Check a targets dict (:data:`TARGET_KEYS`); None gives :data:`DEFAULT_TARGETS`."""
    if isinstance(spec, ServingTargets):
        return spec
    spec = DEFAULT_TARGETS if spec is None else spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"targets must be a dict of {sorted(TARGET_KEYS)}, got {type(spec).__name__}.")
    unknown = set(spec) - TARGET_KEYS
    if unknown:
        raise ValueError(f"Unknown target keys {sorted(unknown)}; allowed: {sorted(TARGET_KEYS)}.")
    values: dict[str, Any] = {}
    for key, value in spec.items():
        if value is None:
            continue
        if key == "max_gpus":
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"max_gpus must be a whole number >= 1, got {value!r}.")
            values[key] = int(value)
        else:
            if not is_finite_number(value) or value <= 0:
                raise ValueError(f"target {key} must be a finite number > 0, got {value!r}.")
            values[key] = float(value)
    if not any(k in values for k in ("tpot_p50_s", "tokens_per_s_per_user", "ttft_p99_s")):
        raise ValueError(
            "targets need a latency goal: at least one of tpot_p50_s, tokens_per_s_per_user, ttft_p99_s."
        )
    return ServingTargets(**values)


@dataclass(frozen=True)
class ServingSpace(Record):
    """The deployment keys searched. ``weight_dtypes`` None: FP8 and BF16 (and FP4 where the GPU
    has FP4 tensor cores); ``stacks`` None: every stack file; ``mtp`` True/False: the model's own MTP
    depth (85% acceptance) or none. ``batch_caps`` are the decode batch caps per attention rank
    screened for the Pareto front (the cheapest plan's own cap is its operating batch)."""

    modes: tuple[str, ...] = ("disaggregated", "colocated")
    nodes: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    prefill_nodes: tuple[int, ...] = (1, 2, 4, 8)
    tp: tuple[int, ...] = (1, 2, 4, 8)
    moe_tp: tuple[int, ...] = (1, 2, 4, 8)
    weight_dtypes: tuple[str, ...] | None = None
    kv_dtypes: tuple[str, ...] = ("fp8", "bf16")
    mtp: tuple[bool, ...] = (True, False)
    stacks: tuple[str, ...] | None = None
    batch_caps: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    prefill_tokens_per_gpu: tuple[int, ...] = (DEFAULT_PREFILL_TOKENS_PER_GPU, 8192, 4096)
    chunk_tokens_per_gpu: tuple[int, ...] = (8192,)
    max_decode_instances: int = 8


DEEPSEEK_SPACE: Mapping[str, Any] = MappingProxyType(
    {
        "nodes": (1, 2, 4, 8, 16, 32),
        "prefill_nodes": (1, 2, 4),
        "tp": (1, 2, 4, 8),
        "moe_tp": (1,),
        "stacks": ("deepseek",),
        "weight_dtypes": ("fp8",),
        "kv_dtypes": ("fp8",),
        "mtp": (True,),
    }
)
"""DeepSeek's own way of serving, as a search space (notebooks 6 and 8 search it): its stack, FP8
weights and KV cache, the model's MTP, attention tensor-parallel over 1 to 8 GPUs of a node and
data-parallel over the rest, experts over all the instance's GPUs without MoE TP, 1 to 32 decode nodes
and 1 to 4 prefill nodes per instance; colocated or disaggregated, every batch cap."""


def parse_space(spec: Mapping[str, Any] | ServingSpace | None) -> ServingSpace:
    if spec is None:
        return ServingSpace()
    if isinstance(spec, ServingSpace):
        return spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"space must be a dict of ServingSpace fields, got {type(spec).__name__}.")
    fields = set(ServingSpace.__dataclass_fields__)
    unknown = set(spec) - fields
    if unknown:
        raise ValueError(f"Unknown search-space keys {sorted(unknown)}; allowed: {sorted(fields)}.")
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "max_decode_instances":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"max_decode_instances must be a whole number >= 1, got {value!r}.")
            out[key] = value
            continue
        if value is None and key in ("weight_dtypes", "stacks"):
            out[key] = None
            continue
        if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
            raise ValueError(f"space {key} must be a non-empty list, got {value!r}.")
        out[key] = tuple(value)
    space = ServingSpace(**out)
    for mode in space.modes:
        if mode not in ("disaggregated", "colocated"):
            raise ValueError(f"space modes must be 'disaggregated' or 'colocated', got {mode!r}.")
    for key in (
        "nodes",
        "prefill_nodes",
        "tp",
        "moe_tp",
        "batch_caps",
        "prefill_tokens_per_gpu",
        "chunk_tokens_per_gpu",
    ):
        for v in getattr(space, key):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"space {key} must hold whole numbers >= 1, got {v!r}.")
    return space


@dataclass(frozen=True)
class ServingPlan:
    """One ranked plan: its deployment (``sim.estimate_serving``'s dict), operating point, cost, what
    bounds it, the framework flags that run it, and (when refined) the simulated figures."""

    gpu: str
    mode: str
    deployment: dict[str, Any]
    workload: dict[str, Any]
    total_gpus: int
    usd_per_hour: float
    usd_per_million_output_tokens: float
    usd_per_million_output_tokens_range: tuple[float, float]
    usd_per_request: float
    usd_per_million_input_tokens: float
    output_tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float
    tpot_s: float
    ttft_estimate_s: float
    batch_per_gpu: int
    requests_per_s: float
    bound_by: str
    limit: str
    stacks: tuple[str, ...]
    flags: dict[str, str]
    simulated: dict[str, float] | None = None

    def summary(self) -> str:
        """The deployment in one line: instances x nodes and the parallel degrees of each role."""
        dep = self.deployment
        if self.mode == "colocated":
            roles = [("", dep)]
        else:
            roles = [("prefill ", dep["prefill"]), ("decode ", dep["decode"])]
        return "; ".join(
            f"{label}{s.get('instances', 1)} x {s['nodes']} nodes tp{s['tp']} dp{s['attn_dp']} "
            f"ep{s['ep']} moe_tp{s['moe_tp']} {s['weight_dtype']}/{s['kv_dtype']}"
            + (f" batch {s['max_batch_per_gpu']}" if s.get("max_batch_per_gpu") else "")
            for label, s in roles
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["usd_per_million_output_tokens_range"] = list(self.usd_per_million_output_tokens_range)
        out["stacks"] = list(self.stacks)
        return out


@dataclass(frozen=True)
class ServingSearch:
    """A plan search: ranked plans (cheapest first, simulated cost where refined), the Pareto front of
    cost against tokens/s per user (screened), why configurations were rejected, and its size."""

    model: str
    gpus: tuple[str, ...]
    workload: dict[str, Any]
    targets: dict[str, Any]
    plans: tuple[ServingPlan, ...]
    front: tuple[ServingPlan, ...]
    rejected: dict[str, int]
    rejected_examples: tuple[str, ...]
    space_size: int
    configurations_costed: int
    shapes_costed: int
    shapes_pruned: int
    step_evaluations: int
    refined: int
    wall_s: float
    screen_wall_s: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def best(self) -> ServingPlan:
        if not self.plans:
            raise ValueError(self.explain())
        return self.plans[0]

    @property
    def configurations_per_s(self) -> float:
        return self.configurations_costed / self.screen_wall_s if self.screen_wall_s > 0 else math.inf

    def explain(self) -> str:
        reasons = ", ".join(f"{n} {k}" for k, n in self.rejected.items() if n)
        first = " | ".join(self.rejected_examples[:3])
        return (
            f"No plan for {self.model} on {', '.join(self.gpus)} meets {self.targets}: of "
            f"{self.space_size} configurations, {reasons}. For example: {first}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "gpus": list(self.gpus),
            "workload": self.workload,
            "targets": self.targets,
            "plans": [p.to_dict() for p in self.plans],
            "front": [p.to_dict() for p in self.front],
            "rejected": dict(self.rejected),
            "rejected_examples": list(self.rejected_examples),
            "space_size": self.space_size,
            "configurations_costed": self.configurations_costed,
            "configurations_per_s": self.configurations_per_s,
            "shapes_costed": self.shapes_costed,
            "shapes_pruned": self.shapes_pruned,
            "step_evaluations": self.step_evaluations,
            "refined": self.refined,
            "wall_s": self.wall_s,
            "screen_wall_s": self.screen_wall_s,
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------------------------
# Framework flags


# What vLLM and SGLang call the same settings: two-batch overlap, the batch cap, the token budget per
# step, an FP8 KV cache
_VLLM_FLAGS = {
    "tbo": "--enable-dbo",
    "cap": "--max-num-seqs",
    "tokens": "--max-num-batched-tokens",
    "kv_fp8": "--kv-cache-dtype fp8",
}
_SGLANG_FLAGS = {
    "tbo": "--enable-two-batch-overlap",
    "cap": "--max-running-requests",
    "tokens": "--chunked-prefill-size",
    "kv_fp8": "--kv-cache-dtype fp8_e4m3",
}


def _engine_flags(names: Mapping[str, str], spec: Mapping[str, Any], tbo: bool, nccl: bool) -> list[str]:
    """The flags vLLM and SGLang share in kind, in their order: two-batch overlap, NCCL all-reduce, the
    batch cap, the token budget, FP8 KV cache and weights (``names``: the engine's own flag names)."""
    flags = [names["tbo"]] if tbo else []
    if nccl:
        flags.append("--disable-custom-all-reduce")
    if spec.get("max_batch_per_gpu"):
        flags.append(f"{names['cap']} {spec['max_batch_per_gpu']}")
    flags.append(f"{names['tokens']} {int(spec['max_tokens_per_gpu'])}")
    if spec.get("kv_dtype") == "fp8":
        flags.append(names["kv_fp8"])
    if spec.get("weight_dtype") == "fp8":
        flags.append("--quantization fp8")
    return flags


def framework_flags(
    deployment: Mapping[str, Any], mtp_draft_tokens: int, model_name: str = "<model>"
) -> dict[str, str]:
    """The vLLM, SGLang and TensorRT-LLM command lines that run each instance of ``deployment`` (the
    README's flag table read backwards; a role per line for disaggregated deployments). A shape a
    framework cannot express (attention data-parallel over part of the instance in TensorRT-LLM) says so."""
    if deployment.get("mode") == "disaggregated":
        roles = [("prefill", deployment["prefill"]), ("decode", deployment["decode"])]
    else:
        roles = [("colocated", {k: v for k, v in deployment.items() if k != "mode"})]
    out: dict[str, list[str]] = {"vllm": [], "sglang": [], "trtllm": []}
    for role, spec in roles:
        gpus_n = int(spec["nodes"]) * int(spec["gpus_per_node"])
        tp, attn_dp = int(spec["tp"]), int(spec["attn_dp"])
        ep, moe_tp = int(spec["ep"]), int(spec["moe_tp"])
        cap = spec.get("max_batch_per_gpu")
        tokens = int(spec["max_tokens_per_gpu"])
        deepep = spec.get("dispatcher") == "deepep"
        tbo = int(spec.get("micro_batches", 1)) == 2
        nccl = spec.get("tp_allreduce") == "nccl" and tp > 1
        v = [f"vllm serve {model_name}", f"--tensor-parallel-size {tp}", f"--data-parallel-size {attn_dp}"]
        if moe_tp == 1 and ep > 1:
            v.append("--enable-expert-parallel")
        v += _engine_flags(_VLLM_FLAGS, spec, tbo, nccl)
        if mtp_draft_tokens:
            v.append(
                f'--speculative-config \'{{"method": "deepseek_mtp", '
                f'"num_speculative_tokens": {mtp_draft_tokens}}}\''
            )
        backend = {
            "deepep": "deepep_low_latency" if role == "decode" else "deepep_high_throughput",
            "allgather": "allgather_reducescatter",
            "alltoall": "naive",
        }[str(spec.get("dispatcher"))]
        v.insert(0, f"VLLM_ALL2ALL_BACKEND={backend}")
        s = [
            f"python -m sglang.launch_server --model-path {model_name}",
            f"--tp {gpus_n}",
            f"--nnodes {spec['nodes']}",
        ]
        if attn_dp > 1:
            s += [f"--dp {attn_dp}", "--enable-dp-attention"]
        if ep > 1:
            s.append(f"--ep-size {ep}")
        if deepep:
            s.append("--enable-deepep-moe")
        s += _engine_flags(_SGLANG_FLAGS, spec, tbo, nccl)
        if mtp_draft_tokens:
            s += ["--speculative-algorithm EAGLE", f"--speculative-num-draft-tokens {mtp_draft_tokens + 1}"]
        if role != "colocated":
            s.append(f"--disaggregation-mode {role}")
        t = [f"trtllm-serve {model_name}", f"--tp_size {gpus_n}", f"--ep_size {ep}"]
        if cap:
            t.append(f"--max_batch_size {cap}")
        t.append(f"--max_num_tokens {tokens}")
        extra = [f"moe_tensor_parallel_size: {moe_tp}"]
        if attn_dp == gpus_n and gpus_n > 1:
            extra.append("enable_attention_dp: true")
        elif attn_dp > 1:
            extra.append(f"(attention DP over {attn_dp} of {gpus_n} GPUs: not expressible, all or none)")
        if spec.get("kv_dtype") == "fp8":
            extra.append("kv_cache_config.dtype: fp8")
        if mtp_draft_tokens:
            extra.append(
                f"speculative_config: {{decoding_type: MTP, num_nextn_predict_layers: {mtp_draft_tokens}}}"
            )
        t.append("--extra_llm_api_options <yaml: " + "; ".join(extra) + ">")
        prefix = f"[{role}] " if role != "colocated" else ""
        out["vllm"].append(prefix + " ".join(v))
        out["sglang"].append(prefix + " ".join(s))
        out["trtllm"].append(prefix + " ".join(t))
    return {k: "\n".join(v) for k, v in out.items()}


@dataclass(frozen=True)
class DecodeCapacity(Record):
    """Largest decode batch per attention-data-parallel rank (``batch_per_gpu``: a rank is one GPU,
    or ``tp`` GPUs with tensor-parallel attention) meeting a TPOT target, and what it yields
    (:func:`decode_operating_point`)."""

    feasible: bool
    batch_per_gpu: int
    step_time_s: float
    tpot_s: float
    tokens_per_s_per_user: float
    output_tokens_per_s_per_gpu: float
    requests_per_s_per_instance: float
    bound_by: str
    limit: str  # what stopped the batch growing: "latency", "kv_capacity", "max_batch"


@dataclass(frozen=True)
class PrefillCapacity(Record):
    """Throughput of one prefill instance running full batches of a workload's mean request."""

    input_tokens_per_s_per_instance: float
    computed_tokens_per_s_per_instance: float
    batch_time_s: float
    requests_per_s_per_instance: float
    bound_by: str


# ------------------------------------------------------------------------------------------------
# The screen


# Stack fields whose effect the search sets itself (explicit ep / moe_tp, batch caps, prefill and chunk
# sizes) or derives below; a stack field not named here (a setting added later) keeps stacks apart
_STACK_FIELDS_HANDLED = frozenset(
    {
        "name",
        "framework",
        "versions",
        "source",
        "sources",
        "by_gpu",
        "expert_parallel",
        "dispatcher",
        "two_batch_overlap",
        "tp_allreduce",
        "max_running_requests",
        "chunked_prefill_tokens",
        "swap_ab",
    }
)


# Instance fields that bound a batch or name a role but leave a step's cost unchanged
# (sim.serving.stepcost.StepCostModel reads none of them): shapes equal in every other field share
# one cost model; a field added later keeps shapes apart until it is named here
_NOT_STEP_COST_FIELDS: dict[str, Any] = {
    "role": "",
    "instances": 1,
    "stack": "",
    "memory_fraction": None,
    "memory_fraction_of": "total",
    "max_batch_per_gpu": None,
    "max_tokens_per_gpu": 1,
}


def _stack_settings(stack_name: str, ep: int, moe_tp: int, tp: int) -> tuple[Any, ...]:
    """What a stack runs on a shape with explicit ``ep`` and ``moe_tp`` (deployment.parse_instance's
    defaults), with settings that cannot matter on this shape folded (all-reduce kind without TP);
    stacks with equal settings share one instance shape (and its step costs)."""
    import dataclasses

    st = get_stack(stack_name)
    dispatcher = st.dispatcher if moe_tp == 1 and ep > 1 else "allgather"
    micro = 2 if st.two_batch_overlap else 1
    allreduce = st.tp_allreduce if tp > 1 else "nccl"
    rest = tuple(
        (f.name, repr(getattr(st, f.name)))
        for f in dataclasses.fields(st)
        if f.name not in _STACK_FIELDS_HANDLED
    )
    return (dispatcher, micro, allreduce, bool(st.swap_ab), rest)


@dataclass
class _Shape:
    """One instance shape: the stacks that run it the same way, its spec dict and cost model."""

    role: str
    spec: dict[str, Any]
    stacks: tuple[str, ...]
    inst: InstanceSpec
    cost: StepCostModel
    workload: Workload
    kv_cap_batch: int  # requests per attention rank the KV cache holds at the mean request


@dataclass(frozen=True)
class _Point:
    batch: int
    step_s: float
    tpot_s: float
    out_per_s: float  # output tokens/s of one instance
    prefill_share: float  # colocated: share of GPU time spent on prefill
    ttft_s: float
    bound_by: str


class _Screen:
    """Step costs cached per shape; counts what was evaluated."""

    def __init__(self, model: MoEModel, gpu: GPUProfile, seed: int) -> None:
        self.model = model
        self.gpu = gpu
        self.seed = seed
        self.evaluations = 0
        self._points: dict[tuple[Any, ...], _Point] = {}

    def decode_point(self, shape: _Shape, b: int) -> _Point:
        # shapes that share a cost model, role, chunk budget and workload have the same points
        key = (id(shape.cost), shape.role, shape.inst.max_tokens_per_gpu, id(shape.workload), b)
        p = self._points.get(key)
        if p is not None:
            return p
        wl = shape.workload
        r = wl.tokens_per_decode_step
        kv = int(round(wl.mean_input_len + wl.mean_output_len / 2.0))
        if shape.role == "decode":
            step = shape.cost.decode_step(b, kv)
            self.evaluations += 1
            tpot = step.time_s / r
            p = _Point(
                b, step.time_s, tpot, b * shape.inst.attn_dp * r / step.time_s, 0.0, math.nan, step.bound_by
            )
        else:
            p = self._colocated_point(shape, b, kv, r)
        self._points[key] = p
        return p

    def tpot_of(self, shape: _Shape) -> Callable[[int], float]:
        """TPOT (seconds) of ``shape`` as a function of its batch per attention rank."""
        return lambda b: self.decode_point(shape, b).tpot_s

    def _colocated_point(self, shape: _Shape, b: int, kv: int, r: float) -> _Point:
        wl, inst, cost = shape.workload, shape.inst, shape.cost
        n_in, n_out = wl.mean_input_len, max(1.0, wl.mean_output_len)
        cached = int(round(wl.cache_hit_rate * n_in))
        new = max(1, int(round(n_in - cached)))
        dp = inst.attn_dp
        q = b * dp * r / n_out  # requests whose prefill an iteration carries, on average
        a = cost.prefill_attention(_bucket(new), _bucket(cached) if cached else 0)
        budget = inst.max_tokens_per_gpu * dp

        def mixed(k: int) -> StepCost:
            self.evaluations += 1
            if k == 0:
                return cost.mixed_step(b, kv, 0, 0.0)
            tokens = min(k * new, budget)
            return cost.mixed_step(
                b, kv, int(math.ceil(tokens / dp)), max(k * a / dp, a) * tokens / (k * new)
            )

        if q * new > budget:  # the prefill the batch needs outgrows the iteration's token budget
            return _Point(b, math.inf, math.inf, 0.0, 0.0, math.inf, "prefill_chunk")
        k0 = int(math.floor(q))
        frac = q - k0
        lo = mixed(k0)
        hi = mixed(k0 + 1)
        step_s = (1 - frac) * lo.time_s + frac * hi.time_s
        # the engine's attribution: an iteration's prefill share is its share of the tokens
        decode_tokens = b * dp * (1 + wl.mtp_draft_tokens)
        share = q * new / (q * new + decode_tokens)
        chunks = max(1, int(math.ceil(new / budget)))
        ttft = step_s + chunks * hi.time_s  # the iteration in progress, then its own chunk(s)
        bound = hi.bound_by if frac >= 0.5 else lo.bound_by
        return _Point(b, step_s, step_s / r, b * dp * r / step_s, share, ttft, bound)


def _prefill_capacity(inst: InstanceSpec, wl: Workload, cost: StepCostModel) -> PrefillCapacity:
    """A prefill instance's full batch of the workload's mean request as the engine forms it
    (:class:`sim.serving.engine.PrefillInstance`): requests join while the batch's new tokens fit in
    ``max_tokens_per_gpu`` x attention DP (one at least, however long), each GPU computes the batch's
    tokens over its ranks but at least the longest request's (a request is not split over ranks), and
    the attention charged is the busiest rank's. Unlike :func:`sim.serving.fleet.prefill_capacity`
    (which fills each rank with whole requests of ``max_tokens_per_gpu``), a request longer than one
    GPU's share occupies the instance alone, as in the simulation."""
    n_in = wl.mean_input_len
    cached = int(round(wl.cache_hit_rate * n_in))
    new = max(1, int(round(n_in - cached)))
    dp = inst.attn_dp
    budget = inst.max_tokens_per_gpu * dp
    k = max(1, budget // new)
    if inst.max_batch_per_gpu:
        k = min(k, inst.max_batch_per_gpu * dp)
    a = cost.prefill_attention(_bucket(new), _bucket(cached) if cached else 0)
    tokens_per_gpu = max(int(math.ceil(k * new / dp)), new)
    step = cost.prefill_step(tokens_per_gpu, max(k * a / dp, a))
    reqs = k / step.time_s
    return PrefillCapacity(reqs * n_in, reqs * new, step.time_s, reqs, step.bound_by)


def _kv_capacity_requests(kv_capacity_tokens: float, inst: InstanceSpec, wl: Workload) -> int:
    """Requests of the workload's mean length (input + output) the KV cache holds per attention rank."""
    return int(kv_capacity_tokens // inst.attn_dp // (wl.mean_input_len + wl.mean_output_len))


def decode_operating_point(
    model: MoEModel,
    gpu: GPUProfile,
    inst: InstanceSpec,
    workload: Workload,
    tpot_target_s: float,
    rng: np.random.Generator | None = None,
    max_batch: int = 1024,
) -> DecodeCapacity:
    """The screen's decode operating point of one given decode instance (what fleet sizing and sweeps
    ask of a deployment they fix): every request at the mean KV length, the largest batch per attention
    rank up to ``max_batch``, the KV cache's requests and the instance's batch cap whose TPOT (step /
    tokens per step) meets ``tpot_target_s``, by bisection (:func:`_largest_batch`); infeasible when the
    KV cache holds no request or one request alone misses the target."""
    rng = rng if rng is not None else np.random.default_rng(0)
    cost = StepCostModel(model, gpu, inst, workload.mtp_draft_tokens, rng)
    kv_cap = _kv_capacity_requests(
        memory_plan(model, gpu, inst, workload.mtp_draft_tokens).kv_capacity_tokens, inst, workload
    )
    cap = min(max_batch, kv_cap, inst.max_batch_per_gpu or max_batch)
    if cap < 1:
        return DecodeCapacity(False, 0, math.nan, math.nan, 0.0, 0.0, 0.0, "kv_capacity", "kv_capacity")
    shape = _Shape("decode", {}, (), inst, cost, workload, kv_cap)
    screen = _Screen(model, gpu, 0)
    r = workload.tokens_per_decode_step
    one = screen.decode_point(shape, 1)
    if one.tpot_s > tpot_target_s:
        return DecodeCapacity(
            False, 0, one.step_s, one.step_s / r, r / one.step_s, 0.0, 0.0, one.bound_by, "latency"
        )
    b = _largest_batch(screen.tpot_of(shape), cap, tpot_target_s)
    point = screen.decode_point(shape, b)
    limit = "latency" if b < cap else ("kv_capacity" if cap == kv_cap else "max_batch")
    per_gpu = b * r / point.step_s / inst.tp  # ``b`` requests per attention rank of tp GPUs
    return DecodeCapacity(
        True,
        b,
        point.step_s,
        point.step_s / r,
        r / point.step_s,
        per_gpu,
        per_gpu * inst.gpus / max(workload.mean_output_len, 1.0),
        point.bound_by,
        limit,
    )


def _bucket(tokens: int) -> int:
    from sim.serving.engine import bucket_tokens

    return bucket_tokens(tokens)


def _workloads(
    model: MoEModel, workload: Mapping[str, Any] | None, mtp: Sequence[bool]
) -> dict[bool, Workload]:
    """The workload with MTP on (the model's own depth, :data:`MTP_ACCEPTANCE`) and off, as ``mtp`` asks;
    a workload that sets ``mtp_draft_tokens`` itself is searched with that alone."""
    spec = {
        k: v
        for k, v in (DEFAULT_WORKLOAD if workload is None else workload).items()
        if k not in ("concurrency", "arrival_rate_per_s", "trace", "requests")
    }
    spec["arrival_rate_per_s"] = 1.0
    if "mtp_draft_tokens" in spec:
        wl = parse_workload(spec, default_mtp_acceptance=MTP_ACCEPTANCE)
        return {wl.mtp_draft_tokens > 0: wl}
    depth = min(1, int(model.num_mtp_modules or 0))
    out = {}
    for on in dict.fromkeys(bool(x) for x in mtp):
        if on and depth == 0:
            continue
        out[on] = parse_workload(
            {**spec, "mtp_draft_tokens": depth if on else 0}, default_mtp_acceptance=MTP_ACCEPTANCE
        )
    if not out:
        out[False] = parse_workload({**spec, "mtp_draft_tokens": 0})
    return out


def _instance_specs(
    model: MoEModel, gpu: GPUProfile, space: ServingSpace, role: str, nodes_options: Sequence[int]
) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """Instance dicts (without dtypes and batch sizes) with the stacks that run each the same way."""
    gpn = int(gpu.node.gpus_per_node)
    routed = int(model.num_routed_experts)
    inter = int(model.moe_intermediate_size or 0)
    heads = int(model.attention.num_heads)
    stacks = space.stacks if space.stacks is not None else tuple(stack_names())
    out = []
    for nodes in nodes_options:
        n = nodes * gpn
        for tp in space.tp:
            if tp > gpn or gpn % tp or heads % tp:
                continue
            for moe_tp in space.moe_tp:
                if moe_tp > gpn or n % moe_tp or (moe_tp > 1 and inter % moe_tp):
                    continue
                ep = n // moe_tp
                redundant = (-routed) % ep if ep > 1 else 0
                if redundant > routed // 2:  # more copies than half the experts: not a sensible layout
                    continue
                groups: dict[tuple[Any, ...], list[str]] = {}
                for name in stacks:
                    groups.setdefault(_stack_settings(name, ep, moe_tp, tp), []).append(name)
                for (dispatcher, micro, allreduce, swap, _), names in groups.items():
                    spec = {
                        "nodes": nodes,
                        "gpus_per_node": gpn,
                        "tp": tp,
                        "attn_dp": n // tp,
                        "moe_tp": moe_tp,
                        "ep": ep,
                        "redundant_experts": redundant,
                        "dispatcher": dispatcher,
                        "micro_batches": micro,
                        "tp_allreduce": allreduce,
                        "swap_ab": swap,
                        "stack": names[0],
                    }
                    if role == "prefill":
                        spec["comm_sms"] = 24 if micro == 2 else 0
                    out.append((spec, tuple(names)))
    return out


@files_held()
def plan_serving(
    model: str | MoEModel,
    gpus: str | GPUProfile | Sequence[str | GPUProfile] = ("H800",),
    workload: Mapping[str, Any] | None = None,
    targets: Mapping[str, Any] | ServingTargets | None = None,
    *,
    space: Mapping[str, Any] | ServingSpace | None = None,
    refine_top: int = 3,
    usd_per_gpu_hour: float | None = None,
    top: int = 20,
    duration_s: float | None = None,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> ServingSearch:
    """Search deployments of ``model`` on each of ``gpus`` for the cheapest per million output tokens
    (every GPU, prefill included) that meets ``targets`` (:class:`ServingTargets`; default 20 tokens/s
    per user and TTFT p99 <= 5 s) on ``workload`` (lengths, cache hits; default DeepSeek's Day-6 mix).

    Returns a :class:`ServingSearch`: the ``top`` plans ranked by cost (the ``refine_top`` cheapest
    simulated with the discrete-event engine and ranked by their simulated cost), the screened Pareto
    front of tokens/s per GPU against tokens/s per user, counts of rejected configurations by reason
    (does not fit, misses the target, exceeds the budget) with examples, and the size of the space.
    ``progress(done, total, label)`` is called as shapes are screened (the CLI draws a bar on stderr).
    """
    t0 = time.perf_counter()
    import gpus as gpus_mod
    import moe

    m = moe.get(model) if isinstance(model, str) else model
    gpu_list = [gpus] if isinstance(gpus, str) or not isinstance(gpus, Sequence) else list(gpus)
    if not gpu_list:
        raise ValueError("plan_serving needs at least one GPU name (gpus.names() lists them).")
    profiles = [gpus_mod.get(g) if isinstance(g, str) else g for g in gpu_list]
    tg = parse_targets(targets)
    sp = parse_space(space)
    if workload is not None and not isinstance(workload, Mapping):
        raise ValueError(
            f"workload must be a dict of DESIGN.md's workload keys, got {type(workload).__name__}."
        )
    if isinstance(refine_top, bool) or not isinstance(refine_top, int) or refine_top < 0:
        raise ValueError(f"refine_top must be a whole number >= 0, got {refine_top!r}.")
    wls = _workloads(m, workload, sp.mtp)
    rejected: Counter[str] = Counter({k: 0 for k in REJECTIONS})
    examples: dict[str, list[str]] = {k: [] for k in REJECTIONS}

    def reject(kind: str, count: int, why: str) -> None:
        rejected[kind] += count
        if len(examples[kind]) < 3:
            examples[kind].append(f"{kind}: {why}")

    candidates: list[dict[str, Any]] = []  # plans meeting every target
    front_points: list[dict[str, Any]] = []
    space_size = costed = shapes_costed = shapes_pruned = evaluations = 0
    for g in profiles:
        price = price_range(g.price, usd_per_gpu_hour)
        usd_s = price.usd_per_gpu_hour / SECONDS_PER_HOUR
        screen = _Screen(m, g, seed)
        imbalances: dict[tuple[int, int, float], dict[int, float]] = {}
        # step-cost models by what a step's cost reads of an instance (stacks that differ only in what
        # bounds the batch, such as the KV cache's memory fraction, time the same steps)
        cost_models: dict[tuple[Any, ...], StepCostModel] = {}
        # operator seconds and timed layer operators on this GPU, shared by its cost models
        op_seconds: dict[Any, float] = {}
        layer_ops: dict[tuple[Any, ...], Any] = {}
        prefill_caps: dict[tuple[int, int, int], PrefillCapacity] = {}  # by cost model, tokens, workload
        weights = sp.weight_dtypes or (("fp4",) if g.supports("fp4") else ()) + ("fp8", "bf16")
        dtype_pairs = [(w, k) for w in weights for k in sp.kv_dtypes]
        variants = [(w, k, on) for (w, k) in dtype_pairs for on in wls]
        dec_specs = _instance_specs(m, g, sp, "decode", sp.nodes) if "disaggregated" in sp.modes else []
        pre_specs = (
            _instance_specs(m, g, sp, "prefill", sp.prefill_nodes) if "disaggregated" in sp.modes else []
        )
        col_specs = _instance_specs(m, g, sp, "colocated", sp.nodes) if "colocated" in sp.modes else []
        n_caps = len(sp.batch_caps)
        total_shapes = len(variants) * (len(dec_specs) + len(pre_specs) + len(col_specs))
        done = 0

        def make_shape(
            role: str,
            spec: dict[str, Any],
            names: tuple[str, ...],
            wl: Workload,
            w: str,
            k: str,
            tokens: int,
            g: GPUProfile = g,
            imbalances: dict[tuple[int, int, float], dict[int, float]] = imbalances,
            cost_models: dict[tuple[Any, ...], StepCostModel] = cost_models,
            op_seconds: dict[Any, float] = op_seconds,
            layer_ops: dict[tuple[Any, ...], Any] = layer_ops,
        ) -> _Shape | str:
            full = {**spec, "weight_dtype": w, "kv_dtype": k, "max_tokens_per_gpu": tokens}
            full["max_batch_per_gpu"] = max(sp.batch_caps) if role != "prefill" else None
            try:
                inst = parse_instance(role, full, m, g)
                plan = memory_plan(m, g, inst, wl.mtp_draft_tokens)
            except ValueError as err:
                return str(err)
            kv_cap = _kv_capacity_requests(plan.kv_capacity_tokens, inst, wl)
            if role != "prefill" and kv_cap < 1:
                return (
                    f"the KV cache holds {plan.kv_capacity_tokens // inst.attn_dp} tokens per attention "
                    f"rank, less than one {wl.mean_input_len + wl.mean_output_len:.0f}-token request"
                )
            cost_key = (wl.mtp_draft_tokens, replace(inst, **_NOT_STEP_COST_FIELDS))
            cost = cost_models.get(cost_key)
            if cost is None:
                shared = imbalances.setdefault((inst.ep, inst.redundant_experts, inst.routing_skew), {})
                cost = StepCostModel(
                    m,
                    g,
                    inst,
                    wl.mtp_draft_tokens,
                    np.random.default_rng(seed),
                    shared,
                    op_seconds,
                    layer_ops,
                )
                cost_models[cost_key] = cost
            return _Shape(role, full, names, inst, cost, wl, kv_cap)

        # prefill: per (dtypes, MTP) the shape with the fewest GPU-seconds per request within TTFT
        best_prefill: dict[tuple[str, str, bool], tuple[float, _Shape, PrefillCapacity, float]] = {}
        for w, k, on in variants:
            wl = wls[on]
            for spec, names in pre_specs:
                done += 1
                for tokens in sp.prefill_tokens_per_gpu:
                    space_size += len(names)
                    shape = make_shape("prefill", spec, names, wl, w, k, tokens)
                    if isinstance(shape, str):
                        reject("does not fit", len(names), f"{g.name} prefill {spec['nodes']} nodes: {shape}")
                        continue
                    cap_key = (id(shape.cost), tokens, id(wl))
                    cap = prefill_caps.get(cap_key)
                    if cap is None:
                        cap = prefill_caps[cap_key] = _prefill_capacity(shape.inst, wl, shape.cost)
                        evaluations += 1
                    shapes_costed += 1
                    costed += len(names)
                    if 2 * cap.batch_time_s > tg.ttft_limit_s:
                        reject(
                            "misses the target",
                            len(names),
                            f"{g.name} prefill {spec['nodes']} nodes tp{spec['tp']}, {tokens} tokens/GPU: "
                            f"a batch takes {cap.batch_time_s:.2f} s, over half the TTFT target",
                        )
                        continue
                    rho = 1.0 - cap.batch_time_s / tg.ttft_limit_s if math.isfinite(tg.ttft_limit_s) else 1.0
                    eff = cap.requests_per_s_per_instance * rho
                    gpu_s = shape.inst.gpus / eff
                    key = (w, k, on)
                    if key not in best_prefill or gpu_s < best_prefill[key][0]:
                        best_prefill[key] = (gpu_s, shape, cap, eff)
            if progress:
                progress(done, total_shapes, g.name)

        def unit(
            shape: _Shape,
            point: _Point,
            best_prefill: dict[
                tuple[str, str, bool], tuple[float, _Shape, PrefillCapacity, float]
            ] = best_prefill,
            price: Any = price,
            usd_s: float = usd_s,
        ) -> dict[str, Any] | None:
            """The smallest deployment of this decode (or colocated) operating point and its cost."""
            wl = shape.workload
            n_out = max(1.0, wl.mean_output_len)
            g_inst = shape.inst.gpus
            if shape.role == "colocated":
                gpus_total, d, p, pre = g_inst, 1, 0, None
                out_rate = point.out_per_s
                ttft = point.ttft_s
            else:
                key = (shape.spec["weight_dtype"], shape.spec["kv_dtype"], wl.mtp_draft_tokens > 0)
                if key not in best_prefill:
                    return None
                _, pre, pcap, eff = best_prefill[key]
                lam = point.out_per_s / n_out
                options = []
                for d_try in range(1, sp.max_decode_instances + 1):
                    p_try = max(1, math.ceil(d_try * lam / eff - 1e-9))
                    total = p_try * pre.inst.gpus + d_try * g_inst
                    if tg.max_gpus is None or total <= tg.max_gpus:
                        options.append((total / d_try, d_try, p_try, total))
                if not options:
                    return {"budget": True}
                # the smallest deployment within 1% of the fewest GPUs per decode instance
                least = min(o[0] for o in options)
                _, d, p, gpus_total = next(o for o in options if o[0] <= least * 1.01)
                out_rate = point.out_per_s * d
                ttft = 2 * pcap.batch_time_s
            usd_h = gpus_total * price.usd_per_gpu_hour
            if tg.max_usd_per_hour is not None and usd_h > tg.max_usd_per_hour:
                return {"budget": True}
            return {
                "d": d,
                "p": p,
                "pre": pre,
                "gpus": gpus_total,
                "out_rate": out_rate,
                "ttft": ttft,
                "usd_per_m": gpus_total * usd_s / out_rate * 1e6,
            }

        limit_tpot = tg.tpot_limit_s
        decode_like = [("decode", s) for s in dec_specs] + [("colocated", s) for s in col_specs]
        # pass 1: each shape's optimistic corner (one request's speed, the largest batch's throughput)
        shapes: list[tuple[float, tuple[float, float], str | None, _Shape]] = []
        for w, k, on in variants:
            wl = wls[on]
            for role, (spec, names) in decode_like:
                done += 1
                tokens_opts = (
                    sp.chunk_tokens_per_gpu if role == "colocated" else (DEFAULT_PREFILL_TOKENS_PER_GPU,)
                )
                for tokens in tokens_opts:
                    space_size += len(names) * n_caps
                    shape = make_shape(role, spec, names, wl, w, k, tokens)
                    if isinstance(shape, str):
                        reject(
                            "does not fit",
                            len(names) * n_caps,
                            f"{g.name} {role} {spec['nodes']} nodes tp{spec['tp']} moe_tp{spec['moe_tp']} "
                            f"{w}/{k}: {shape}",
                        )
                        continue
                    if role == "decode" and (w, k, on) not in best_prefill:
                        reject(
                            "misses the target",
                            len(names) * n_caps,
                            f"{g.name}: no prefill shape in {w}/{k} meets TTFT {tg.ttft_limit_s:.2f} s",
                        )
                        continue
                    one = screen.decode_point(shape, 1)
                    b_ub = min(shape.kv_cap_batch, max(sp.batch_caps))
                    big = screen.decode_point(shape, b_ub)
                    u = unit(shape, big) if math.isfinite(big.step_s) else None
                    bound = u["usd_per_m"] if u and "usd_per_m" in u else math.inf
                    why = None
                    if one.tpot_s > limit_tpot:
                        why = (
                            f"{g.name} {role} {spec['nodes']} nodes tp{spec['tp']} moe_tp{spec['moe_tp']} "
                            f"{w}/{k}{' MTP' if on else ''}: one request alone takes "
                            f"{one.tpot_s * 1e3:.1f} ms per token (bound by {one.bound_by}), "
                            f"target {limit_tpot * 1e3:.1f} ms"
                        )
                    shapes.append((bound, (r_user(one), _per_gpu(u, big, shape)), why, shape))
            if progress:
                progress(done, total_shapes, g.name)
        shapes.sort(key=lambda x: x[0])  # promising first, so that the bound prunes early
        best_cost = math.inf
        local_front: list[tuple[float, float]] = []
        for index, (bound, corner, why, shape) in enumerate(shapes):
            if progress and (index % 64 == 0 or index == len(shapes) - 1):
                progress(index + 1, len(shapes), f"{g.name} (costing)")
            names = shape.stacks
            dominated = any(f[0] >= corner[0] and f[1] >= corner[1] for f in local_front)
            if why is not None and dominated:
                shapes_pruned += 1
                reject("misses the target", len(names) * n_caps, why)
                continue
            if bound >= best_cost and dominated:
                shapes_pruned += 1
                costed += len(names) * n_caps  # costed by its bound: none of its caps can win
                continue
            shapes_costed += 1
            b_max = min(shape.kv_cap_batch, max(sp.batch_caps))
            # grid points (the batch caps) for the Pareto front
            for cap_b in sp.batch_caps:
                if cap_b > b_max:
                    costed += len(names)
                    reject(
                        "does not fit",
                        len(names),
                        f"{g.name} {shape.role} {shape.spec['nodes']} nodes: batch cap {cap_b} exceeds the "
                        f"KV cache's {shape.kv_cap_batch} requests per rank",
                    )
                    continue
                pt = screen.decode_point(shape, cap_b)
                costed += len(names)
                if not math.isfinite(pt.step_s):
                    continue
                u = unit(shape, pt)
                if u is None or "usd_per_m" not in u:
                    continue
                per_gpu = u["out_rate"] / u["gpus"]
                if not any(f[0] >= r_user(pt) and f[1] >= per_gpu for f in local_front):
                    local_front = [f for f in local_front if not (r_user(pt) >= f[0] and per_gpu >= f[1])]
                    local_front.append((r_user(pt), per_gpu))
                front_points.append({"shape": shape, "point": pt, "unit": u, "gpu": g, "price": price})
            if why is not None:
                reject("misses the target", len(names), why)
                continue
            # the operating point at the target: the largest batch meeting the TPOT limit
            b = _largest_batch(screen.tpot_of(shape), b_max, limit_tpot)
            pt = screen.decode_point(shape, b)
            if not math.isfinite(pt.step_s):
                reject(
                    "misses the target",
                    len(names),
                    f"{g.name} colocated {shape.spec['nodes']} nodes: prefill outgrows the chunk budget",
                )
                continue
            u = unit(shape, pt)
            if u is None:
                continue
            if "usd_per_m" not in u:
                reject(
                    "exceeds the budget",
                    len(names),
                    f"{g.name} {shape.role} {shape.spec['nodes']} nodes: the smallest deployment needs more "
                    f"than the budget ({tg.to_dict()})",
                )
                continue
            if shape.role == "colocated" and u["ttft"] > tg.ttft_limit_s:
                reject(
                    "misses the target",
                    len(names),
                    f"{g.name} colocated {shape.spec['nodes']} nodes: TTFT about {u['ttft']:.2f} s",
                )
                continue
            best_cost = min(best_cost, u["usd_per_m"])
            limit = (
                "latency" if b < b_max else ("kv_capacity" if b_max == shape.kv_cap_batch else "max_batch")
            )
            candidates.append(
                {"shape": shape, "point": pt, "unit": u, "gpu": g, "price": price, "limit": limit}
            )
        evaluations += screen.evaluations
    screen_wall = time.perf_counter() - t0
    candidates.sort(key=lambda c: c["unit"]["usd_per_m"])
    plans = [_materialise(m, c) for c in candidates[: max(top, refine_top)]]
    refined = 0
    for i in range(min(refine_top, len(plans))):
        plans[i] = refine_plan(
            m, plans[i], duration_s=duration_s, seed=seed, usd_per_gpu_hour=usd_per_gpu_hour
        )
        refined += 1
    if refined:
        # the simulation judges the targets (TTFT p99 under queueing above all); a plan it finds missing
        # one ranks after those that meet them, and says so
        for i in range(refined):
            sim_out = dict(plans[i].simulated or {})
            sim_out["meets_targets"] = float(
                sim_out.get("tpot_p50_s", math.inf) <= tg.tpot_limit_s * TPOT_TOLERANCE
                and sim_out.get("ttft_p99_s", math.inf) <= tg.ttft_limit_s
            )
            plans[i] = replace(plans[i], simulated=sim_out)
        head = sorted(
            plans[:refined],
            key=lambda p: (
                -(p.simulated or {}).get("meets_targets", 0.0),
                (p.simulated or {}).get("usd_per_million_output_tokens", p.usd_per_million_output_tokens),
            ),
        )
        plans = head + plans[refined:]
    front = [
        _materialise(m, {**f, "limit": "batch cap"})
        for g in profiles
        for f in _front_candidates([x for x in front_points if x["gpu"] is g])
    ]
    notes = (
        f"screen: {costed} of {space_size} configurations costed ({shapes_costed} instance shapes, "
        f"{shapes_pruned} skipped by a bound: they could neither beat the best plan nor reach the front), "
        f"{evaluations} step-cost evaluations in {screen_wall:.2f} s",
        "ranked by what every GPU of the deployment (prefill included) costs per million output tokens; "
        "TTFT is screened as 2 x a full prefill batch (disaggregated) or the iteration in progress plus its "
        "own chunk (colocated); the simulation gives TTFT p99 under queueing",
    )
    return ServingSearch(
        model=str(m.name),
        gpus=tuple(p.name for p in profiles),
        workload=wls[next(iter(wls))].to_dict(),
        targets=tg.to_dict(),
        plans=tuple(plans[:top]),
        front=tuple(front),
        rejected=dict(rejected),
        rejected_examples=tuple(e for k in REJECTIONS for e in examples[k]),
        space_size=space_size,
        configurations_costed=costed,
        shapes_costed=shapes_costed,
        shapes_pruned=shapes_pruned,
        step_evaluations=evaluations,
        refined=refined,
        wall_s=time.perf_counter() - t0,
        screen_wall_s=screen_wall,
        notes=notes,
    )


def r_user(point: _Point) -> float:
    return 1.0 / point.tpot_s if point.tpot_s > 0 and math.isfinite(point.tpot_s) else 0.0


def _per_gpu(u: dict[str, Any] | None, point: _Point, shape: _Shape) -> float:
    if not u or "out_rate" not in u:
        return point.out_per_s / shape.inst.gpus if math.isfinite(point.step_s) else 0.0
    return float(u["out_rate"] / u["gpus"])


def _largest_batch(tpot: Callable[[int], float], b_max: int, limit: float) -> int:
    """Largest batch in 1..b_max with tpot(batch) <= limit (1 when none: the caller checks)."""
    if tpot(b_max) <= limit:
        return b_max
    lo, hi = 1, b_max
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if tpot(mid) <= limit:
            lo = mid
        else:
            hi = mid
    return lo


def _front_candidates(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points not dominated in (output tokens/s per GPU, tokens/s per user), by tokens/s per user."""
    keyed = [(f["unit"]["out_rate"] / f["unit"]["gpus"], r_user(f["point"]), f) for f in points]
    keyed.sort(key=lambda x: (-x[1], -x[0]))
    out = []
    best_gpu = -math.inf
    for per_gpu, _, f in keyed:
        if per_gpu > best_gpu:
            out.append(f)
            best_gpu = per_gpu
    return out[::-1]


def _materialise(model: MoEModel, c: dict[str, Any]) -> ServingPlan:
    shape: _Shape = c["shape"]
    pt: _Point = c["point"]
    u = c["unit"]
    g = c["gpu"]
    price = c["price"]
    wl = shape.workload
    cap = pt.batch

    def clean(spec: dict[str, Any], instances: int, batch: int | None) -> dict[str, Any]:
        out = {k: v for k, v in spec.items() if not k.startswith("_")}
        out["instances"] = instances
        out["max_batch_per_gpu"] = batch
        return out

    if shape.role == "colocated":
        dep = {"mode": "colocated", **clean(shape.spec, 1, cap)}
    else:
        pre: _Shape = u["pre"]
        dep = {
            "mode": "disaggregated",
            "prefill": clean(pre.spec, u["p"], None),
            "decode": clean(shape.spec, u["d"], cap),
        }
    workload = {
        "input_len": _length(wl.input_len),
        "output_len": _length(wl.output_len),
        "cache_hit_rate": wl.cache_hit_rate,
        "mtp_draft_tokens": wl.mtp_draft_tokens,
        "mtp_acceptance": wl.mtp_acceptance,
    }
    gpus_total = int(u["gpus"])
    out_rate = float(u["out_rate"])
    usd_s = price.usd_per_gpu_hour / SECONDS_PER_HOUR
    requests = out_rate / max(1.0, wl.mean_output_len)
    usd_request = gpus_total * usd_s / requests
    if shape.role == "colocated":
        prefill_usd_s = gpus_total * usd_s * pt.prefill_share
    else:
        prefill_usd_s = u["p"] * u["pre"].inst.gpus * usd_s
    in_rate = requests * wl.mean_input_len
    bound = f"{'decode' if shape.role == 'decode' else 'colocated'}: {pt.bound_by}"
    return ServingPlan(
        gpu=g.name,
        mode="colocated" if shape.role == "colocated" else "disaggregated",
        deployment=dep,
        workload=workload,
        total_gpus=gpus_total,
        usd_per_hour=gpus_total * price.usd_per_gpu_hour,
        usd_per_million_output_tokens=float(u["usd_per_m"]),
        usd_per_million_output_tokens_range=(
            gpus_total * price.usd_per_gpu_hour_low / SECONDS_PER_HOUR / out_rate * 1e6,
            gpus_total * price.usd_per_gpu_hour_high / SECONDS_PER_HOUR / out_rate * 1e6,
        ),
        usd_per_request=usd_request,
        usd_per_million_input_tokens=prefill_usd_s / in_rate * 1e6 if in_rate > 0 else math.nan,
        output_tokens_per_s_per_gpu=out_rate / gpus_total,
        tokens_per_s_per_user=r_user(pt),
        tpot_s=pt.tpot_s,
        ttft_estimate_s=float(u["ttft"]),
        batch_per_gpu=cap,
        requests_per_s=requests,
        bound_by=bound,
        limit=str(c.get("limit", "")),
        stacks=shape.stacks,
        flags=framework_flags(dep, wl.mtp_draft_tokens, str(getattr(model, "name", model))),
    )


def _length(spec: LengthSpec) -> Any:
    """A length spec as the workload dict writes it: a number for a fixed length, else the dict."""
    params = dict(spec.params)
    if spec.dist == "fixed":
        return params["value"]
    return {"dist": spec.dist, **params}


def refine_plan(
    model: str | MoEModel,
    plan: ServingPlan,
    duration_s: float | None = None,
    seed: int = 0,
    usd_per_gpu_hour: float | None = None,
) -> ServingPlan:
    """Simulate ``plan`` with the discrete-event engine: a closed loop holding the decode instances at
    their operating batch (the plan's batch cap), plus the requests the screen expects in prefill; the
    window spans two request lifetimes (at least 60 s; ``duration_s`` overrides) after a warm-up of one.
    Returns the plan with ``simulated`` set."""
    from sim.serving.api import estimate_serving

    dep = plan.deployment
    decoding = 0
    if plan.mode == "colocated":
        concurrency = plan.batch_per_gpu * int(dep["attn_dp"]) * int(dep.get("instances", 1))
    else:
        d = dep["decode"]
        decoding = plan.batch_per_gpu * int(d["attn_dp"]) * int(d["instances"])
        # requests on their way to decode: about half a full prefill batch each (the TTFT estimate is two
        # batches); a request that waits for a decode slot counts that wait in its TPOT, so none are added
        in_prefill = plan.requests_per_s * plan.ttft_estimate_s / 4.0
        concurrency = int(math.ceil(decoding + in_prefill))
    out_len = parse_workload({**plan.workload, "concurrency": 1}).mean_output_len
    lifetime = plan.ttft_estimate_s + out_len * plan.tpot_s
    window = duration_s if duration_s is not None else max(60.0, 2.0 * lifetime)
    warm = max(lifetime, window / 4.0)

    def run(clients: int) -> ServingResult:
        return estimate_serving(
            model,
            plan.gpu,
            dep,
            {**plan.workload, "concurrency": max(1, int(clients))},
            usd_per_gpu_hour=usd_per_gpu_hour,
            duration_s=window + warm,
            warmup_s=warm,
            seed=seed,
        )

    r = run(concurrency)
    role = "colocated" if plan.mode == "colocated" else "decode"
    filled = r.mean_batch_per_gpu.get(role, 0.0) / max(1, plan.batch_per_gpu)
    waiting = r.requests_per_s * r.decode_wait_mean_s if math.isfinite(r.decode_wait_mean_s) else 0.0
    if plan.mode == "disaggregated" and filled < 0.9 and math.isfinite(r.ttft_mean_s):
        # decode starved: more requests were in prefill than the screen expected (long prompts queue
        # for whole-instance batches); hold the decode batch with the prefill time the run measured
        concurrency = int(math.ceil(decoding + plan.requests_per_s * r.ttft_mean_s))
        r = run(concurrency)
    elif plan.mode == "disaggregated" and waiting >= 1.0:
        # requests queued for a decode slot (their wait counts in TPOT): fewer clients, by as many
        concurrency = max(decoding, int(round(concurrency - waiting)))
        r = run(concurrency)
    price = price_range(_gpu(plan.gpu).price, usd_per_gpu_hour)
    out_rate = r.output_tokens_per_s
    usd_m = (
        plan.total_gpus * price.usd_per_gpu_hour / SECONDS_PER_HOUR / out_rate * 1e6 if out_rate else math.inf
    )
    sim = {
        "output_tokens_per_s_per_gpu": r.output_tokens_per_s_per_gpu,
        "tokens_per_s_per_user": r.tokens_per_s_per_user,
        "tpot_p50_s": r.tpot_p50_s,
        "ttft_p50_s": r.ttft_p50_s,
        "ttft_p99_s": r.ttft_p99_s,
        "usd_per_million_output_tokens": usd_m,
        "concurrency": float(concurrency),
        "duration_s": float(window),
    }
    return replace(plan, simulated=sim)


def _gpu(name: str) -> GPUProfile:
    import gpus

    return gpus.get(name)
