"""An operator of the inventory: what it does (its kind), the work it times as, and where it runs.

An :class:`Op` is one kernel on one GPU: a name, an :class:`OpKind` (never read from the name), the
:class:`Phase` it belongs to, the ``stage`` of the layer the simulators group it into, the parallel
degrees that split it, and its work: one of the small records below, each of which knows its FLOPs
and the bytes it moves in HBM. The simulators time the work with :func:`sim.timing.op_time`; nothing
here knows a GPU.

Shapes: a GEMM computes [m, k] x [k, n] (m = tokens), ``batch`` > 1 independent products in one
kernel; a grouped GEMM one such product per group of rows (one local expert each). Bytes are a
roofline's view: inputs and weights read once, outputs written once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from moe.accounting import bytes_per_element, weight_scale_bytes

__all__ = [
    "Attention",
    "Comm",
    "Gating",
    "Gemm",
    "Given",
    "GroupedGemm",
    "Memory",
    "Op",
    "OpKind",
    "Permute",
    "Phase",
    "Work",
]

BF16_BYTES = 2.0


class OpKind(enum.Enum):
    """What an operator does. Its breakdown categories follow from the kind alone:
    :attr:`category` in a serving step's breakdown, :attr:`training_category` in a training
    segment's mix ("gemm", "attention", "other") and communication's own categories."""

    ATTENTION = "attention"  # the core attention kernel and its backward passes
    DENSE_GEMM = "dense_gemm"  # attention projections and dense FFN GEMMs
    FP8_CAST = "fp8_casts"  # quantisation of a GEMM's or the dispatch's input, cached activations
    NORM = "norms"  # RMSNorm (fused with the residual add where a block starts, when served)
    ROPE_QK_KV = "rope_qk_kv"  # RoPE, assembling queries and keys, the KV-cache write
    MLA_ABSORB = "mla_absorb"  # MLA's absorbed W_UK / W_UV batched GEMMs
    ROUTER_GEMM = "router_gemm"  # the router's [tokens, hidden] x [hidden, experts] GEMM
    GATING = "gating"  # top-k selection over the router's scores
    PERMUTE = "permute"  # token permute into expert order and un-permute + reduce
    ACTIVATION = "activation"  # SwiGLU (fused with the FP8 cast of its output when served)
    EXPERTS = "experts"  # shared and routed expert GEMMs
    LOW_LATENCY_COMM = "ll_comm_kernels"  # DeepEP low-latency send and receive-hook kernels
    RESIDUAL_ADD = "residual_adds"  # residual adds not fused into a norm
    EMBEDDING = "embedding"  # embedding gather (and its gradient scatter)
    LM_HEAD = "lm_head"  # the output head GEMM
    LOGITS = "logits"  # softmax cross-entropy (training) or sampling (serving) over the logits
    EP_DISPATCH = "dispatch"  # expert-parallel all-to-all, tokens to their experts
    EP_COMBINE = "combine"  # expert-parallel all-to-all, expert outputs back
    TP_ALLREDUCE = "tp_allreduce"  # tensor-parallel all-reduce of a block's output
    CP_ALLGATHER = "cp_allgather"  # context-parallel gather of the other chunks' keys and values

    @property
    def category(self) -> str:
        """The serving breakdown's category (``ServingResult.breakdown_s``)."""
        return _SERVING_CATEGORY.get(self, self.value)

    @property
    def training_category(self) -> str:
        """The training engine's category: a compute mix entry or a communication category."""
        return _TRAINING_CATEGORY[self]

    @property
    def is_comm(self) -> bool:
        return self in _COMM


_K = OpKind
_SERVING_CATEGORY = {
    _K.ROUTER_GEMM: "routing",
    _K.GATING: "routing",
    _K.EMBEDDING: "head",
    _K.LM_HEAD: "head",
    _K.LOGITS: "head",
}
_TRAINING_CATEGORY = {
    _K.ATTENTION: "attention",
    _K.DENSE_GEMM: "gemm",
    _K.MLA_ABSORB: "gemm",
    _K.ROUTER_GEMM: "gemm",
    _K.EXPERTS: "gemm",
    _K.LM_HEAD: "gemm",
    _K.FP8_CAST: "other",
    _K.NORM: "other",
    _K.ROPE_QK_KV: "other",
    _K.GATING: "other",
    _K.PERMUTE: "other",
    _K.ACTIVATION: "other",
    _K.LOW_LATENCY_COMM: "other",
    _K.RESIDUAL_ADD: "other",
    _K.EMBEDDING: "other",
    _K.LOGITS: "other",
    _K.EP_DISPATCH: "ep_comm",
    _K.EP_COMBINE: "ep_comm",
    _K.TP_ALLREDUCE: "tp_comm",
    _K.CP_ALLGATHER: "cp_comm",
}
_COMM = frozenset({_K.EP_DISPATCH, _K.EP_COMBINE, _K.TP_ALLREDUCE, _K.CP_ALLGATHER})


class Phase(enum.Enum):
    """When an operator runs. Training: forward, backward for inputs (``BACKWARD``), backward for
    weights (``WEIGHT``), and forward pieces run again inside the backward (``RECOMPUTE``, on the
    backward's stream and segment). Serving: ``PREFILL`` and ``DECODE``."""

    FORWARD = "forward"
    BACKWARD = "backward"
    WEIGHT = "weight"
    RECOMPUTE = "recompute"
    PREFILL = "prefill"
    DECODE = "decode"


@dataclass(frozen=True)
class Gemm:
    """[m, k] x [k, n] in ``dtype`` (``batch`` products in one kernel); ``wgrad``: a weight
    gradient (reduction over the tokens, accumulated into an FP32 gradient)."""

    m: int
    n: int
    k: int
    dtype: str
    batch: int = 1
    wgrad: bool = False

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k * self.batch

    @property
    def bytes_moved(self) -> float:
        size = bytes_per_element(self.dtype)
        out = 8.0 if self.wgrad else BF16_BYTES
        return self.batch * ((self.m * self.k + self.k * self.n) * size + self.m * self.n * out)


@dataclass(frozen=True)
class GroupedGemm:
    """One [rows, k] x [k, n] product per group (local expert) in one kernel. ``dtype``: the experts'
    weights as stored; ``compute_dtype`` (empty: the same): the format the tensor cores run in and
    the activations move in, where a stack dequantises weights in the kernel (MXFP4 experts on
    Hopper run as BF16 products)."""

    groups: tuple[int, ...]
    n: int
    k: int
    dtype: str
    compute_dtype: str = ""
    swap_ab: bool = False  # the kernel swaps operands for small groups (sim.timing.grouped_gemm_time)
    kernel: str = ""  # a kernel table that times it (gpus/calibration/kernels); empty: the device's fit

    @property
    def flops(self) -> float:
        return 2.0 * sum(self.groups) * self.n * self.k

    @property
    def bytes_moved(self) -> float:
        weight = bytes_per_element(self.dtype) + weight_scale_bytes(self.dtype)
        size = bytes_per_element(self.compute_dtype or self.dtype)
        rows = sum(self.groups)
        active = sum(1 for g in self.groups if g > 0)
        return rows * self.k * size + active * self.k * self.n * weight + rows * self.n * BF16_BYTES


@dataclass(frozen=True)
class Memory:
    """A bandwidth-bound kernel moving ``bytes`` (read plus written); ``family`` names its fitted
    efficiency ("memory_bound"; "norm_rope" for RMSNorm and RoPE)."""

    bytes: float
    family: str = "memory_bound"

    @property
    def flops(self) -> float:
        return 0.0

    @property
    def bytes_moved(self) -> float:
        return self.bytes


@dataclass(frozen=True)
class Attention:
    """Core attention: ``batch`` sequences of ``q_len`` queries over ``kv_len`` keys, ``heads`` heads
    of ``qk``/``v`` dims; ``kv_bytes`` the K/V traffic when it is a cache read; ``backward`` its
    backward pass; the time is scaled by ``scale`` (a share of the work: context parallelism's 1/cp,
    a windowed layer's mean reach over the full causal one)."""

    batch: int
    q_len: int
    kv_len: int
    heads: int
    qk: int
    v: int
    causal: bool
    dtype: str = "bf16"
    backward: bool = False
    kv_bytes: float | None = None
    scale: float = 1.0

    @property
    def flops(self) -> float:
        pairs = (
            self.batch
            * self.q_len
            * self.kv_len
            * (0.5 if self.causal and self.q_len == self.kv_len else 1.0)
        )
        return 2.0 * pairs * self.heads * (self.qk + self.v) * (2.5 if self.backward else 1.0) * self.scale

    @property
    def bytes_moved(self) -> float:
        q_o = self.batch * self.q_len * self.heads * (self.qk + self.v) * BF16_BYTES
        kv = (
            self.kv_bytes
            if self.kv_bytes is not None
            else self.batch * self.kv_len * self.heads * (self.qk + self.v) * BF16_BYTES
        )
        return (q_o + kv) * self.scale


@dataclass(frozen=True)
class Gating:
    """Top-k selection of ``top_k`` of ``experts`` for ``tokens`` tokens (group-limited when
    ``groups`` > 1)."""

    tokens: int
    experts: int
    top_k: int
    scoring: str = "sigmoid"
    groups: int = 1

    @property
    def flops(self) -> float:
        return 4.0 * self.tokens * self.experts

    @property
    def bytes_moved(self) -> float:
        return self.tokens * self.experts * 4.0 + self.tokens * self.top_k * 8.0


@dataclass(frozen=True)
class Permute:
    """Rows of ``tokens`` tokens copied into expert order (``combine``: back, weighted and summed)."""

    tokens: int
    hidden: int
    top_k: int
    dtype: str = "bf16"
    combine: bool = False

    @property
    def flops(self) -> float:
        return 2.0 * self.tokens * self.top_k * self.hidden if self.combine else 0.0

    @property
    def bytes_moved(self) -> float:
        return (self.tokens + self.tokens * self.top_k) * self.hidden * bytes_per_element(self.dtype)


@dataclass(frozen=True)
class Comm:
    """A collective: ``bytes_per_token`` for each of ``tokens`` tokens over ``group`` ranks. Its time
    is each simulator's communication model's (``sim.comm``); ``dtype`` the wire format."""

    tokens: int
    bytes_per_token: float
    group: int
    dtype: str = "bf16"

    @property
    def flops(self) -> float:
        return 0.0

    @property
    def bytes_moved(self) -> float:
        return self.tokens * self.bytes_per_token


@dataclass(frozen=True)
class Given:
    """A time computed elsewhere (a serving step's core attention, summed over its requests)."""

    seconds: float

    @property
    def flops(self) -> float:
        return 0.0

    @property
    def bytes_moved(self) -> float:
        return 0.0


Work = Gemm | GroupedGemm | Memory | Attention | Gating | Permute | Comm | Given


@dataclass(frozen=True)
class Op:
    """One operator on one GPU (see the module docstring)."""

    name: str
    kind: OpKind
    work: Work
    phase: Phase = Phase.FORWARD
    stage: str = ""
    split: tuple[str, ...] = ()

    @property
    def flops(self) -> float:
        return self.work.flops

    @property
    def bytes_moved(self) -> float:
        return self.work.bytes_moved
