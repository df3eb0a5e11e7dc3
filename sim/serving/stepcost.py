"""What one batch step of a serving instance costs, from operator times (sim.timing, sim.comm).

A step is a forward pass of the whole model over the tokens of a batch, on one GPU of the
instance (attention data-parallel ranks run the same program on their own requests; the step
waits for the slowest rank). Every kernel a DeepSeek-style inference step launches is an operator
with its own shape and bytes (:meth:`StepCostModel.layer_ops` lists them by name):

* attention block: fused residual-add + RMSNorm; a per-token (1x128) FP8 cast before every FP8
  GEMM; MLA's fused q_a/kv_a projection, q_a and kv_a RMSNorms, q_b projection; RoPE; in prefill the
  kv_b up-projection and the assembly of per-head K/V (also over a cached prefix), in decode the
  absorbed per-head W_UK and W_UV batched GEMMs and the 576-d query; the KV-cache write; the core
  attention (:func:`sim.timing.attention_time`; FlashMLA in decode at the batch's KV length and KV
  dtype); the output projection. GQA/MHA models get their qkv/o projections, RoPE and KV write.
  Sliding-window and chunked local attention (gpt-oss, Llama 4): every layer's core attention is
  timed with the keys per query averaged over all layers (:meth:`StepCostModel._effective_keys`),
  where in decode a Llama 4 chunked layer counts min(L, chunk) keys (exact up to one chunk, an upper
  bound past it) and a NoPE layer all L; prefill times full causal attention over L scaled by that
  mean over L. Decode reads the model's capped KV cache (moe.accounting), averaged over layers;
* dense layers: fused add + norm, cast, gate/up GEMM, SwiGLU fused with the FP8 cast, down GEMM;
* MoE layers: the router GEMM and group-limited top-k gating; shared experts (cast, GEMMs, SwiGLU);
  routed experts as grouped GEMMs over this GPU's experts with the busiest GPU's load
  (:func:`sim.serving.deployment.expert_imbalance`); in prefill (DeepEP normal kernels) the FP8 cast
  before the dispatch, the permute of received rows and the weighted un-permute; the dispatch (FP8
  + 1x128 scales) and combine (BF16) all-to-all over NVLink and InfiniBand (:mod:`sim.comm` links).
  Decode uses DeepEP's low-latency kernels with the receive hook: their send and receive-hook
  kernels (FP8 cast and packing, unpacking into the per-expert layout, staging the expert outputs,
  the weighted top-k sum) on the compute stream, and the transfer between them (one message per
  token and expert) on the communication stream. DeepEP's published low-latency times, to which the
  links are fitted (:func:`sim.comm.all_to_all_time`), are those of one hook-less kernel that does
  the send and receive work too, so the transfer is that time less the kernels it holds outside
  the transfer (:meth:`StepCostModel._low_latency_transfer`); prefill deduplicates per node (normal
  kernels: a token crosses IB once per destination node);
* per step: embedding, final norm, output head and sampling; with MTP, the MTP module (entry norms
  and 2h -> h projection, one MoE layer over the verified positions) and its head per draft token.

Batched GEMMs (MLA's absorbed products) are one kernel over all heads (``sim.timing.gemm_time``
with ``batch``).

Two micro-batches (Day 6; V3-TR section 3.4): prefill overlaps one micro-batch's computation
with the other's dispatch/combine on a compute and a communication stream (order on the compute
stream: attention A, attention B, MoE A, MoE B; shared experts do not wait for the dispatch);
the normal kernels hold ``comm_sms`` SMs, so computation runs on the rest. Decode runs the
five-stage pipeline of :func:`decode_pipeline_schedule` (attention split in two). With compute
zero a layer costs 2 x (dispatch + combine), the ISCA'25 bound; with communication zero it costs
the computation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from sim import comm, timing
from sim.serving.deployment import DTYPE_BYTES, InstanceSpec, expert_imbalance, kv_bytes_per_token
from sim.serving.operator_kinds import operator_kind

FP8_SCALE_OVERHEAD = 4.0 / 128.0  # one FP32 scale per 128 FP8 values (V3-TR section 3.3, 1x128 tiles)
NORM = timing.NORM_ROPE  # RMSNorm and RoPE: their own fitted family
# DeepEP low-latency kernel phases (sim.comm.LOW_LATENCY_PHASES) -> the operators that charge them
LOW_LATENCY_OPS = {
    "dispatch_send": "ll_dispatch_send",
    "dispatch_recv": "ll_dispatch_recv",
    "combine_send": "ll_combine_send",
    "combine_recv": "ll_combine_recv_reduce",
}
# the phases that lie outside the transfer in DeepEP's timed kernel (StepCostModel._low_latency_transfer)
LOW_LATENCY_TAKEN_OUT = ("dispatch_send", "combine_send", "combine_recv")


def _affine_memory_time(gpu: Any, family: str) -> tuple[float, float] | None:
    """``(launch_s, s_per_byte)`` of ``family``'s bandwidth-bound time, when it is affine in the
    bytes (no FLOPs term: launch + bytes / achieved bandwidth), else None."""
    t0 = timing.memory_time(gpu, 0.0, family=family).predicted_s
    slope = (timing.memory_time(gpu, 1e9, family=family).predicted_s - t0) / 1e9
    probe = timing.memory_time(gpu, 3.7e8, family=family).predicted_s
    return (t0, slope) if math.isclose(probe, t0 + slope * 3.7e8, rel_tol=1e-9) else None


@dataclass(frozen=True)
class LayerCost:
    """Times of one layer for one micro-batch, seconds."""

    attention_s: float
    ffn_s: float
    dispatch_s: float = 0.0
    combine_s: float = 0.0
    shared_s: float = 0.0  # MoE layers: shared expert, computed while the dispatch is in flight
    attention_prepare_s: float = 0.0  # the part of attention_s before the core attention kernel


def _layer_busy_s(layer: LayerCost) -> float:
    """Compute and communication time of one layer for one micro-batch (the breakdown's share)."""
    return layer.attention_s + layer.shared_s + layer.ffn_s + layer.dispatch_s + layer.combine_s


@dataclass(frozen=True)
class Schedule:
    total_s: float
    compute_busy_s: float
    comm_busy_s: float

    @property
    def exposed_comm_s(self) -> float:
        return max(0.0, self.total_s - self.compute_busy_s)


def two_stream_schedule(layers: Sequence[LayerCost], micro_batches: int) -> Schedule:
    """Run ``layers`` for ``micro_batches`` (1 or 2) micro-batches on a compute and a comm stream.

    Each micro-batch goes attention -> dispatch -> FFN/experts -> combine -> next layer. Streams
    execute their operations in the fixed order described in the module docstring.
    """
    compute_free = 0.0
    comm_free = 0.0
    ready = [0.0] * micro_batches
    compute_busy = 0.0
    comm_busy = 0.0
    for layer in layers:
        dispatched = [0.0] * micro_batches
        for mb in range(micro_batches):
            start = max(compute_free, ready[mb])
            compute_free = start + layer.attention_s
            compute_busy += layer.attention_s
            if layer.dispatch_s > 0:
                s = max(comm_free, compute_free)
                comm_free = s + layer.dispatch_s
                comm_busy += layer.dispatch_s
                dispatched[mb] = comm_free
            else:
                dispatched[mb] = compute_free
        for mb in range(micro_batches):
            compute_free += layer.shared_s  # needs only the attention output, not the dispatch
            compute_busy += layer.shared_s
            start = max(compute_free, dispatched[mb])
            compute_free = start + layer.ffn_s
            compute_busy += layer.ffn_s
            if layer.combine_s > 0:
                s = max(comm_free, compute_free)
                comm_free = s + layer.combine_s
                comm_busy += layer.combine_s
                ready[mb] = comm_free
            else:
                ready[mb] = compute_free
    return Schedule(max(ready + [compute_free]), compute_busy, comm_busy)


def decode_pipeline_schedule(
    layers: Sequence[LayerCost], micro_batches: int, delta_stages: int = 2
) -> Schedule:
    """DeepSeek's decode overlap (Day 6): each layer of a micro-batch runs as five stages, attention
    split in two, and the two micro-batches alternate stage by stage, the second ``delta_stages``
    behind (the reproduction in SGLang's two-batch overlap, ``tbo_delta_stages=2``):

    1. attention, first part (norms, projections, RoPE, absorbed query: ``attention_prepare_s``);
    2. attention, second part (core attention, output projection) and gating;
    3. issue the dispatch (low-latency kernels send in the background, holding no SMs), shared expert;
    4. wait for the dispatch, routed experts, issue the combine;
    5. wait for the combine.

    Communication runs on one stream (the NIC) in the order issued; a wait stalls the compute stream.
    With one micro-batch the stages run in order (no overlap).
    """
    compute_free = 0.0
    comm_free = 0.0
    compute_busy = 0.0
    comm_busy = 0.0

    def stages(mb: int) -> Any:
        nonlocal compute_free, comm_free, compute_busy, comm_busy
        for layer in layers:
            pre = min(layer.attention_prepare_s, layer.attention_s)
            for work in (pre, layer.attention_s - pre):
                compute_free += work
                compute_busy += work
                yield
            dispatch_done = compute_free
            if layer.dispatch_s > 0:
                dispatch_done = max(comm_free, compute_free) + layer.dispatch_s
                comm_free = dispatch_done
                comm_busy += layer.dispatch_s
            compute_free += layer.shared_s
            compute_busy += layer.shared_s
            yield
            compute_free = max(compute_free, dispatch_done) + layer.ffn_s
            compute_busy += layer.ffn_s
            combine_done = compute_free
            if layer.combine_s > 0:
                combine_done = max(comm_free, compute_free) + layer.combine_s
                comm_free = combine_done
                comm_busy += layer.combine_s
            yield
            compute_free = max(compute_free, combine_done)
            yield

    if micro_batches <= 1:
        for _ in stages(0):
            pass
        return Schedule(compute_free, compute_busy, comm_busy)
    a, b = stages(0), stages(1)
    for _ in range(delta_stages):
        next(a, None)
    done_a = done_b = False
    while not (done_a and done_b):
        if not done_a:
            done_a = next(a, StopIteration) is StopIteration
        if not done_b:
            done_b = next(b, StopIteration) is StopIteration
    return Schedule(compute_free, compute_busy, comm_busy)


@dataclass(frozen=True)
class StepCost:
    """One step on one GPU: total time and where it went (seconds)."""

    time_s: float
    compute_s: float
    comm_s: float
    exposed_comm_s: float
    breakdown_s: dict[str, float] = field(default_factory=dict)
    bound_by: str = "compute"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bound(breakdown: dict[str, float], compute_s: float, comm_kind: str, schedule: Schedule) -> str:
    if schedule.comm_busy_s > schedule.compute_busy_s:
        return comm_kind
    return max(("attention", "dense_gemm", "experts"), key=lambda k: breakdown.get(k, 0.0))


class StepCostModel:
    """Step times of one instance shape; results are cached by batch shape."""

    def __init__(
        self, model: Any, gpu: Any, inst: InstanceSpec, mtp_draft_tokens: int, rng: np.random.Generator
    ) -> None:
        import gpus

        self.model = model
        self.gpu = gpu
        self.inst = inst
        self.draft = int(mtp_draft_tokens)
        self.rng = rng
        self.cluster = gpus.Cluster(gpu, nodes=inst.nodes, gpus_per_node=inst.gpus_per_node)
        a = model.attention
        self.attn = a
        self.hidden = int(model.hidden_size)
        self.num_layers = int(model.num_layers)
        self.moe_layer_flags = tuple(bool(model.is_moe_layer(i)) for i in range(self.num_layers))
        p = model.params_breakdown
        self.attn_params_per_layer = float(p.get("attention", 0)) / self.num_layers
        self.dense_dtype = "fp8" if inst.weight_dtype in ("fp8", "fp6", "fp4", "int4", "int8") else "bf16"
        self.expert_dtype = (
            inst.weight_dtype if inst.weight_dtype in ("fp8", "fp4", "bf16", "fp16") else "fp8"
        )
        self.shared_inter = int(model.shared_expert_intermediate_size or model.moe_intermediate_size) * int(
            model.num_shared_experts
        )
        self.num_physical_experts = int(model.num_routed_experts) + inst.redundant_experts
        self.experts_per_gpu = max(1, self.num_physical_experts // inst.ep)
        self.sm_slowdown = gpu.sm_count / (gpu.sm_count - inst.comm_sms) if inst.micro_batches > 1 else 1.0
        self.links = {}
        for kind in ("nvlink", "ib"):
            try:
                self.links[kind] = comm.link(self.cluster, kind)
            except ValueError:
                pass
        self._imbalance: dict[int, float] = {}
        self._cache: dict[tuple[Any, ...], Any] = {}
        self.mla_absorbed = a.kind == "mla"
        # sim.timing's bandwidth-bound model has no FLOPs term, so its time is affine in the bytes
        # (launch + bytes / achieved bandwidth): read both coefficients once per family
        self._mem_affine = {f: _affine_memory_time(gpu, f) for f in ("memory_bound", "norm_rope")}
        self._gemm_cache: dict[tuple[int, int, int, str], float] = {}
        self._batched_cache: dict[tuple[int, int, int, int, str], float] = {}

    # ---- per-operator pieces ------------------------------------------------------------------
    def imbalance(self, tokens_per_gpu: float) -> float:
        key = max(1, int(round(tokens_per_gpu)))
        bucket = 1 << (key.bit_length() - 1)  # powers of two: the imbalance changes slowly with load
        if bucket not in self._imbalance:
            self._imbalance[bucket] = expert_imbalance(self.model, self.inst, float(bucket), self.rng)
        return self._imbalance[bucket]

    def _gemm(self, m: int, n: float, k: float, dtype: str) -> float:
        key = (max(1, int(m)), max(1, int(round(n))), max(1, int(round(k))), dtype)
        t = self._gemm_cache.get(key)
        if t is None:
            t = timing.gemm_time(self.gpu, *key).predicted_s
            self._gemm_cache[key] = t
        return t

    # ---- operator times (each a kernel a DeepSeek-style inference step runs) -----------------
    def _mem(self, bytes_moved: float, family: str = "memory_bound") -> float:
        """A bandwidth-bound kernel (cast, copy; ``family="norm_rope"`` for RMSNorm and RoPE)
        moving ``bytes_moved`` bytes (:func:`sim.timing.memory_time`)."""
        b = max(0.0, float(bytes_moved))
        affine = self._mem_affine.get(family)
        if affine is not None:
            return affine[0] + affine[1] * b
        return timing.memory_time(self.gpu, b, family=family).predicted_s

    def _cast(self, elements: float) -> float:
        """Per-token (1x128) FP8 quantisation of a BF16 tensor before an FP8 GEMM or FP8 dispatch:
        reads BF16, writes FP8 plus one FP32 scale per 128 values (V3-TR section 3.3). Zero when the
        GEMMs run in BF16."""
        if self.dense_dtype != "fp8":
            return 0.0
        return self._mem(elements * (2.0 + 1.0 + FP8_SCALE_OVERHEAD))

    def _norm(self, elements: float, residual: bool = False) -> float:
        """RMSNorm over BF16 ``elements``; with ``residual`` the residual add is fused into it (read
        the sub-layer output and the residual, write the new residual and the normed output)."""
        return self._mem(elements * 2.0 * (4.0 if residual else 2.0), NORM)

    def _act_cast(self, rows: float, inter: float) -> float:
        """SwiGLU over [rows, 2 x inter] fused with the FP8 cast of its output for the down GEMM."""
        out = 1.0 + FP8_SCALE_OVERHEAD if self.dense_dtype == "fp8" else 2.0
        return self._mem(rows * inter * (2.0 * 2.0 + out))

    def _batched_gemm(self, batch: int, m: int, n: int, k: int, dtype: str) -> float:
        """``batch`` independent [m, k] x [k, n] products in one kernel (MLA's absorbed per-head
        products): :func:`sim.timing.gemm_time` with ``batch`` (every member's FLOPs and weights,
        their tiles quantised together over the SMs, one launch)."""
        key = (int(batch), max(1, int(m)), int(n), int(k), dtype)
        t = self._batched_cache.get(key)
        if t is None:
            t = timing.gemm_time(self.gpu, key[1], key[2], key[3], dtype, batch=key[0]).predicted_s
            self._batched_cache[key] = t
        return t

    def attention_ops(self, tokens: int, absorbed: bool) -> list[tuple[str, float]]:
        """(name, seconds) of the attention block of one layer for ``tokens`` tokens of this GPU,
        the core attention kernel excepted: fused residual-add + RMSNorm, FP8 casts of every FP8 GEMM
        input, the projections with their own shapes, MLA's q_a/kv_a norms, RoPE, assembling the
        query/key tensors, the KV-cache write, and in absorbed (decode) form the per-head W_UK and
        W_UV batched GEMMs."""
        key = ("attn_ops", tokens, absorbed)
        if key in self._cache:
            return list(self._cache[key])
        a, h, t, dt = self.attn, self.hidden, max(1, int(tokens)), self.dense_dtype
        heads = max(1, a.num_heads // self.inst.tp)
        kv_b = DTYPE_BYTES[self.inst.kv_dtype]
        ops: list[tuple[str, float]] = [("attn_norm", self._norm(t * h, residual=True))]
        ops.append(("cast_attn_in", self._cast(t * h)))
        if a.kind == "mla":
            rope, nope, lat, v = a.qk_rope_head_dim, a.qk_nope_head_dim, a.kv_lora_rank, a.v_head_dim
            qk = nope + rope
            if a.q_lora_rank:
                # q_a and kv_a share their input: one fused GEMM (N = 1536 + 576 = 2112 for V3, a
                # DeepGEMM benchmark shape)
                ops.append(("qkv_a_proj", self._gemm(t, a.q_lora_rank + lat + rope, h, dt)))
                ops.append(("q_a_norm", self._norm(t * a.q_lora_rank)))
                ops.append(("cast_q_b_in", self._cast(t * a.q_lora_rank)))
                ops.append(("q_b_proj", self._gemm(t, heads * qk, a.q_lora_rank, dt)))
            else:
                ops.append(("q_proj", self._gemm(t, heads * qk, h, dt)))
                ops.append(("kv_a_proj", self._gemm(t, lat + rope, h, dt)))
            ops.append(("kv_a_norm", self._norm(t * lat)))
            ops.append(("rope", self._mem(2.0 * 2.0 * t * (heads + 1) * rope, NORM)))
            if a.index_topk:
                # DeepSeek sparse attention's lightning indexer projections (its scoring kernel is
                # counted with the core attention, :meth:`_effective_keys`)
                q_in = a.q_lora_rank or h
                ops.append(("indexer_q", self._gemm(t, a.index_n_heads * a.index_head_dim, q_in, dt)))
                ops.append(("indexer_k", self._gemm(t, a.index_head_dim, h, dt)))
                ops.append(("indexer_weights", self._gemm(t, a.index_n_heads, h, "bf16")))
            if absorbed:
                ops.append(("q_absorb_wuk", self._batched_gemm(heads, t, lat, nope, "bf16")))
                # query [nope-absorbed 512 | rope 64] per head; latent + rope key appended to the cache
                ops.append(("build_q", self._mem(2.0 * 2.0 * t * heads * (lat + rope))))
                ops.append(("kv_cache_write", self._mem(t * (lat + rope) * (2.0 + kv_b))))
            else:
                ops.append(("cast_kv_b_in", self._cast(t * lat)))
                ops.append(("kv_b_proj", self._gemm(t, heads * (nope + v), lat, dt)))
                # K = [k_nope | k_pe broadcast over heads], V split out of kv_b's output
                ops.append(("build_qk", self._mem(t * heads * (nope + v) * 2.0 + t * heads * (qk + v) * 2.0)))
                ops.append(("kv_cache_write", self._mem(t * (lat + rope) * (2.0 + kv_b))))
            if absorbed:
                ops.append(("o_absorb_wuv", self._batched_gemm(heads, t, v, lat, "bf16")))
            ops.append(("cast_o_in", self._cast(t * heads * v)))
            ops.append(("o_proj", self._gemm(t, h, heads * v, dt)))
        elif a.kind in ("mha", "gqa"):
            d = int(a.head_dim)
            kvh = max(1, a.num_kv_heads // self.inst.tp)
            ops.append(("qkv_proj", self._gemm(t, (heads + 2 * kvh) * d, h, dt)))
            if getattr(a, "qk_norm", False):
                ops.append(("qk_norm", self._norm(t * (heads + kvh) * d)))
            ops.append(("rope", self._mem(2.0 * 2.0 * t * (heads + kvh) * d, NORM)))
            ops.append(("kv_cache_write", self._mem(t * 2 * kvh * d * (2.0 + kv_b))))
            ops.append(("cast_o_in", self._cast(t * heads * d)))
            ops.append(("o_proj", self._gemm(t, h, heads * d, dt)))
        else:
            # other attention kinds (V4's compressed attention): the layer's attention weights as one GEMM
            n = self.attn_params_per_layer / h / self.inst.tp
            ops.append(("attn_proj", self._gemm(t, n, h, dt)))
            ops.append(("attn_inner_norms", self._norm(t * h)))
        self._cache[key] = tuple(ops)
        return ops

    def attention_block_linear(self, tokens: int) -> float:
        """Attention block of one layer without the core attention kernel (see :meth:`attention_ops`)."""
        return sum(t for _, t in self.attention_ops(tokens, self.mla_absorbed))

    def _pair_flops(self, decode: bool) -> tuple[int, int]:
        """(qk dim, v dim) of the attention kernel's products."""
        a = self.attn
        if a.kind == "mla" and (decode or a.index_topk):
            return a.kv_lora_rank + a.qk_rope_head_dim, a.kv_lora_rank
        return int(a.qk_head_dim), int(a.value_head_dim)

    def _effective_keys(self, context: int, causal: bool, qk: int, v: int) -> float:
        """Keys per query averaged over layers for windowed / chunked / compressed / sparse attention,
        from the model's exact per-layer accounting (moe.accounting; a Llama 4 chunked layer counts
        min(context, chunk) keys when ``causal`` is False)."""
        if self.attn.kind == "mla" and not self.attn.index_topk:
            return float(context)
        from moe import accounting

        total = 0.0
        for layer in range(self.num_layers):
            main, idx = accounting.layer_attention_flops_per_token(self.model, layer, max(1, context), causal)
            total += main + idx
        heads = self.attn.num_heads
        return total / self.num_layers / (2.0 * heads * (qk + v))

    def decode_attention(self, batch: int, q_len: int, kv_len: int) -> float:
        key = ("dattn", batch, q_len, kv_len)
        if key in self._cache:
            return self._cache[key]
        qk, v = self._pair_flops(decode=True)
        keys = self._effective_keys(kv_len, False, qk, v)
        kv_layer = kv_bytes_per_token(self.model, self.inst.kv_dtype, kv_len) * kv_len / self.num_layers
        heads = max(1, self.attn.num_heads // self.inst.tp)
        t = timing.attention_time(
            self.gpu,
            batch,
            q_len,
            max(1, int(round(keys))),
            heads,
            qk,
            v,
            True,
            "bf16",
            kv_bytes=batch * kv_layer,
        ).predicted_s
        self._cache[key] = t
        return t

    def prefill_attention(self, new_tokens: int, cached_tokens: int) -> float:
        """Causal attention of ``new_tokens`` queries after ``cached_tokens`` of prefix, one layer."""
        key = ("pattn", new_tokens, cached_tokens)
        if key in self._cache:
            return self._cache[key]
        qk, v = self._pair_flops(decode=False)
        context = new_tokens + cached_tokens
        heads = max(1, self.attn.num_heads // self.inst.tp)
        keys = self._effective_keys(context, False, qk, v)
        scale = keys / context if context else 1.0
        t = (
            timing.attention_time(self.gpu, 1, new_tokens, context, heads, qk, v, True, "bf16").predicted_s
            * scale
        )
        a = self.attn
        if cached_tokens > 0 and a.kind == "mla" and not a.index_topk:
            # MLA prefill attends with full per-head keys and values: a cached prefix (stored as
            # latents) is up-projected again (kv_b GEMM over the prefix, its FP8 cast, K/V assembly)
            c, lat, nope = int(cached_tokens), a.kv_lora_rank, a.qk_nope_head_dim
            t += self._cast(c * lat)
            t += self._gemm(c, heads * (nope + a.v_head_dim), lat, self.dense_dtype)
            t += self._mem(c * heads * (nope + a.v_head_dim) * 2.0 + c * heads * (qk + a.v_head_dim) * 2.0)
        self._cache[key] = t
        return t

    def dense_ffn_ops(self, tokens: int) -> list[tuple[str, float]]:
        """Dense FFN layer: fused residual-add + RMSNorm, FP8 casts, gate/up GEMM, SwiGLU, down GEMM."""
        h, t, dt = self.hidden, max(1, int(tokens)), self.dense_dtype
        inter = self.model.intermediate_size / self.inst.tp
        return [
            ("ffn_norm", self._norm(t * h, residual=True)),
            ("cast_ffn_in", self._cast(t * h)),
            ("mlp_gate_up", self._gemm(t, 2 * inter, h, dt)),
            ("mlp_act_cast", self._act_cast(t, inter)),
            ("mlp_down", self._gemm(t, h, inter, dt)),
        ]

    def dense_ffn(self, tokens: int) -> float:
        return sum(x for _, x in self.dense_ffn_ops(tokens))

    def moe_pre_ops(self, tokens: int, prefill: bool) -> list[tuple[str, float]]:
        """MoE layer up to the dispatch: fused residual-add + RMSNorm, the router GEMM (BF16,
        [tokens, hidden] x [hidden, experts]), group-limited top-k gating, and for DeepEP's normal
        (prefill) kernels the FP8 cast of the dispatched hidden state; the low-latency decode kernels
        cast in their send kernel (``ll_dispatch_send``, which the published latency holds: the
        transfer is charged without it)."""
        m, h, t = self.model, self.hidden, max(1, int(tokens))
        td = max(1, int(math.ceil(t / self.inst.tp)))
        e, k = int(m.num_routed_experts), int(m.experts_per_token)
        scoring = "softmax" if m.scoring_func == "softmax" else "sigmoid"
        ops = [
            ("ffn_norm", self._norm(t * h, residual=True)),
            ("router_gemm", self._gemm(td, e, h, "bf16")),
            (
                "gating",
                timing.gating_time(self.gpu, td, e, k, scoring, max(1, int(m.n_group or 1))).predicted_s,
            ),
        ]
        if prefill:
            ops.append(("cast_dispatch", self._cast(td * h)))
        elif self.inst.ep > 1:
            # DeepEP low-latency dispatch, send half (a kernel on the compute stream when its receive
            # is deferred to a hook): FP8 cast of each token into the send buffer, RDMA puts issued.
            # The published dispatch latency holds this work: it leaves the transfer's time
            # (_low_latency_transfer)
            ops.append(("ll_dispatch_send", self._mem(td * h * (2.0 + 1.0 + FP8_SCALE_OVERHEAD))))
        return ops

    def shared_ops(self, tokens: int) -> list[tuple[str, float]]:
        """Shared experts: FP8 cast of their input, gate/up GEMM, SwiGLU + cast, down GEMM."""
        if not self.shared_inter:
            return []
        h, t, dt = self.hidden, max(1, int(tokens)), self.dense_dtype
        inter = self.shared_inter / self.inst.tp
        return [
            ("cast_shared_in", self._cast(t * h)),
            ("shared_gate_up", self._gemm(t, 2 * inter, h, dt)),
            ("shared_act_cast", self._act_cast(t, inter)),
            ("shared_down", self._gemm(t, h, inter, dt)),
        ]

    def routed_ops(self, tokens: int, prefill: bool) -> list[tuple[str, float]]:
        """This GPU's routed experts for ``tokens`` tokens of its rank (busiest GPU's load): grouped
        gate/up GEMM, SwiGLU + FP8 cast, grouped down GEMM; prefill (contiguous layout) also permutes
        the received FP8 rows into expert order and un-permutes + weight-reduces the outputs (decode's
        masked layout is written by the low-latency dispatch, and its combine reduces in-kernel)."""
        m, h = self.model, self.hidden
        k = int(m.experts_per_token)
        rows = max(1, int(tokens)) * k / self.inst.tp
        rows *= self.imbalance(rows)
        per_group = max(1, int(math.ceil(rows / self.experts_per_gpu)))
        groups = [per_group] * self.experts_per_gpu
        inter = int(m.moe_intermediate_size)
        recv = max(1, int(math.ceil(per_group * self.experts_per_gpu / k)))
        ops = []
        low_latency = not prefill and self.inst.ep > 1
        received = per_group * self.experts_per_gpu
        if prefill:
            ops.append(("permute", timing.permute_time(self.gpu, recv, h, k, dtype="fp8").predicted_s))
        elif low_latency:
            # low-latency dispatch, receive hook: unpack the received FP8 rows into the per-expert
            # (masked) layout (the published latency hides this copy under the arrivals; the hook
            # runs it after them)
            ops.append(("ll_dispatch_recv", self._mem(received * h * (1.0 + FP8_SCALE_OVERHEAD) * 2.0)))
        ops += [
            (
                "experts_gate_up",
                timing.grouped_gemm_time(self.gpu, groups, 2 * inter, h, self.expert_dtype).predicted_s,
            ),
            ("experts_act_cast", self._act_cast(per_group * self.experts_per_gpu, inter)),
            (
                "experts_down",
                timing.grouped_gemm_time(self.gpu, groups, h, inter, self.expert_dtype).predicted_s,
            ),
        ]
        if prefill:
            ops.append(
                ("unpermute_reduce", timing.permute_time(self.gpu, recv, h, k, combine=True).predicted_s)
            )
        elif low_latency:
            # low-latency combine, send half: expert outputs (BF16) into the send buffer, puts issued
            # (the launch table's combine latency holds this copy; the 2025-06 one is timed zero-copy,
            # with the copy outside it: kernels_numba.published.DEEPEP_LOW_LATENCY_CONTAINS)
            ops.append(("ll_combine_send", self._mem(received * h * 2.0 * 2.0)))
        return ops

    def combine_recv_ops(self, tokens: int, prefill: bool) -> list[tuple[str, float]]:
        """Low-latency combine, receive hook: the weighted sum of each token's top-k expert outputs
        (held by the published combine latency; the normal prefill kernels reduce on their own SMs)."""
        if prefill or self.inst.ep <= 1:
            return []
        k = int(self.model.experts_per_token)
        td = max(1, int(math.ceil(max(1, int(tokens)) / self.inst.tp)))
        return [("ll_combine_recv_reduce", self._mem(td * self.hidden * 2.0 * (k + 1.0)))]

    def moe_ffn(self, tokens: int, prefill: bool) -> float:
        """Everything an MoE layer computes for ``tokens`` tokens of its rank (no communication)."""
        ops = self.moe_pre_ops(tokens, prefill) + self.shared_ops(tokens) + self.routed_ops(tokens, prefill)
        return sum(x for _, x in ops + self.combine_recv_ops(tokens, prefill))

    def moe_output_add(self, tokens: int) -> float:
        """Shared-expert output + combined routed output (read two BF16 tensors, write one)."""
        return self._mem(max(1, int(tokens)) * self.hidden * 2.0 * 3.0)

    def all_to_all(self, tokens: int, bytes_per_value: float, dedupe_per_node: bool) -> float:
        """Dispatch or combine of the ``tokens`` tokens of this GPU's attention rank over the
        instance's EP group: with tensor-parallel attention the ``tp`` GPUs of a rank hold the same
        tokens and each sends its 1/tp share (as the router and the routed rows count them)."""
        ep = self.inst.ep
        if ep <= 1 or tokens <= 0:
            return 0.0
        tokens = int(math.ceil(tokens / self.inst.tp))
        k = int(self.model.experts_per_token)
        d = min(self.inst.gpus_per_node, ep)
        row = self.hidden * bytes_per_value
        if not dedupe_per_node:
            # DeepEP low-latency kernels: one message per (token, expert), uniform over the EP ranks
            return comm.all_to_all_time(self.cluster, tokens * k * row, num_gpus=ep).predicted_s
        local_frac = (d - 1) / ep
        remote_frac = (ep - d) / ep
        nv_bytes = tokens * k * row * local_frac
        ib_bytes = tokens * k * row * remote_frac
        if dedupe_per_node and ep > d:
            nodes = ep // d
            limit = min(nodes, max(1, int(getattr(self.model, "topk_group", nodes) or nodes)))
            expected_nodes = nodes * (1.0 - (1.0 - 1.0 / nodes) ** k)
            remote_nodes = min(expected_nodes, float(limit)) * (nodes - 1) / nodes
            forwarded = tokens * k * remote_frac - tokens * remote_nodes
            ib_bytes = tokens * remote_nodes * row
            nv_bytes += max(0.0, forwarded) * row
        t_nv = (
            nv_bytes / self.links["nvlink"].bandwidth_bytes_per_s
            if nv_bytes and "nvlink" in self.links
            else 0.0
        )
        t_ib = ib_bytes / self.links["ib"].bandwidth_bytes_per_s if ib_bytes and "ib" in self.links else 0.0
        latency = 0.0
        if t_nv > 0:
            latency = max(latency, self.links["nvlink"].latency_s)
        if t_ib > 0:
            latency = max(latency, self.links["ib"].latency_s)
        return latency + max(t_nv, t_ib)

    def low_latency_in_transfer(self) -> tuple[str, ...]:
        """Names of the low-latency kernel operators (``ll_*``) whose time the fitted transfer time
        already holds and which are therefore taken out of it (:meth:`_low_latency_transfer`): those
        of the phases the link's fit holds (:attr:`sim.comm.Link.low_latency_contains`; none for a
        roofline link) that lie on the timed kernel's path outside the transfer."""
        chosen = self.links.get(self.comm_kind())
        if chosen is None or self.inst.ep <= 1:
            return ()
        return tuple(
            LOW_LATENCY_OPS[phase] for phase in chosen.low_latency_contains if phase in LOW_LATENCY_TAKEN_OUT
        )

    def _low_latency_transfer(
        self, dispatch: float, combine: float, ops: dict[str, list[tuple[str, float]]]
    ) -> tuple[float, float]:
        """Dispatch and combine times for the communication stream: the fitted all-to-all time less
        the send and receive kernels (charged on the compute stream) that it already holds.

        DeepEP's low-latency table times one kernel launched without the receive hook, send phase,
        transfer and receive phase in one launch (kernels_numba.published.DEEPEP_LOW_LATENCY_CONTAINS,
        from DeepEP's tests/test_low_latency.py). A hooked step runs the send kernel, the transfer,
        then the receive-hook kernel. How each phase sits in the timed kernel
        (csrc/kernels/internode_ll.cu @ebfe47e and @d8dd185):

        * send (dispatch: FP8 cast; combine: staging copy): each token is put on the wire as soon as
          it is cast or copied, so the transfer runs from the start of the send work; here the
          transfer starts after the send kernel, so the send kernel comes off it;
        * combine receive: the weighted sum starts after a grid-wide wait for every rank
          (``cg::this_grid().sync()``), after the transfer, so the table time holds all of it: it
          comes off;
        * dispatch receive: each (expert, source rank) block is copied as soon as it arrives, under
          the later arrivals; only the last block's copy follows the transfer, so nothing comes off,
          and the hooked step's receive kernel, which runs after the whole transfer, is charged in
          full.

        Assumption kept: these three statements, with the send and receive kernels timed as the
        memory-bound kernels they are; with one micro-batch a dispatch then costs the table time
        plus the receive copy the table hides, a combine the table time. The transfer does not go
        below zero."""
        held = set(self.low_latency_in_transfer())
        if not held:
            return dispatch, combine
        times = {name: x for v in ops.values() for name, x in v if name in held}
        sent = sum(x for name, x in times.items() if name.startswith("ll_dispatch"))
        returned = sum(x for name, x in times.items() if name.startswith("ll_combine"))
        return max(0.0, dispatch - sent), max(0.0, combine - returned)

    def comm_kind(self) -> str:
        return "ib" if self.inst.ep > min(self.inst.gpus_per_node, self.inst.ep) else "nvlink"

    def tp_allreduce(self, tokens: int) -> float:
        """All-reduce of a BF16 hidden state over the tp group (attention output or FFN output)."""
        if self.inst.tp <= 1 or tokens <= 0:
            return 0.0
        size = tokens * self.hidden * 2.0
        return comm.all_reduce_time(self.cluster, size, num_gpus=self.inst.tp).predicted_s

    def head_ops(self, rows: int, embedded: int) -> list[tuple[str, float]]:
        """Per step, not per layer: embedding gather of the ``embedded`` input tokens, final RMSNorm,
        output head (BF16, as V3 keeps it) and sampling (softmax / top-p over FP32 logits: about
        three passes) for the ``rows`` positions that need logits."""
        h, rows = self.hidden, max(1, int(rows))
        vocab = self.model.vocab_size / self.inst.tp
        return [
            ("embedding", self._mem(max(1, int(embedded)) * h * 2.0 * 2.0)),
            ("final_norm", self._norm(rows * h, residual=True)),
            ("lm_head", self._gemm(rows, vocab, h, "bf16")),
            ("sampling", self._mem(rows * vocab * 4.0 * 3.0)),
        ]

    def head(self, tokens: int) -> float:
        return sum(x for _, x in self.head_ops(tokens, tokens))

    def mtp_join_ops(self, tokens: int) -> list[tuple[str, float]]:
        """MTP module entry (V3-TR section 2.2): RMSNorm of the hidden state and of the next token's
        embedding, their concatenation projected 2h -> h (FP8 cast first when FP8)."""
        h, t = self.hidden, max(1, int(tokens))
        return [
            ("mtp_embedding", self._mem(t * h * 2.0 * 2.0)),
            ("mtp_norms", self._norm(2 * t * h)),
            ("cast_mtp_proj_in", self._cast(2 * t * h)),
            ("mtp_eh_proj", self._gemm(t, h, 2 * h, self.dense_dtype)),
        ]

    # ---- whole steps --------------------------------------------------------------------------
    def layer_ops(
        self, tokens_mb: int, attention_mb: float, prefill: bool
    ) -> dict[str, list[tuple[str, float]]]:
        """Named operator times of one micro-batch through one dense and one MoE layer, by stage:
        "dense_attention", "dense_ffn", "moe_attention" (up to the dispatch), "moe_shared",
        "moe_routed" (seconds without the SM share that overlapping all-to-all kernels take)."""
        absorbed = self.mla_absorbed and (not prefill or bool(self.attn.index_topk))
        attn = self.attention_ops(tokens_mb, absorbed)
        # the core attention kernel runs after the query/key preparation, before the output side
        at = next(
            (i for i, (n, _) in enumerate(attn) if n in ("o_absorb_wuv", "cast_o_in", "o_proj")), len(attn)
        )
        attn = attn[:at] + [("core_attention", attention_mb)] + attn[at:]
        out = {"dense_attention": attn, "dense_ffn": self.dense_ffn_ops(tokens_mb)}
        out["moe_attention"] = (
            self.combine_recv_ops(tokens_mb, prefill)
            + [("moe_output_add", self.moe_output_add(tokens_mb))]
            + attn
            + self.moe_pre_ops(tokens_mb, prefill)
        )
        out["moe_shared"] = self.shared_ops(tokens_mb)
        out["moe_routed"] = self.routed_ops(tokens_mb, prefill)
        return out

    @staticmethod
    def _after_core(attention: list[tuple[str, float]]) -> float:
        """Time of the attention block's operators after the core attention kernel."""
        names = [n for n, _ in attention]
        return (
            sum(x for _, x in attention[names.index("core_attention") + 1 :])
            if "core_attention" in names
            else 0.0
        )

    def _layers(
        self, tokens_mb: int, attention_mb: float, prefill: bool
    ) -> tuple[list[LayerCost], dict[str, float]]:
        slow = self.sm_slowdown
        ops = self.layer_ops(tokens_mb, attention_mb, prefill)
        tot = {stage: sum(x for _, x in v) for stage, v in ops.items()}
        reduce = self.tp_allreduce(tokens_mb)  # on the critical path of each block when tp > 1
        prepare = (tot["dense_attention"] - attention_mb - self._after_core(ops["dense_attention"])) * slow
        dense = LayerCost(
            tot["dense_attention"] * slow + reduce,
            tot["dense_ffn"] * slow + reduce if self.model.intermediate_size else 0.0,
            attention_prepare_s=prepare,
        )
        dispatch = self.all_to_all(tokens_mb, 1.0 + FP8_SCALE_OVERHEAD, prefill)
        combine = self.all_to_all(tokens_mb, 2.0, prefill)
        if not prefill:
            dispatch, combine = self._low_latency_transfer(dispatch, combine, ops)
        moe_layer = LayerCost(
            tot["moe_attention"] * slow + reduce,
            tot["moe_routed"] * slow + (reduce if self.shared_inter else 0.0),
            dispatch,
            combine,
            tot["moe_shared"] * slow,
            attention_prepare_s=prepare
            + (self.moe_output_add(tokens_mb) + sum(x for _, x in self.combine_recv_ops(tokens_mb, prefill)))
            * slow,
        )
        layers = [moe_layer if f else dense for f in self.moe_layer_flags]
        mb = self.inst.micro_batches
        n_moe = sum(self.moe_layer_flags)
        n_dense = self.num_layers - n_moe
        parts: dict[str, float] = {}
        for stage, v in ops.items():
            count = n_dense if stage.startswith("dense") else n_moe
            if stage == "dense_ffn" and not self.model.intermediate_size:
                continue
            for name, x in v:
                c = operator_kind(name).value
                parts[c] = parts.get(c, 0.0) + mb * count * x * slow
        parts["dispatch"] = mb * n_moe * dispatch
        parts["combine"] = mb * n_moe * combine
        if reduce:
            parts["tp_allreduce"] = mb * (2 * self.num_layers) * reduce
        return layers, parts

    def decode_step(self, batch_per_gpu: int, kv_len: int) -> StepCost:
        """One decode iteration: ``batch_per_gpu`` requests on the busiest GPU, mean KV length ``kv_len``;
        each request verifies ``1 + draft`` tokens, then the MTP module drafts ``draft`` tokens."""
        key = ("decode", batch_per_gpu, kv_len)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        q = 1 + self.draft
        mb = self.inst.micro_batches if batch_per_gpu >= 2 else 1
        b_mb = int(math.ceil(batch_per_gpu / mb))
        attn = self.decode_attention(b_mb, q, kv_len)
        layers, parts = self._layers(b_mb * q, attn, prefill=False)
        if mb != self.inst.micro_batches:
            parts = {k: v * mb / self.inst.micro_batches for k, v in parts.items()}
        if self.draft:
            # the MTP module, once per draft token: its entry projection and one MoE decoder layer over
            # the positions verified this step (it needs their hidden states and its own KV entries),
            # then the shared output head over one position per request for the draft
            mtp_layers, _ = self._layers(b_mb * q, self.decode_attention(b_mb, q, kv_len), prefill=False)
            moe_layer = next(
                (x for x, f in zip(mtp_layers, self.moe_layer_flags, strict=True) if f), mtp_layers[-1]
            )
            join = sum(x for _, x in self.mtp_join_ops(b_mb * q)) * self.sm_slowdown
            moe_layer = replace(moe_layer, attention_s=moe_layer.attention_s + join)
            layers = layers + [moe_layer] * self.draft
            parts["mtp"] = self.draft * mb * _layer_busy_s(moe_layer)
        sched = decode_pipeline_schedule(layers, mb)
        head = sum(x for _, x in self.head_ops(batch_per_gpu * q, batch_per_gpu * q))
        head += self.draft * sum(x for _, x in self.head_ops(batch_per_gpu, batch_per_gpu))
        parts["head"] = head
        total = sched.total_s + head
        result = StepCost(
            total,
            sched.compute_busy_s + head,
            sched.comm_busy_s,
            sched.exposed_comm_s,
            parts,
            _bound(parts, sched.compute_busy_s, self.comm_kind(), sched),
        )
        self._cache[key] = result
        return result

    def prefill_step(self, tokens_per_gpu: int, attention_s: float) -> StepCost:
        """One prefill batch on the busiest GPU: ``tokens_per_gpu`` computed tokens, per-layer attention
        time ``attention_s`` (sum over its requests), split over the micro-batches."""
        mb = self.inst.micro_batches if tokens_per_gpu >= 2 else 1
        t_mb = int(math.ceil(tokens_per_gpu / mb))
        layers, parts = self._layers(t_mb, attention_s / mb, prefill=True)
        if self.draft:
            # the MTP module over the prompt (its KV entries and the first draft): entry projection
            # and one MoE decoder layer
            moe_layer = next((x for x, f in zip(layers, self.moe_layer_flags, strict=True) if f), layers[-1])
            join = sum(x for _, x in self.mtp_join_ops(t_mb)) * self.sm_slowdown
            mtp_layer = replace(moe_layer, attention_s=moe_layer.attention_s + join)
            layers = layers + [mtp_layer]
            parts["mtp"] = mb * _layer_busy_s(mtp_layer)
        sched = two_stream_schedule(layers, mb)
        # logits of the last position of each request only (at least one request per 64 tokens)
        head = sum(x for _, x in self.head_ops(max(1, tokens_per_gpu // 64), tokens_per_gpu))
        parts["head"] = head
        total = sched.total_s + head
        return StepCost(
            total,
            sched.compute_busy_s + head,
            sched.comm_busy_s,
            sched.exposed_comm_s,
            parts,
            _bound(parts, sched.compute_busy_s, self.comm_kind(), sched),
        )

    def mixed_step(
        self, decode_batch: int, kv_len: int, prefill_tokens: int, prefill_attention_s: float
    ) -> StepCost:
        """Colocated iteration: ``decode_batch`` decode requests plus a prefill chunk of ``prefill_tokens``
        (its per-layer attention time given) on one GPU."""
        q = 1 + self.draft
        tokens = decode_batch * q + prefill_tokens
        mb = self.inst.micro_batches if tokens >= 2 else 1
        attn = prefill_attention_s
        if decode_batch:
            attn += self.decode_attention(decode_batch, q, kv_len)
        t_mb = int(math.ceil(tokens / mb))
        layers, parts = self._layers(t_mb, attn / mb, prefill=False)
        head = self.head(max(1, decode_batch * q + (1 if prefill_tokens else 0)))
        if self.draft:
            # the MTP module, as in decode_step and prefill_step: its entry projection and one MoE
            # decoder layer over every position of the iteration for the first draft token (the decode
            # requests' verified positions and the prefill chunk's, whose KV entries it needs), over
            # the decode positions again for each further draft; then the shared head drafts one
            # token per decode request per draft
            moe_layer = next((x for x, f in zip(layers, self.moe_layer_flags, strict=True) if f), layers[-1])
            join = sum(x for _, x in self.mtp_join_ops(t_mb)) * self.sm_slowdown
            mtp = [replace(moe_layer, attention_s=moe_layer.attention_s + join)]
            if self.draft > 1 and decode_batch:
                d_mb = int(math.ceil(decode_batch * q / mb))
                d_attn = self.decode_attention(decode_batch, q, kv_len) / mb
                d_layers, _ = self._layers(d_mb, d_attn, prefill=False)
                d_moe = next(
                    (x for x, f in zip(d_layers, self.moe_layer_flags, strict=True) if f), d_layers[-1]
                )
                d_join = sum(x for _, x in self.mtp_join_ops(d_mb)) * self.sm_slowdown
                mtp += [replace(d_moe, attention_s=d_moe.attention_s + d_join)] * (self.draft - 1)
            layers = layers + mtp
            parts["mtp"] = mb * sum(_layer_busy_s(x) for x in mtp)
            if decode_batch:
                head += self.draft * self.head(decode_batch)
        sched = two_stream_schedule(layers, mb)
        parts["head"] = head
        total = sched.total_s + head
        return StepCost(
            total,
            sched.compute_busy_s + head,
            sched.comm_busy_s,
            sched.exposed_comm_s,
            parts,
            _bound(parts, sched.compute_busy_s, self.comm_kind(), sched),
        )

    def kv_transfer_time(self, bytes_per_gpu: float) -> float:
        """RDMA of a prefill batch's KV cache from each prefill GPU to the decode instance."""
        if bytes_per_gpu <= 0:
            return 0.0
        chosen = self.links.get("ib") or self.links.get("nvlink")
        if chosen is None:
            return 0.0
        return comm.p2p_time(chosen, bytes_per_gpu).predicted_s
