"""Serving deployments: parsing, parallelism checks, weights and KV-cache capacity per GPU.

A deployment dict (DESIGN.md) has ``mode`` ("colocated" | "disaggregated"); colocated keeps the
instance keys at the top level, disaggregated puts them under "prefill" and "decode".

Instance keys (DESIGN.md): ``stack`` (the serving framework whose defaults fill the keys not given:
:mod:`sim.serving.stack`, default "deepseek"), ``instances`` (default 1), ``nodes`` (per instance, default 1),
``gpus_per_node`` (default: the profile's node), ``tp``, ``ep``, ``attn_dp``, ``max_batch_per_gpu``,
``redundant_experts``, ``weight_dtype``, ``kv_dtype``. Added here: ``routing_skew`` (Zipf exponent
of expert popularity, 0 = uniform), ``max_tokens_per_gpu`` (tokens per GPU per prefill batch or
chunked-prefill iteration), ``micro_batches`` (1 or 2: two-micro-batch overlap of dispatch/combine
with computation), ``comm_sms`` (SMs taken by the all-to-all kernels while computation overlaps).

Serving policies (:mod:`sim.serving.policies`, each a name from its registry): ``router`` (which
instance of the role takes a request; default "least_loaded"), ``prefill_batching`` (prefill instances;
default "fifo_token_budget"), ``decode_admission`` (decode and colocated instances; default
"fifo_reserve"), ``chunked_prefill`` (colocated instances; default "fifo_chunks").

Parallelism: ``tp * attn_dp`` = GPUs of the instance (attention and dense parts are sharded by tp
and replicated over attn_dp groups); ``ep * moe_tp`` = GPUs of the instance: routed experts are
spread over ``ep`` groups and each expert's weights are sharded over the ``moe_tp`` GPUs of its group
(expert tensor parallelism, as vLLM and SGLang shard experts over the TP group when expert
parallelism is off and TensorRT-LLM's ``moe_tp_size`` x ``moe_ep_size`` does);
``(routed + redundant) % ep == 0``. With ``ep`` alone, ``moe_tp`` is the rest of the GPUs; with
neither, ``ep`` is every GPU of the instance (DeepSeek's own deployments).

``dispatcher`` (how routed tokens reach their experts; :data:`DISPATCHERS`): "deepep" (DeepSeek's
DeepEP: tensor-parallel ranks split their tokens, normal kernels deduplicate per node at prefill,
low-latency kernels write the experts' masked layout at decode), "alltoall" (a plain all-to-all: one
copy per (token, remote expert), received rows permuted into expert order), "allgather" (every GPU
of the MoE group sees all tokens: all-gathered across attention data-parallel groups before the
experts and reduce-scattered after, nothing moved when attention is tensor-parallel over the whole
instance; each GPU computes its experts' slice for every token routed to them, and the partial sums
are reduced with the layer's all-reduce). Default: "deepep" when each expert is whole on one GPU
(``moe_tp == 1``) and ``ep > 1``, else "allgather", the only one that shards experts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from moe.accounting import weight_scale_bytes
from sim.record import Record
from sim.serving.policies import DEFAULT_POLICIES, POLICY_KEYS, check_policy
from sim.serving.stack import DEFAULT_STACK, DISPATCHERS
from sim.serving.stack import get as get_stack

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel

INSTANCE_KEYS = frozenset(
    {
        "instances",
        "nodes",
        "gpus_per_node",
        "tp",
        "ep",
        "moe_tp",
        "dispatcher",
        "stack",
        "tp_allreduce",
        "swap_ab",
        "cuda_graphs",
        "memory_fraction",
        "moe_kernel",
        "step_overhead_s",
        "attn_dp",
        "max_batch_per_gpu",
        "redundant_experts",
        "weight_dtype",
        "kv_dtype",
        "routing_skew",
        "max_tokens_per_gpu",
        "micro_batches",
        "comm_sms",
    }
    | set(POLICY_KEYS)
)
# the roles whose instances run each policy (:mod:`sim.serving.policies`)
POLICY_ROLES = {
    "router": ("prefill", "decode", "colocated"),
    "prefill_batching": ("prefill",),
    "decode_admission": ("decode", "colocated"),
    "chunked_prefill": ("colocated",),
}
MODES = ("colocated", "disaggregated")

# Bytes per element of the formats a weight or KV cache may be stored in.
DTYPE_BYTES = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp6": 0.75,
    "int6": 0.75,
    "fp4": 0.5,
    "int4": 0.5,
}

# Defaults with their sources (not fitted: configuration of the systems being modelled).
DEFAULT_PREFILL_TOKENS_PER_GPU = 16384  # DeepSeek profile-data README: prefill batch 16K tokens per GPU
DEFAULT_CHUNK_TOKENS_PER_GPU = (
    8192  # SGLang's default chunked-prefill size (server_args.chunked_prefill_size)
)
DEFAULT_PREFILL_COMM_SMS = 24  # DeepEP normal kernels, Buffer.set_num_sms(24) (DeepEP docs/legacy.md)
DEFAULT_DECODE_COMM_SMS = 0  # profile-data README: decode all-to-all occupies 0 SMs (RDMA, IBGDA)
KV_PAGE_TOKENS = 64  # FlashMLA paged KV block size (open-infra-index)


@dataclass(frozen=True)
class InstanceSpec:
    """One role's instance shape (prefill, decode, or colocated) and how many of them."""

    role: str
    instances: int
    nodes: int
    gpus_per_node: int
    tp: int
    ep: int
    attn_dp: int
    redundant_experts: int
    routing_skew: float
    weight_dtype: str
    kv_dtype: str
    max_batch_per_gpu: int | None
    max_tokens_per_gpu: int
    micro_batches: int
    comm_sms: int
    moe_tp: int = 1
    dispatcher: str = "deepep"
    stack: str = DEFAULT_STACK
    tp_allreduce: str = "nccl"
    swap_ab: bool = False
    cuda_graphs: bool = True
    memory_fraction: float | None = None
    memory_fraction_of: str = "total"
    moe_kernel: str = ""
    step_overhead_s: float = 0.0
    router: str = DEFAULT_POLICIES["router"]
    prefill_batching: str = DEFAULT_POLICIES["prefill_batching"]
    decode_admission: str = DEFAULT_POLICIES["decode_admission"]
    chunked_prefill: str = DEFAULT_POLICIES["chunked_prefill"]

    @property
    def gpus(self) -> int:
        """GPUs of one instance."""
        return self.nodes * self.gpus_per_node

    @property
    def total_gpus(self) -> int:
        return self.gpus * self.instances

    @property
    def total_nodes(self) -> int:
        return self.nodes * self.instances

    def to_dict(self) -> dict[str, Any]:
        """The fields, less the policies that this role does not run (``POLICY_ROLES``)."""
        out = asdict(self)
        for key, roles in POLICY_ROLES.items():
            if self.role not in roles:
                del out[key]
        return out


@dataclass(frozen=True)
class Deployment:
    mode: str
    prefill: InstanceSpec | None = None
    decode: InstanceSpec | None = None
    colocated: InstanceSpec | None = None

    @property
    def instances(self) -> tuple[InstanceSpec, ...]:
        return tuple(s for s in (self.prefill, self.decode, self.colocated) if s is not None)

    @property
    def total_gpus(self) -> int:
        return sum(s.total_gpus for s in self.instances)

    @property
    def total_nodes(self) -> int:
        return sum(s.total_nodes for s in self.instances)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode}
        for s in self.instances:
            out[s.role] = s.to_dict()
        return out


def _whole(name: str, value: Any, minimum: int = 1) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value != int(value)
        or value < minimum
    ):
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}.")
    return int(value)


def _dtype(name: str, value: Any) -> str:
    key = str(value).lower()
    if key not in DTYPE_BYTES:
        raise ValueError(f"{name} {value!r} is not a known format; allowed: {sorted(DTYPE_BYTES)}.")
    return key


def parse_instance(role: str, spec: Mapping[str, Any], model: MoEModel, gpu: GPUProfile) -> InstanceSpec:
    """Check one instance dict against the model and GPU and fill in defaults."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"The {role} instance must be a dict of instance keys, got {type(spec).__name__}.")
    unknown = set(spec) - INSTANCE_KEYS
    if unknown:
        raise ValueError(f"Unknown {role} instance keys {sorted(unknown)}; allowed: {sorted(INSTANCE_KEYS)}.")
    instances = _whole(f"{role}.instances", spec.get("instances", 1))
    nodes = _whole(f"{role}.nodes", spec.get("nodes", 1))
    gpus_per_node = _whole(f"{role}.gpus_per_node", spec.get("gpus_per_node", gpu.node.gpus_per_node))
    num_gpus = nodes * gpus_per_node
    tp = _whole(f"{role}.tp", spec.get("tp", 1))
    if num_gpus % tp:
        raise ValueError(f"{role}: tp={tp} must divide the instance's {num_gpus} GPUs.")
    attn_dp = _whole(f"{role}.attn_dp", spec.get("attn_dp", num_gpus // tp))
    if tp * attn_dp != num_gpus:
        raise ValueError(
            f"{role}: tp x attn_dp must equal the instance's GPUs ({nodes} nodes x {gpus_per_node}"
            f" = {num_gpus}); got tp={tp}, attn_dp={attn_dp}."
        )
    stack = get_stack(spec.get("stack", DEFAULT_STACK))
    if "moe_tp" in spec:
        moe_tp = _whole(f"{role}.moe_tp", spec["moe_tp"])
        if num_gpus % moe_tp:
            raise ValueError(f"{role}: moe_tp={moe_tp} must divide the instance's {num_gpus} GPUs.")
        ep = _whole(f"{role}.ep", spec.get("ep", num_gpus // moe_tp))
    else:
        ep = _whole(f"{role}.ep", spec.get("ep", num_gpus if stack.expert_parallel else 1))
        if num_gpus % ep:
            raise ValueError(f"{role}: ep={ep} must divide the instance's {num_gpus} GPUs.")
        moe_tp = num_gpus // ep
    if ep * moe_tp != num_gpus:
        raise ValueError(
            f"{role}: ep x moe_tp must equal the instance's {num_gpus} GPUs (each expert group of "
            f"moe_tp GPUs shards its experts); got ep={ep}, moe_tp={moe_tp}."
        )
    inter = int(model.moe_intermediate_size or 0)
    if moe_tp > 1 and inter % moe_tp:
        raise ValueError(
            f"{role}: moe_tp={moe_tp} must divide the experts' intermediate size {inter} "
            f"(each GPU holds an equal slice of every expert it serves)."
        )
    default_dispatcher = stack.dispatcher if moe_tp == 1 and ep > 1 else "allgather"
    dispatcher = str(spec.get("dispatcher", default_dispatcher)).lower()
    if dispatcher not in DISPATCHERS:
        raise ValueError(f"{role}.dispatcher {spec.get('dispatcher')!r} is unknown; allowed: {DISPATCHERS}.")
    tp_allreduce = str(spec.get("tp_allreduce", stack.tp_allreduce)).lower()
    if tp_allreduce not in ("custom", "nccl"):
        raise ValueError(
            f"{role}.tp_allreduce {spec.get('tp_allreduce')!r} is unknown; allowed: ('custom', 'nccl')."
        )
    swap_ab = spec.get("swap_ab", stack.swap_ab)
    if not isinstance(swap_ab, bool):
        raise ValueError(f"{role}.swap_ab must be true or false, got {swap_ab!r}.")
    cuda_graphs = spec.get("cuda_graphs", stack.cuda_graphs)
    if not isinstance(cuda_graphs, bool):
        raise ValueError(f"{role}.cuda_graphs must be true or false, got {cuda_graphs!r}.")
    fraction = spec.get("memory_fraction", stack.memory_fraction_for(nodes * gpus_per_node))
    if fraction is not None and (
        isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1
    ):
        raise ValueError(f"{role}.memory_fraction must be a fraction in (0, 1], got {fraction!r}.")
    moe_kernel = spec.get("moe_kernel", stack.moe_kernel or "")
    if not isinstance(moe_kernel, str):
        raise ValueError(f"{role}.moe_kernel must be a kernel table's name or '', got {moe_kernel!r}.")
    if moe_kernel:
        from sim import calibration

        calibration.kernel_table(moe_kernel)  # ValueError naming the known tables
    step_overhead = spec.get("step_overhead_s", stack.step_overhead_s)
    if (
        isinstance(step_overhead, bool)
        or not isinstance(step_overhead, int | float)
        or not (0 <= step_overhead < 1)
    ):
        raise ValueError(f"{role}.step_overhead_s must be seconds in [0, 1), got {step_overhead!r}.")
    if dispatcher != "allgather" and moe_tp > 1:
        raise ValueError(
            f"{role}: dispatcher {dispatcher!r} sends each token to whole experts; with moe_tp={moe_tp} "
            "(experts sharded over GPUs) only 'allgather' applies."
        )
    redundant = _whole(f"{role}.redundant_experts", spec.get("redundant_experts", 0), minimum=0)
    routed = int(model.num_routed_experts)
    if (routed + redundant) % ep:
        raise ValueError(
            f"{role}: routed + redundant experts ({routed} + {redundant} = {routed + redundant}) "
            f"must divide by ep={ep}."
        )
    skew = spec.get("routing_skew", 0.0)
    if isinstance(skew, bool) or not isinstance(skew, int | float) or not (0 <= skew < 10):
        raise ValueError(f"{role}.routing_skew is a Zipf exponent in [0, 10), got {skew!r}.")
    default_weight = "fp8" if gpu.supports("fp8") else "bf16"
    weight_dtype = _dtype(f"{role}.weight_dtype", spec.get("weight_dtype", default_weight))
    kv_dtype = _dtype(f"{role}.kv_dtype", spec.get("kv_dtype", "bf16"))
    mbpg = spec.get("max_batch_per_gpu", stack.max_running_requests_for(gpu.name))
    max_batch = None if mbpg is None else _whole(f"{role}.max_batch_per_gpu", mbpg)
    if role == "colocated":
        default_tokens = stack.chunked_prefill_tokens_for(gpu.name) or DEFAULT_CHUNK_TOKENS_PER_GPU
    else:
        default_tokens = DEFAULT_PREFILL_TOKENS_PER_GPU
    max_tokens = _whole(f"{role}.max_tokens_per_gpu", spec.get("max_tokens_per_gpu", default_tokens))
    micro = _whole(f"{role}.micro_batches", spec.get("micro_batches", 2 if stack.two_batch_overlap else 1))
    if micro not in (1, 2):
        raise ValueError(f"{role}.micro_batches must be 1 or 2, got {micro}.")
    default_sms = DEFAULT_PREFILL_COMM_SMS if role == "prefill" else DEFAULT_DECODE_COMM_SMS
    comm_sms = _whole(f"{role}.comm_sms", spec.get("comm_sms", default_sms), minimum=0)
    if comm_sms >= gpu.sm_count:
        raise ValueError(f"{role}.comm_sms={comm_sms} leaves no SMs for computation ({gpu.sm_count} in all).")
    chosen = {}
    for key, default in DEFAULT_POLICIES.items():
        if key in spec and role not in POLICY_ROLES[key]:
            raise ValueError(
                f"{role}.{key}: the {key} policy applies to {' and '.join(POLICY_ROLES[key])} instances, "
                f"not to a {role} instance."
            )
        chosen[key] = check_policy(key, spec.get(key, default), role)
    return InstanceSpec(
        role,
        instances,
        nodes,
        gpus_per_node,
        tp,
        ep,
        attn_dp,
        redundant,
        float(skew),
        weight_dtype,
        kv_dtype,
        max_batch,
        max_tokens,
        micro,
        comm_sms,
        moe_tp,
        dispatcher,
        stack.name,
        tp_allreduce,
        swap_ab,
        cuda_graphs,
        None if fraction is None else float(fraction),
        stack.memory_fraction_of,
        moe_kernel,
        float(step_overhead),
        **chosen,
    )


def parse_deployment(spec: Mapping[str, Any], model: MoEModel, gpu: GPUProfile) -> Deployment:
    """Validate a deployment dict (DESIGN.md keys); unknown keys are errors."""
    if isinstance(spec, Deployment):
        return spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"deployment must be a dict, got {type(spec).__name__}.")
    mode = spec.get("mode")
    if mode not in MODES:
        raise ValueError(f"deployment 'mode' must be one of {MODES}, got {mode!r}.")
    if mode == "disaggregated":
        unknown = set(spec) - {"mode", "prefill", "decode"}
        if unknown:
            raise ValueError(
                f"Unknown disaggregated deployment keys {sorted(unknown)}; a disaggregated "
                "deployment has 'mode', 'prefill' and 'decode' (instance keys go inside those)."
            )
        for role in ("prefill", "decode"):
            if role not in spec:
                raise ValueError(f"A disaggregated deployment needs a '{role}' instance dict.")
        dep = Deployment(
            mode,
            prefill=parse_instance("prefill", spec["prefill"], model, gpu),
            decode=parse_instance("decode", spec["decode"], model, gpu),
        )
    else:
        rest = {k: v for k, v in spec.items() if k != "mode"}
        if "prefill" in rest or "decode" in rest:
            raise ValueError(
                "A colocated deployment keeps its instance keys at the top level, not under "
                "'prefill'/'decode'."
            )
        dep = Deployment(mode, colocated=parse_instance("colocated", rest, model, gpu))
    for inst in dep.instances:
        memory_plan(model, gpu, inst, mtp_draft_tokens=0)  # raises when the weights do not fit
    return dep


# ------------------------------------------------------------------------------------------------
# Memory


def _breakdown(model: MoEModel) -> dict[str, float]:
    return {k: float(v) for k, v in model.params_breakdown.items()}


def weight_bytes_per_gpu(model: MoEModel, inst: InstanceSpec, include_mtp: bool) -> float:
    """Weights one GPU holds.

    Linear layers (attention, dense FFN, shared experts) in ``weight_dtype`` (fp4 applies to routed
    experts only, the rest in fp8, as DeepSeek-V4 ships), sharded by tp; embedding, head, norms and
    router in BF16; routed experts: (routed + redundant) / ep experts per GPU, each a 1 / moe_tp
    slice. The MTP module (when
    drafting) is placed like the main layers: the same per-GPU share of its parameters.
    """
    p = _breakdown(model)
    w = DTYPE_BYTES[inst.weight_dtype]
    dense_w = DTYPE_BYTES["fp8"] if inst.weight_dtype in ("fp4", "int4", "fp6", "int6") else w
    linear = p.get("attention", 0.0) + p.get("dense_ffn", 0.0) + p.get("shared_experts", 0.0)
    bf16 = p.get("embedding", 0.0) + p.get("head", 0.0)
    small = p.get("norms", 0.0) + p.get("router", 0.0)
    per_gpu = linear * dense_w / inst.tp + bf16 * 2.0 / inst.tp + small * 2.0
    routed = p.get("routed_experts", 0.0)
    num_routed = max(1, int(model.num_routed_experts))
    experts_per_gpu = (num_routed + inst.redundant_experts) / inst.ep
    expert_w = w + weight_scale_bytes(inst.weight_dtype)  # block scales travel with the weights
    per_gpu += routed / num_routed * experts_per_gpu * expert_w / inst.moe_tp
    if include_mtp and p.get("mtp", 0.0) > 0:
        full_main = linear * dense_w + bf16 * 2 + small * 2 + routed * w
        per_gpu += p["mtp"] * w * (per_gpu / full_main if full_main else 1.0)
    return per_gpu


def kv_bytes_per_token(model: MoEModel, kv_dtype: str, context_len: int = 4096) -> float:
    """KV-cache bytes per token of context (all layers) in ``kv_dtype``: the model's BF16 figure
    scaled by the format's bits (so a 6-bit cache is 6/16 of BF16)."""
    length = max(1, int(context_len))
    held = _KV_BF16.get((id(model), length))
    if held is None or held[0] is not model:
        held = _KV_BF16[(id(model), length)] = (
            model,
            float(model.kv_cache_bytes_per_token(dtype="bf16", context_len=length)),
        )
    return held[1] * DTYPE_BYTES[kv_dtype] / 2.0


# the BF16 figure per model object (held, so that its id is not reused) and context length: a plan search
# asks for it for every shape and step
_KV_BF16: dict[tuple[int, int], tuple[Any, float]] = {}


def kv_bytes_per_token_per_gpu(model: MoEModel, inst: InstanceSpec, context_len: int = 4096) -> float:
    """A token's KV bytes on one GPU of its attention group: MLA / compressed caches are shared by all
    heads and replicated over tp; GQA/MHA caches are split over min(tp, kv heads)."""
    total = kv_bytes_per_token(model, inst.kv_dtype, context_len)
    kind = str(model.attention.kind)
    if kind in ("mla", "csa"):
        return total
    return total / max(1, min(inst.tp, int(model.attention.num_kv_heads)))


@dataclass(frozen=True)
class MemoryPlan(Record):
    """Bytes per GPU: weights, workspace, what is left for the KV cache; capacity of the instance."""

    hbm_bytes: float
    weights_bytes: float
    workspace_bytes: float
    kv_cache_bytes: float
    kv_bytes_per_token_per_gpu: float
    kv_capacity_tokens: int  # whole instance (all attention data-parallel groups)


def workspace_bytes_per_gpu(model: MoEModel, inst: InstanceSpec, tokens_per_gpu: int) -> float:
    """Activation workspace for ``tokens_per_gpu`` tokens in flight on a GPU: residual stream and norms
    (BF16, a few copies), routed-expert rows received (top-k copies of the hidden state, FP8 in, BF16
    out) and their gate/up intermediate (BF16), and FP32 logits of one position per request."""
    h = float(model.hidden_size)
    k = float(max(1, model.experts_per_token))
    inter = float(max(model.moe_intermediate_size, 1))
    dense = float(model.intermediate_size or 0) / inst.tp
    t = float(tokens_per_gpu)
    per_token = 4 * h * 2 + k * h * 3 + k * 2 * inter * 2 + 2 * dense * 2
    return t * per_token + min(t, 4096.0) * float(model.vocab_size) / inst.tp * 4


def memory_plan(
    model: MoEModel, gpu: GPUProfile, inst: InstanceSpec, mtp_draft_tokens: int = 0, context_len: int = 4096
) -> MemoryPlan:
    """Weights, workspace and KV capacity of one instance; ValueError when the weights do not fit."""
    hbm = float(gpu.hbm_bytes)
    weights = weight_bytes_per_gpu(model, inst, include_mtp=mtp_draft_tokens > 0)
    if inst.role == "decode":
        per_gpu_tokens = (inst.max_batch_per_gpu or 256) * (1 + mtp_draft_tokens)
    else:
        per_gpu_tokens = inst.max_tokens_per_gpu
    work = workspace_bytes_per_gpu(model, inst, per_gpu_tokens)
    free = hbm - weights - work
    fraction = inst.memory_fraction
    if fraction is not None and free > 0:
        # the stack's share of memory for its KV cache (sim.serving.stack: memory_fraction)
        if inst.memory_fraction_of == "total":
            free = fraction * hbm - weights - work
        elif inst.memory_fraction_of == "static":
            free = min(fraction * hbm - weights, free)
        else:  # "free"
            free *= fraction
        if free <= 0:
            raise ValueError(
                f"The {inst.role} instance leaves no memory for a KV cache: with memory_fraction={fraction} "
                f"({inst.memory_fraction_of}) of {hbm / 1e9:.1f} GB, weights take {weights / 1e9:.1f} GB and "
                f"activations {work / 1e9:.1f} GB per GPU. Raise memory_fraction, use more GPUs or a smaller "
                "weight_dtype."
            )
    if free <= 0:
        need = (weights + work) / 1e9
        raise ValueError(
            f"The {inst.role} instance cannot hold {getattr(model, 'name', 'the model')}: "
            f"each of its {inst.gpus} {getattr(gpu, 'name', 'GPUs')} needs "
            f"{weights / 1e9:.1f} GB of weights and "
            f"{work / 1e9:.1f} GB of "
            f"workspace ({need:.1f} GB) but has {hbm / 1e9:.1f} GB. Use more GPUs (nodes, ep, tp) or a "
            "smaller weight_dtype."
        )
    per_token = kv_bytes_per_token_per_gpu(model, inst, context_len)
    capacity = int(free // per_token) * inst.attn_dp if per_token > 0 else 10**12
    return MemoryPlan(hbm, weights, work, free, per_token, capacity)


# ------------------------------------------------------------------------------------------------
# Expert load balance


def expert_imbalance(
    model: MoEModel, inst: InstanceSpec, tokens_per_gpu: float, rng: np.random.Generator, samples: int = 8
) -> float:
    """Expected (max over GPUs of routed tokens) / (mean over GPUs) for one step.

    Expert popularity is Zipf(``routing_skew``) over the routed experts (uniform at 0), permuted at
    random; the ``redundant_experts`` extra replicas go to the most popular experts (EPLB-style: a
    replicated expert's load is split evenly over its copies), replicas are packed greedily on the
    ``ep`` GPUs (heaviest first onto the least-loaded GPU with a free slot), and each step's loads are
    a multinomial draw of tokens_per_gpu x ep x top_k assignments. The step waits for the busiest GPU.
    """
    num = int(model.num_routed_experts)
    k = int(model.experts_per_token)
    if num <= 1 or inst.ep <= 1:
        return 1.0
    ranks = np.arange(1, num + 1, dtype=float)
    popularity = ranks ** (-inst.routing_skew) if inst.routing_skew > 0 else np.ones(num)
    popularity = rng.permutation(popularity / popularity.sum())
    copies = np.ones(num, dtype=int)
    for _ in range(inst.redundant_experts):
        copies[int(np.argmax(popularity / copies))] += 1
    slots = (num + inst.redundant_experts) // inst.ep
    replica_expert = np.repeat(np.arange(num), copies)
    replica_share = (popularity / copies)[replica_expert]
    order = np.argsort(-replica_share, kind="stable")
    gpu_load = np.zeros(inst.ep)
    gpu_slots = np.zeros(inst.ep, dtype=int)
    gpu_of = np.empty(replica_expert.size, dtype=int)
    for r in order:
        free = np.where(gpu_slots < slots)[0]
        g = int(free[np.argmin(gpu_load[free])])
        gpu_of[r] = g
        gpu_load[g] += replica_share[r]
        gpu_slots[g] += 1
    assignments = max(1, int(round(tokens_per_gpu * inst.ep * k)))
    ratios = []
    for _ in range(samples):
        counts = rng.multinomial(assignments, popularity)
        per_replica = counts[replica_expert] / copies[replica_expert]
        loads = np.bincount(gpu_of, weights=per_replica, minlength=inst.ep)
        ratios.append(loads.max() / loads.mean())
    return float(np.mean(ratios))


def ceil_div(a: float, b: float) -> int:
    return int(math.ceil(a / b))
