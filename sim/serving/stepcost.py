"""What one batch step of a serving instance costs, from operator times (sim.timing, sim.comm).

A step is a forward pass of the whole model over the tokens of a batch, on one GPU of the
instance (attention data-parallel ranks run the same program on their own requests; the step
waits for the slowest rank). Per layer:

* attention block: the attention projections as one GEMM of the layer's attention weights (M =
  tokens), and the core attention over the KV cache (:func:`sim.timing.attention_time`; MLA in
  decode in its absorbed form, as FlashMLA runs it: 576-d keys, 512-d values, the latent cache
  read once per request);
* dense layers: the dense FFN (gate/up and down GEMMs);
* MoE layers: gating, shared experts, routed experts as grouped GEMMs over this GPU's experts
  with the busiest GPU's load (:func:`sim.serving.deployment.expert_imbalance`), and the
  dispatch (FP8 + 1x128 scales) and combine (BF16) all-to-all over NVLink and InfiniBand
  (:mod:`sim.comm` links). Decode uses per-expert sends (DeepEP low-latency kernels); prefill
  deduplicates per node (DeepEP normal kernels: a token crosses IB once per destination node).

Two micro-batches: each step is split in two halves whose communication overlaps the other
half's computation, scheduled exactly on a compute stream and a communication stream (order on
the compute stream: attention A, attention B, MoE A, MoE B; on the communication stream:
dispatch A, dispatch B, combine A, combine B), as DeepSeek describes for prefill and decode
(V3-TR section 3.4; Day 6). With compute zero the layer costs 2 x (dispatch + combine), the
ISCA'25 bound; with communication zero it costs the computation.

Computation that overlaps all-to-all kernels that occupy SMs runs on the remaining SMs
(``comm_sms``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sim import comm, timing
from sim.serving.deployment import InstanceSpec, expert_imbalance, kv_bytes_per_token

FP8_SCALE_OVERHEAD = 4.0 / 128.0  # one FP32 scale per 128 FP8 values (V3-TR section 3.3, 1x128 tiles)


@dataclass(frozen=True)
class LayerCost:
    """Times of one layer for one micro-batch, seconds."""

    attention_s: float
    ffn_s: float
    dispatch_s: float = 0.0
    combine_s: float = 0.0


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

    # ---- per-operator pieces ------------------------------------------------------------------
    def imbalance(self, tokens_per_gpu: float) -> float:
        key = max(1, int(round(tokens_per_gpu)))
        bucket = 1 << (key.bit_length() - 1)  # powers of two: the imbalance changes slowly with load
        if bucket not in self._imbalance:
            self._imbalance[bucket] = expert_imbalance(self.model, self.inst, float(bucket), self.rng)
        return self._imbalance[bucket]

    def _gemm(self, m: int, n: float, k: float, dtype: str) -> float:
        n_i, k_i = max(1, int(round(n))), max(1, int(round(k)))
        return timing.gemm_time(self.gpu, max(1, int(m)), n_i, k_i, dtype).predicted_s

    def attention_block_linear(self, tokens: int) -> float:
        """Attention projections of one layer (weights as one GEMM) plus two RMSNorms."""
        n = self.attn_params_per_layer / self.hidden / self.inst.tp
        norms = timing.memory_time(self.gpu, tokens * self.hidden * 2.0 * 4).predicted_s
        return self._gemm(tokens, n, self.hidden, self.dense_dtype) + norms

    def _pair_flops(self, decode: bool) -> tuple[int, int]:
        """(qk dim, v dim) of the attention kernel's products."""
        a = self.attn
        if a.kind == "mla" and (decode or a.index_topk):
            return a.kv_lora_rank + a.qk_rope_head_dim, a.kv_lora_rank
        return int(a.qk_head_dim), int(a.value_head_dim)

    def _effective_keys(self, context: int, causal: bool, qk: int, v: int) -> float:
        """Keys per query averaged over layers for windowed / compressed / sparse attention, from the
        model's exact per-layer accounting (moe.accounting)."""
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
        self._cache[key] = t
        return t

    def dense_ffn(self, tokens: int) -> float:
        inter = self.model.intermediate_size / self.inst.tp
        return self._gemm(tokens, 2 * inter, self.hidden, self.dense_dtype) + self._gemm(
            tokens, self.hidden, inter, self.dense_dtype
        )

    def moe_ffn(self, tokens: int, prefill: bool) -> float:
        """Gating, shared experts and this GPU's routed experts for ``tokens`` tokens of its rank."""
        m = self.model
        k = int(m.experts_per_token)
        t = timing.gating_time(self.gpu, max(1, tokens), int(m.num_routed_experts), k).predicted_s
        if self.shared_inter:
            inter = self.shared_inter / self.inst.tp
            t += self._gemm(tokens, 2 * inter, self.hidden, self.dense_dtype)
            t += self._gemm(tokens, self.hidden, inter, self.dense_dtype)
        rows = tokens * k / self.inst.tp
        rows *= self.imbalance(rows)
        per_group = max(1, int(math.ceil(rows / self.experts_per_gpu)))
        groups = [per_group] * self.experts_per_gpu
        inter = int(m.moe_intermediate_size)
        t += timing.grouped_gemm_time(self.gpu, groups, 2 * inter, self.hidden, self.expert_dtype).predicted_s
        t += timing.grouped_gemm_time(self.gpu, groups, self.hidden, inter, self.expert_dtype).predicted_s
        if prefill:
            t += timing.permute_time(self.gpu, max(1, tokens), self.hidden, k).predicted_s
            t += timing.permute_time(self.gpu, max(1, tokens), self.hidden, k, combine=True).predicted_s
        return t

    def all_to_all(self, tokens: int, bytes_per_value: float, dedupe_per_node: bool) -> float:
        """Dispatch or combine of ``tokens`` tokens of this GPU over the instance's EP group."""
        ep = self.inst.ep
        if ep <= 1 or tokens <= 0:
            return 0.0
        k = int(self.model.experts_per_token)
        d = min(self.inst.gpus_per_node, ep)
        row = self.hidden * bytes_per_value
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

    def comm_kind(self) -> str:
        return "ib" if self.inst.ep > min(self.inst.gpus_per_node, self.inst.ep) else "nvlink"

    def tp_allreduce(self, tokens: int) -> float:
        """All-reduce of a BF16 hidden state over the tp group (attention output or FFN output)."""
        if self.inst.tp <= 1 or tokens <= 0:
            return 0.0
        size = tokens * self.hidden * 2.0
        return comm.all_reduce_time(self.cluster, size, num_gpus=self.inst.tp).predicted_s

    def head(self, tokens: int) -> float:
        vocab = self.model.vocab_size / self.inst.tp
        return self._gemm(tokens, vocab, self.hidden, "bf16")

    # ---- whole steps --------------------------------------------------------------------------
    def _layers(
        self, tokens_mb: int, attention_mb: float, prefill: bool
    ) -> tuple[list[LayerCost], dict[str, float]]:
        slow = self.sm_slowdown
        lin = self.attention_block_linear(tokens_mb)
        reduce = self.tp_allreduce(tokens_mb)  # on the critical path of each block when tp > 1
        attn = (lin + attention_mb) * slow + reduce
        dense = self.dense_ffn(tokens_mb) * slow + reduce if self.model.intermediate_size else 0.0
        moe = self.moe_ffn(tokens_mb, prefill) * slow + (reduce if self.shared_inter else 0.0)
        dispatch = self.all_to_all(tokens_mb, 1.0 + FP8_SCALE_OVERHEAD, prefill)
        combine = self.all_to_all(tokens_mb, 2.0, prefill)
        layers = []
        n_moe = 0
        for is_moe in self.moe_layer_flags:
            if is_moe:
                layers.append(LayerCost(attn, moe, dispatch, combine))
                n_moe += 1
            else:
                layers.append(LayerCost(attn, dense))
        mb = self.inst.micro_batches
        n_dense = self.num_layers - n_moe
        parts = {
            "attention": mb * self.num_layers * attention_mb * slow,
            "dense_gemm": mb * (self.num_layers * lin + n_dense * dense / slow) * slow,
            "experts": mb * n_moe * moe,
            "dispatch": mb * n_moe * dispatch,
            "combine": mb * n_moe * combine,
        }
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
            # the MTP module: one MoE layer over one token per request, per draft token
            mtp_attn = self.decode_attention(b_mb, 1, kv_len)
            mtp_layers, mtp_parts = self._layers(b_mb, mtp_attn, prefill=False)
            moe_layer = next(
                (x for x, f in zip(mtp_layers, self.moe_layer_flags, strict=True) if f), mtp_layers[-1]
            )
            layers = layers + [moe_layer] * self.draft
            parts["mtp"] = (
                self.draft
                * mb
                * (moe_layer.attention_s + moe_layer.ffn_s + moe_layer.dispatch_s + moe_layer.combine_s)
            )
        sched = two_stream_schedule(layers, mb)
        head = self.head(batch_per_gpu * q) + self.draft * self.head(batch_per_gpu)
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
            moe_layer = next((x for x, f in zip(layers, self.moe_layer_flags, strict=True) if f), layers[-1])
            layers = layers + [moe_layer]
        sched = two_stream_schedule(layers, mb)
        head = self.head(max(1, tokens_per_gpu // 64))  # logits of the last position of each request only
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
        sched = two_stream_schedule(layers, mb)
        head = self.head(max(1, decode_batch * q + (1 if prefill_tokens else 0)))
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
