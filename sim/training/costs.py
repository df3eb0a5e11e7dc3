"""What each pipeline chunk costs on a GPU: per-layer training operators timed by ``sim.timing``
and ``sim.comm``, assembled into engine segments.

Per transformer layer and micro-batch (``tokens`` tokens per GPU), the forward is

    [attention block: norm, projections, attention core, output projection, router, shared expert]
    -> dispatch all-to-all -> [routed expert grouped GEMMs, SwiGLU] -> combine all-to-all

(dense layers have a dense FFN and no all-to-all). The backward for inputs (B) runs the same
in reverse with the data-gradient GEMMs (``dX = dY W^T``: an (m, k, n) GEMM), the attention
backward and the recomputed forward pieces; the backward for weights (W) runs the
weight-gradient GEMMs (``dW = X^T dY``: a (k, n, m) GEMM, reduction over the tokens).

Modelling choices, each stated where it is made (none is fitted to an end-to-end figure):

* GEMM precision: the plan's GEMM dtype (fp8 for DeepSeek-V3's recipe, V3-TR 3.3.1) for the
  linear layers and experts; attention core, router, embedding and output head in bf16
  (V3-TR section 3.3: "embedding, output head, MoE gating, normalization, attention" kept
  in higher precision). A dtype the GPU lacks falls to ``gpu.nearest_dtype``.
* Attention backward = 2.5x the forward FLOPs (the FlashAttention-2 count, Dao 2023, section
  3.1: bwd has 5 matmuls vs 2 in fwd) at the calibrated ``attention_backward`` efficiency
  (``timing.attention_time(..., backward=True)``); weight-gradient GEMMs use the
  ``gemm_wgrad`` family (``timing.gemm_time(..., phase="wgrad")``).
* Memory-bound operators (norms, SwiGLU, casts, permutes) move the bytes counted below at
  the calibrated ``memory_bound`` / ``permute`` efficiency, RMSNorm and RoPE at their own
  ``norm_rope`` one (about half the streaming bandwidth on the H800 trace); their backward
  moves the bytes counted for it.
* Expert all-to-all with node-limited routing: a token reaches at most ``max_nodes_per_token``
  nodes (V3: 4, V3-TR 2.1.2); it crosses InfiniBand once per remote node and is forwarded
  inside the node over NVLink (DeepEP's internode kernels). When the EP group fits in one
  node the same limit counts devices (V2's device-limited routing, M=3, V2-TR 2.2.2) and a
  token is sent once per distinct destination GPU. The time is the link latency plus
  the larger of IB bytes over the calibrated IB bandwidth and NVLink bytes over the NVLink one
  (``sim.comm.link``). Dispatch in fp8 with 1 scale per 128 values, combine in bf16 (V3-TR
  3.3.3); the backward all-to-alls carry the same formats.
* While an F&B pair overlaps, communication kernels hold ``comm_sm_count`` SMs (V3: 20 of 132,
  V3-TR 3.2.2), so compute in an overlapped pair runs on the remaining SMs: its compute-bound
  time is scaled by sm_count / (sm_count - comm_sm_count).
* Routing skew: per micro-batch and layer, expert loads are drawn from
  ``moe.routing.expert_loads`` when a skew is given; the busiest EP rank sets the grouped
  GEMM time and the all-to-all volume (the all-to-all synchronises the EP group).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from sim import comm, timing
from sim.training.engine import Segment
from sim.training.schedules import Chunk

__all__ = ["LayerCost", "Unit", "TrainingCostModel", "layer_units", "FP8_SCALE_BYTES_PER_VALUE"]

# DeepSeek-V3 fine-grained FP8: one fp32 scale per 1x128 activation tile (V3-TR 3.3.2).
FP8_SCALE_BYTES_PER_VALUE = 4.0 / 128.0
BF16_BYTES = 2.0
NORM = timing.NORM_ROPE  # RMSNorm and RoPE: their own fitted family


@dataclass(frozen=True)
class Unit:
    """One piece of the model along the layer order: "embedding", "layer", "mtp", "head"."""

    kind: str
    index: int = 0
    moe: bool = False


def layer_units(model: Any) -> list[Unit]:
    """Embedding, the transformer layers, the MTP modules, and the output head, in path order."""
    units = [Unit("embedding")]
    for i, is_moe in enumerate(model.moe_layers):
        units.append(Unit("layer", i, bool(is_moe)))
    for j in range(int(getattr(model, "num_mtp_modules", 0) or 0)):
        units.append(Unit("mtp", j, bool(model.moe_layers[-1]) if model.moe_layers else False))
    units.append(Unit("head"))
    return units


@dataclass
class LayerCost:
    """Seconds of one unit for one micro-batch on one GPU, split as the engine needs them.

    ``forward``/``backward``/``weight`` are lists of (stream, seconds, mix, link, bound) where
    mix is a tuple of (category, fraction) pairs for compute and the comm category otherwise.
    """

    forward: list[Segment] = field(default_factory=list)
    backward: list[Segment] = field(default_factory=list)
    weight: list[Segment] = field(default_factory=list)
    ops: dict[str, list[OpCost]] = field(default_factory=dict)  # per phase, named operators


@dataclass(frozen=True)
class OpCost:
    """One timed operator of a unit: its name, breakdown category, seconds, and whether the
    time is limited by math throughput (so stretched when communication holds SMs)."""

    name: str
    category: str
    seconds: float
    compute_bound: bool


def _gemm_flops(m: float, n: float, k: float) -> float:
    return 2.0 * m * n * k


class _Block:
    """Accumulates operator times into one compute segment with a category mix."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}
        self.compute_bound_s = 0.0
        self.items: list[OpCost] = []

    def add(self, category: str, t: timing.OpTime, scale: float = 1.0, name: str = "") -> None:
        seconds = t.predicted_s * scale
        self.parts[category] = self.parts.get(category, 0.0) + seconds
        if t.bound_by == "compute":
            self.compute_bound_s += seconds
        self.items.append(OpCost(name or category, category, seconds, t.bound_by == "compute"))

    def total(self) -> float:
        return sum(self.parts.values())

    def segment(self) -> Segment | None:
        total = self.total()
        if total <= 0:
            return None
        mix = tuple((k, v / total) for k, v in sorted(self.parts.items()))
        bound = "compute" if self.compute_bound_s >= total / 2 else "hbm"
        return Segment("compute", total, "compute", None, bound, mix, self.compute_bound_s)


@dataclass
class _Comm:
    seconds: float
    link: str | None
    bound: str
    category: str


class TrainingCostModel:
    """Implements :class:`sim.training.engine.CostModel` for one plan on one cluster."""

    def __init__(
        self,
        *,
        model: Any,
        gpu: Any,
        cluster: Any,
        plan: Any,
        pieces: Sequence[Sequence[Unit]],
        free_comm: bool = False,
        routing_skew: float = 0.0,
        rng: np.random.Generator | None = None,
        routing_samples: int = 4,
    ) -> None:
        self.model = model
        self.gpu = gpu
        self.cluster = cluster
        self.plan = plan
        self.pieces = [list(p) for p in pieces]
        self.free_comm = free_comm
        self.gemm_dtype = plan.gemm_dtype
        self.attn_dtype = gpu.nearest_dtype("bf16")
        self.sm_scale = 1.0
        if plan.comm_sm_count > 0 and not free_comm:
            self.sm_scale = gpu.sm_count / max(1, gpu.sm_count - plan.comm_sm_count)
        self.tokens = plan.micro_batch_seqs * plan.seq_len // plan.cp  # per GPU per micro-batch
        self.moe_tokens = max(1, self.tokens // plan.tp)
        self.routing_skew = routing_skew
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.routing_samples = max(1, routing_samples) if routing_skew > 0 else 1
        self._loads = self._draw_loads()
        self._unit_cache: dict[tuple[tuple[Any, ...], int], LayerCost] = {}
        self._chunk_cache: dict[tuple[str, int, bool, int], list[Segment]] = {}
        gpn = int(cluster.gpus_per_node)
        self.ep_nodes = max(1, math.ceil(plan.ep / gpn)) if plan.ep > gpn else 1
        self.ep_local = min(plan.ep, gpn)

    # --- routing ------------------------------------------------------------------------------
    def _draw_loads(self) -> list[np.ndarray]:
        """Per-EP-rank routed token counts for each routing sample (length ``ep``)."""
        model, plan = self.model, self.plan
        experts = model.num_routed_experts
        if experts == 0:
            return [np.zeros(max(1, plan.ep))]
        k = model.experts_per_token
        total_tokens = self.moe_tokens * plan.ep  # the EP group's tokens
        samples = []
        for _ in range(self.routing_samples):
            if self.routing_skew > 0:
                from moe import routing

                loads = np.asarray(
                    routing.expert_loads(total_tokens, experts, k, self.routing_skew, self.rng), dtype=float
                )
            else:
                loads = np.full(experts, total_tokens * k / experts)
            per_rank = loads.reshape(plan.ep, experts // plan.ep).sum(axis=1)
            samples.append(per_rank)
        return samples

    def _expert_groups(self, sample: int) -> tuple[list[int], float]:
        """Group sizes of the busiest EP rank's local experts, and its load over the mean."""
        model, plan = self.model, self.plan
        per_rank = self._loads[sample]
        local_experts = model.num_routed_experts // plan.ep
        busiest = float(per_rank.max())
        mean = float(per_rank.mean()) if per_rank.mean() > 0 else 1.0
        rows = max(1, int(round(busiest / local_experts)))
        return [rows] * local_experts, busiest / mean

    # --- operators ------------------------------------------------------------------------------
    def _gemm(self, m: int, n: int, k: int, dtype: str, phase: str = "forward") -> timing.OpTime:
        return _gemm_cached(self.gpu, max(1, int(m)), max(1, int(n)), max(1, int(k)), dtype, phase)

    def _mem(self, bytes_moved: float, family: str = "memory_bound") -> timing.OpTime:
        """A bandwidth-bound kernel; ``family`` "norm_rope" for RMSNorm and RoPE (their own fit)."""
        return _memory_cached(self.gpu, float(bytes_moved), family)

    def _projection_shapes(self) -> list[tuple[str, int, int, bool]]:
        """(name, n, k, recomputed) of the attention projections for this model, TP-split."""
        a = self.model.attention
        h = self.model.hidden_size
        tp = self.plan.tp
        heads = max(1, a.num_heads // tp)
        kind = a.kind
        shapes: list[tuple[str, int, int, bool]] = []
        if kind == "mla":
            qk = a.qk_nope_head_dim + a.qk_rope_head_dim
            if a.q_lora_rank:
                shapes.append(("q_a", a.q_lora_rank, h, False))
                shapes.append(("q_b", heads * qk, a.q_lora_rank, True))  # V3-TR 3.5.1: up-proj recomputed
            else:
                shapes.append(("q", heads * qk, h, False))
            shapes.append(("kv_a", a.kv_lora_rank + a.qk_rope_head_dim, h, False))
            shapes.append(("kv_b", heads * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank, True))
            shapes.append(("o", h, heads * a.v_head_dim, False))
        elif kind == "csa":
            hd = a.head_dim
            shapes.append(("q_a", a.q_lora_rank or h, h, False))
            shapes.append(("q_b", heads * hd, a.q_lora_rank or h, True))
            shapes.append(("kv", hd, h, False))
            if a.o_groups and a.o_lora_rank:
                shapes.append(("o_a", a.o_groups * a.o_lora_rank, heads * hd // a.o_groups, False))
                shapes.append(("o_b", h, a.o_groups * a.o_lora_rank, False))
            else:
                shapes.append(("o", h, heads * hd, False))
            if a.index_n_heads:
                shapes.append(("indexer", a.index_n_heads * a.index_head_dim, h, False))
        else:
            hd = a.head_dim
            kv_heads = max(1, a.num_kv_heads // tp)
            shapes.append(("qkv", (heads + 2 * kv_heads) * hd, h, False))
            shapes.append(("o", h, heads * hd, False))
        return shapes

    def _attention_core(self, context_len: int, backward: bool = False) -> timing.OpTime:
        a = self.model.attention
        heads = max(1, a.num_heads // self.plan.tp)
        q_len = self.tokens // self.plan.micro_batch_seqs  # query rows of one sequence on this GPU
        if a.kind == "mla":
            qk, v = a.qk_nope_head_dim + a.qk_rope_head_dim, a.v_head_dim
        else:
            qk, v = a.head_dim, a.head_dim
        kv_len = context_len
        if a.kind == "csa" and a.index_topk:
            # V4 sparse attention: each query attends to the top-k selected compressed entries
            # plus a sliding window (model card: CSA top-k + window); not causal-triangular.
            kv_len = min(context_len, a.index_topk + (a.sliding_window or 0))
            t = timing.attention_time(
                self.gpu,
                self.plan.micro_batch_seqs,
                q_len,
                kv_len,
                heads,
                qk,
                v,
                False,
                self.attn_dtype,
                backward=backward,
            )
            return t
        if a.sliding_window:
            kv_len = min(context_len, a.sliding_window)
        # Context parallelism: this GPU holds seq/cp queries against the whole causal context;
        # with load-balanced chunking it does 1/cp of the full causal work.
        full = timing.attention_time(
            self.gpu,
            self.plan.micro_batch_seqs,
            context_len,
            kv_len,
            heads,
            qk,
            v,
            True,
            self.attn_dtype,
            backward=backward,
        )
        if self.plan.cp == 1:
            return full
        return timing.OpTime(
            full.roofline_s / self.plan.cp,
            full.predicted_s / self.plan.cp,
            None,
            full.bound_by,
            full.flops / self.plan.cp,
            full.bytes_moved / self.plan.cp,
            full.family,
            full.calibration,
        )

    def _a2a(self, bytes_per_token: float, sample: int) -> _Comm:
        """Dispatch or combine of this GPU's tokens (node-limited), the busiest rank's share."""
        if self.free_comm or self.plan.ep <= 1 or self.model.num_routed_experts == 0:
            return _Comm(0.0, None, "latency", "ep_comm")
        model, plan = self.model, self.plan
        k = model.experts_per_token
        _, imbalance = self._expert_groups(sample)
        tokens = self.moe_tokens * imbalance
        nodes = self.ep_nodes
        ib_s = nv_s = 0.0
        latency = 0.0
        if nodes > 1:
            reach = min(nodes, plan.max_nodes_per_token, k)
            remote = reach * (nodes - 1) / nodes  # expected remote nodes per token
            ib = comm.link(self.cluster, "ib")
            ib_s = tokens * remote * bytes_per_token / ib.bandwidth_bytes_per_s
            latency = max(latency, ib.latency_s)
            # Inside each destination node the token fans out to its experts' GPUs over NVLink.
            local_targets = k / reach
            nv_bytes = tokens * reach * max(0.0, local_targets - 1.0 / self.ep_local) * bytes_per_token
        else:
            # Device-limited routing inside one node (V2-TR 2.2.2: at most M=3 devices per token):
            # one copy per distinct destination GPU, the local one staying put.
            targets = min(k, self.ep_local, plan.max_nodes_per_token)
            nv_bytes = tokens * targets * (self.ep_local - 1) / self.ep_local * bytes_per_token
        if nv_bytes > 0 and self.ep_local > 1:
            nv = comm.link(self.cluster, "nvlink")
            nv_s = nv_bytes / nv.bandwidth_bytes_per_s
            latency = max(latency, nv.latency_s)
        body = max(ib_s, nv_s)
        link = "ib" if ib_s >= nv_s and ib_s > 0 else "nvlink"
        return _Comm(latency + body, link, link, "ep_comm")

    def _tp_allreduce(self) -> _Comm:
        if self.free_comm or self.plan.tp <= 1:
            return _Comm(0.0, None, "latency", "tp_comm")
        t = comm.all_reduce_time(
            self.cluster, self.tokens * self.model.hidden_size * BF16_BYTES, self.plan.tp
        )
        return _Comm(
            t.predicted_s,
            "nvlink" if self.plan.tp <= self.cluster.gpus_per_node else "ib",
            t.bound_by,
            "tp_comm",
        )

    def _cp_comm(self) -> _Comm:
        """Context parallel: gather the other chunks' keys/values (MLA: the compressed latent)."""
        if self.free_comm or self.plan.cp <= 1:
            return _Comm(0.0, None, "latency", "cp_comm")
        a = self.model.attention
        per_token = (
            (a.kv_lora_rank + a.qk_rope_head_dim) if a.kind == "mla" else 2 * a.num_kv_heads * a.head_dim
        )
        t = comm.all_gather_time(
            self.cluster, self.tokens * self.plan.cp * per_token * BF16_BYTES, self.plan.cp
        )
        return _Comm(
            t.predicted_s,
            "nvlink" if self.plan.cp <= self.cluster.gpus_per_node else "ib",
            t.bound_by,
            "cp_comm",
        )

    # --- one unit ---------------------------------------------------------------------------
    def unit_cost(self, unit: Unit, sample: int = 0, overlapped: bool = False) -> LayerCost:
        """Segments of one unit; layers with the same shape share one entry (computed once)."""
        key = (self._signature(unit), sample if unit.moe else 0)
        base = self._unit_cache.get(key)
        if base is None:
            base = self._build_unit(unit, sample)
            self._unit_cache[key] = base
        return base

    def _signature(self, unit: Unit) -> tuple[Any, ...]:
        """What a unit's cost depends on: its kind, MoE or dense, and its attention window."""
        if unit.kind != "layer":
            return (unit.kind, unit.moe)
        windows = self.model.attention.layer_windows
        window = windows[unit.index] if unit.index < len(windows) else None
        return (unit.kind, unit.moe, window)

    def _build_unit(self, unit: Unit, sample: int) -> LayerCost:
        model, plan = self.model, self.plan
        h = model.hidden_size
        t = self.tokens
        g = self.gemm_dtype
        bf = self.attn_dtype
        out = LayerCost()
        if unit.kind == "embedding":
            f = _Block()
            f.add("other", self._mem(t * h * BF16_BYTES * 2))
            w = _Block()
            w.add("other", self._mem(t * h * BF16_BYTES * 3))
            out.forward = _segments([f])
            out.weight = _segments([w])
            return out
        if unit.kind == "head":
            v = max(1, model.vocab_size // plan.tp)
            heads_count = 1 + int(getattr(model, "num_mtp_modules", 0) or 0)  # MTP shares the head
            f, b, w = _Block(), _Block(), _Block()
            for _ in range(heads_count):
                f.add("other", self._mem(t * h * BF16_BYTES * 2, NORM))  # final norm
                f.add("gemm", self._gemm(t, v, h, bf))
                f.add("other", self._mem(t * v * 4.0 * 2))  # softmax cross-entropy in fp32
                b.add("gemm", self._gemm(t, h, v, bf))
                b.add("other", self._mem(t * v * 4.0 * 2))
                w.add("gemm", self._gemm(h, v, t, bf))
            out.forward, out.backward, out.weight = _segments([f]), _segments([b]), _segments([w])
            return out

        # A transformer layer (or an MTP module: a projection of [h; embedding] then a layer).
        # Forward blocks: fa (attention block, router, shared expert), fm (routed experts), fpost
        # (un-permute). Backward for inputs: ba, bm, bpost (with the recomputed pieces); backward
        # for weights: wa, wm.
        fa, fm, fpost = _Block(), _Block(), _Block()
        ba, bm, bpost = _Block(), _Block(), _Block()
        wa, wm = _Block(), _Block()
        fp8 = g == "fp8"
        recompute = plan.recompute in ("selective", "full")
        add_bytes = t * h * BF16_BYTES * 3  # residual add: read two, write one

        def norm(name: str, width: int, rows: int = t) -> None:
            """RMSNorm forward, its backward (reads x, dy; writes dx), and its recomputation."""
            b = rows * width * BF16_BYTES
            fa.add("other", self._mem(2 * b, NORM), name=f"norm {name}")
            ba.add("other", self._mem(3 * b, NORM), name=f"norm {name} bwd")
            if recompute:  # V3-TR 3.2.3: all RMSNorm outputs are recomputed in backward
                ba.add("other", self._mem(2 * b, NORM), name=f"norm {name} (recompute)")

        if unit.kind == "mtp":
            norm("mtp_inputs", 2 * h)
            self._linear(fa, ba, wa, "mtp_proj", t, h, 2 * h, False)
        norm("attn", h)
        fwd_recompute = False
        a = model.attention
        heads = max(1, a.num_heads // plan.tp)
        for name, n, k, recomputed in self._projection_shapes():
            again = (recomputed and plan.recompute == "selective") or plan.recompute == "full"
            self._linear(fa, ba, wa, name, t, n, k, again)
            fwd_recompute = fwd_recompute or again
            if a.kind == "mla" and name == "q_a":
                norm("q_a", a.q_lora_rank)
            if a.kind == "mla" and name == "kv_a":
                norm("kv_a", a.kv_lora_rank)
        cp_keys = t * (plan.cp - 1) if (a.kind == "mla" and plan.cp > 1) else 0
        if cp_keys:
            # Context parallelism gathers the other ranks' compressed latents (``_cp_comm``), so
            # each rank up-projects the gathered keys/values itself (kv_b over the whole
            # sequence; the busiest rank, holding the last chunk, needs all of it), and the
            # backward runs kv_b's dgrad and wgrad over them before the reduce-scatter.
            for name, n, k, recomputed in self._projection_shapes():
                if name == "kv_b":
                    again = (recomputed and plan.recompute == "selective") or plan.recompute == "full"
                    self._linear(fa, ba, wa, "kv_b (gathered context keys)", cp_keys, n, k, again)
        if a.kind == "mla":
            # RoPE on the decoupled parts (query: per head; key: one shared head), then the
            # query [nope | rope] and the key [nope | rope broadcast over heads] assembled as
            # the contiguous [t, heads, qk] tensors the attention kernel reads (training runs
            # MLA un-absorbed). Backward splits the gradients back (the key's rope part summed
            # over heads). With the up-projections recomputed, RoPE and assembly run again.
            r = a.qk_rope_head_dim
            qk = a.qk_nope_head_dim + r
            rope = t * (heads + 1) * r * BF16_BYTES * 2
            assemble = (
                t * heads * (qk + a.qk_nope_head_dim + r) * BF16_BYTES + 2 * t * heads * qk * BF16_BYTES
            )
            split = 2 * t * heads * qk * BF16_BYTES + t * (heads * (qk + a.qk_nope_head_dim) + r) * BF16_BYTES
            # Keys gathered by context parallelism are assembled (and their gradients split) too;
            # their RoPE was applied by the rank that owns them, before the gather.
            assemble += cp_keys * (heads * (a.qk_nope_head_dim + qk) + r) * BF16_BYTES
            split += cp_keys * (heads * (qk + a.qk_nope_head_dim) + r) * BF16_BYTES
            fa.add("other", self._mem(rope, NORM), name="rotary")
            fa.add("other", self._mem(assemble), name="mla q/k assemble")
            ba.add("other", self._mem(rope, NORM), name="rotary bwd")
            ba.add("other", self._mem(split), name="mla q/k split bwd")
            if fwd_recompute:
                ba.add("other", self._mem(rope, NORM), name="rotary (recompute)")
                ba.add("other", self._mem(assemble), name="mla q/k assemble (recompute)")
        attn = self._attention_core(plan.seq_len)
        fa.add("attention", attn, name="attention fwd")
        if fp8 and a.kind == "mla":
            # V3-TR 3.3.4: the attention output (input of the output projection, also needed by
            # the attention backward) is cached in a custom E5M6 format (12 bits) per 1x128 tile
            # and converted back for the backward.
            o_elems = t * heads * a.v_head_dim
            e5m6 = 1.5 + FP8_SCALE_BYTES_PER_VALUE
            fa.add(
                "other", self._mem(o_elems * (BF16_BYTES + e5m6)), name="cast_fp8 attention out E5M6 cache"
            )
            ba.add("other", self._mem(o_elems * (BF16_BYTES + e5m6)), name="cast_fp8 attention out E5M6 back")
        ba.add("attention", self._attention_core(plan.seq_len, backward=True), name="attention bwd")
        if a.kind in ("mla", "mha", "gqa"):
            qk_dim = (a.qk_nope_head_dim + a.qk_rope_head_dim) if a.kind == "mla" else a.head_dim
            v_dim = a.v_head_dim if a.kind == "mla" else a.head_dim
            t_cp = t  # this GPU's queries
            # FlashAttention-2/3 backward: a preprocess pass (D = rowsum(dO * O), dQ accumulator
            # zeroed in fp32) and a postprocess that converts the fp32 dQ accumulator to bf16.
            pre = t_cp * heads * (2 * v_dim * BF16_BYTES + 4.0 + qk_dim * 4.0)
            post = t_cp * heads * qk_dim * (4.0 + BF16_BYTES)
            ba.add("attention", self._mem(pre), name="attention bwd preprocess")
            ba.add("attention", self._mem(post), name="attention bwd dq convert")
        if plan.recompute == "full":
            ba.add("attention", attn, name="attention fwd (recompute)")
        fa.add("other", self._mem(add_bytes), name="residual add")
        ba.add("other", self._mem(add_bytes), name="residual add bwd")
        norm("ffn", h)
        cp = self._cp_comm()
        tpc = self._tp_allreduce()
        comms_fa: list[_Comm] = [c for c in (cp, tpc) if c.seconds > 0]
        is_moe = unit.moe and model.num_routed_experts > 0
        if is_moe:
            e = model.num_routed_experts
            k_top = model.experts_per_token
            inter = model.moe_intermediate_size
            tm = self.moe_tokens
            fa.add("gemm", self._gemm(tm, e, h, bf), name="router gemm")  # bf16 (V3-TR 3.3)
            fa.add("other", timing.gating_time(self.gpu, tm, e, k_top), name="gating top-k")
            ba.add("gemm", self._gemm(tm, h, e, bf), name="router gemm dgrad")
            wa.add("gemm", self._gemm(h, e, tm, bf), name="router gemm wgrad")
            shared = model.num_shared_experts * (model.shared_expert_intermediate_size or inter)
            if shared:
                s = max(1, shared // plan.tp)
                self._linear(fa, ba, wa, "shared_gate_up", tm, 2 * s, h, False)
                self._swiglu(fa, ba, "shared swiglu", tm, s, recompute)
                self._linear(fa, ba, wa, "shared_down", tm, h, s, False, input_cast=False)
            groups, _ = self._expert_groups(sample)
            rows = sum(groups)
            fa.add("other", timing.permute_time(self.gpu, tm, h, k_top, "bf16"), name="permute")
            # The permute's backward sums each token's top-k expert-row gradients back into the
            # token (a reduce shaped like the forward un-permute).
            bm.add(
                "other",
                timing.permute_time(self.gpu, tm, h, k_top, "bf16", combine=True),
                name="permute bwd",
            )
            for name, n, kk in (("experts_gate_up", 2 * inter, h), ("experts_down", h, inter)):
                fm.add("gemm", _grouped_cached(self.gpu, tuple(groups), n, kk, g), name=f"gemm {name}")
                bm.add("gemm", _grouped_cached(self.gpu, tuple(groups), kk, n, g), name=f"gemm {name} dgrad")
                # Weight gradient per expert: dW_e = X_e^T dY_e, reduction over that expert's tokens.
                for rows_e in groups:
                    if rows_e > 0:
                        wt = _gemm_cached(self.gpu, kk, n, rows_e, g, "wgrad")
                        wm.add("gemm", wt, name=f"gemm {name} wgrad")
                if fp8:
                    bm.add(
                        "other",
                        self._mem(rows * n * (BF16_BYTES + 1.0 + FP8_SCALE_BYTES_PER_VALUE)),
                        name=f"cast_fp8 {name} dY",
                    )
                    wm.add(
                        "other",
                        self._mem(rows * (n + kk) * (BF16_BYTES + 1.0 + FP8_SCALE_BYTES_PER_VALUE)),
                        name=f"cast_fp8 transpose {name} X,dY",
                    )
            self._swiglu(fm, bm, "experts swiglu", rows, inter, recompute)
            if fp8:
                # V3-TR 3.3.4: the SwiGLU input of the MoE layer is cached in FP8 (and the SwiGLU
                # recomputed from it), so the forward casts the up-projection output and the
                # backward casts it back to BF16.
                swi_in = rows * 2 * inter * (BF16_BYTES + 1.0 + FP8_SCALE_BYTES_PER_VALUE)
                fm.add("other", self._mem(swi_in), name="cast_fp8 experts swiglu input cache")
                bm.add("other", self._mem(swi_in), name="cast_fp8 experts swiglu input back")
            fpost.add(
                "other", timing.permute_time(self.gpu, tm, h, k_top, "bf16", combine=True), name="unpermute"
            )
            bpost.add(
                "other",
                timing.permute_time(self.gpu, tm, h, k_top, "bf16", combine=True),
                name="unpermute bwd",
            )
            fpost.add("other", self._mem(add_bytes), name="residual add")
            bpost.add("other", self._mem(add_bytes), name="residual add bwd")
            dispatch_bytes = h * ((1.0 + FP8_SCALE_BYTES_PER_VALUE) if plan.dispatch_fp8 else BF16_BYTES)
            combine_bytes = h * BF16_BYTES
            dispatch = self._a2a(dispatch_bytes, sample)
            combine = self._a2a(combine_bytes, sample)
            # forward: attention block, dispatch, experts, combine, post
            out.forward = (
                _segments([fa], comms_fa)
                + _comm_segments([dispatch])
                + _segments([fm])
                + _comm_segments([combine])
                + _segments([fpost])
            )
            # backward: combine-grad (dispatch-shaped, bf16), experts, dispatch-grad, attention block
            out.backward = (
                _segments([bpost])
                + _comm_segments([combine])
                + _segments([bm])
                + _comm_segments([dispatch])
                + _segments([ba], comms_fa)
            )
            out.weight = _segments([wm, wa])
        else:
            inter = max(1, model.intermediate_size // plan.tp)
            self._linear(fa, ba, wa, "mlp_gate_up", t, 2 * inter, h, False)
            self._swiglu(fa, ba, "mlp swiglu", t, inter, recompute)
            self._linear(fa, ba, wa, "mlp_down", t, h, inter, False, input_cast=False)
            fa.add("other", self._mem(add_bytes), name="residual add")
            ba.add("other", self._mem(add_bytes), name="residual add bwd")
            out.forward = _segments([fa], comms_fa + ([tpc] if tpc.seconds > 0 else []))
            out.backward = _segments([ba], comms_fa + ([tpc] if tpc.seconds > 0 else []))
            out.weight = _segments([wa])
        out.ops = {
            "forward": fa.items + fm.items + fpost.items,
            "backward": bpost.items + bm.items + ba.items,
            "weight": wm.items + wa.items,
        }
        return out

    def _linear(
        self,
        f: _Block,
        b: _Block,
        w: _Block,
        name: str,
        rows: int,
        n: int,
        k: int,
        recomputed: bool,
        input_cast: bool = True,
    ) -> None:
        """A linear layer Y[rows, n] = X[rows, k] W[k, n] in the plan's GEMM dtype.

        FP8 (V3-TR 3.3.2): the forward quantises X per 1x128 tile (unless the producer wrote it
        quantised, ``input_cast=False``: the fused SwiGLU+cast before a down projection); dgrad
        quantises dY the same way; wgrad (reduction over the tokens) needs X^T and dY^T quantised
        along the tokens, i.e. transposed FP8 copies. A recomputed layer runs its forward again
        (with its input cast) in the backward.
        """
        g = self.gemm_dtype
        cast = BF16_BYTES + 1.0 + FP8_SCALE_BYTES_PER_VALUE  # read bf16, write fp8 + scales
        fp8 = g == "fp8"
        if fp8 and input_cast:
            f.add("other", self._mem(rows * k * cast), name=f"cast_fp8 {name} X")
        f.add("gemm", self._gemm(rows, n, k, g), name=f"gemm {name}")
        if recomputed:
            if fp8 and input_cast:
                b.add("other", self._mem(rows * k * cast), name=f"cast_fp8 {name} X (recompute)")
            b.add("gemm", self._gemm(rows, n, k, g), name=f"gemm {name} (recompute)")
        if fp8:
            b.add("other", self._mem(rows * n * cast), name=f"cast_fp8 {name} dY")
        b.add("gemm", self._gemm(rows, k, n, g), name=f"gemm {name} dgrad")
        if fp8:
            w.add("other", self._mem(rows * (n + k) * cast), name=f"cast_fp8 transpose {name} X,dY")
        w.add("gemm", self._gemm(k, n, rows, g, "wgrad"), name=f"gemm {name} wgrad")

    def _swiglu(self, f: _Block, b: _Block, name: str, rows: int, inter: int, recompute: bool) -> None:
        """SwiGLU over [rows, 2 * inter] -> [rows, inter]; with FP8 GEMMs the output is written
        quantised for the down projection (fused cast). Backward reads the saved input and the
        output gradient, writes the input gradient; with recomputation (V3-TR 3.2.3) the
        forward runs again first."""
        out_b = (1.0 + FP8_SCALE_BYTES_PER_VALUE) if self.gemm_dtype == "fp8" else BF16_BYTES
        fwd = rows * 2 * inter * BF16_BYTES + rows * inter * out_b
        bwd = rows * 2 * inter * BF16_BYTES * 2 + rows * inter * BF16_BYTES
        f.add("other", self._mem(fwd), name=name)
        b.add("other", self._mem(bwd), name=f"{name} bwd")
        if recompute:
            b.add("other", self._mem(fwd), name=f"{name} (recompute)")

    # --- engine interface -----------------------------------------------------------------------
    def chunk_segments(self, chunk: Chunk, piece: int, rank: int, overlapped: bool) -> Sequence[Segment]:
        sample = (chunk.microbatch * 7919 + chunk.stage) % self.routing_samples
        key = (chunk.kind, piece, overlapped, sample)
        cached = self._chunk_cache.get(key)
        if cached is not None:
            return cached
        units = self.pieces[piece]
        segs: list[Segment] = []
        if chunk.kind == "F":
            for u in units:
                segs += self.unit_cost(u, sample).forward
        elif chunk.kind in ("B", "BW"):
            for u in reversed(units):
                segs += self.unit_cost(u, sample).backward
            if chunk.kind == "BW":
                for u in reversed(units):
                    segs += self.unit_cost(u, sample).weight
        else:
            for u in reversed(units):
                segs += self.unit_cost(u, sample).weight
        scale = self.sm_scale if overlapped else 1.0
        out = _merge([_stretch(s, scale) for s in segs])
        self._chunk_cache[key] = out
        return out

    def activation_send_bytes(self) -> float:
        return self.tokens * self.model.hidden_size * BF16_BYTES

    def send_segment(self, chunk: Chunk, piece: int, src_rank: int, dst_rank: int) -> Segment | None:
        if self.free_comm:
            return None
        kind = "ib" if self.plan.pp_across_nodes else "nvlink"
        t = comm.p2p_time(comm.link(self.cluster, kind), self.activation_send_bytes())
        return Segment("comm", t.predicted_s, "pp_comm", kind, kind)

    def grad_sync_segments(self, rank: int, piece: int) -> Sequence[Segment]:
        if self.free_comm:
            return []
        dense, expert = self.plan.piece_params[piece]
        segs = []
        grad_bytes = self.plan.grad_bytes_per_param
        if self.plan.dp > 1 and dense > 0:
            t = comm.reduce_scatter_time(self.cluster, dense / self.plan.tp * grad_bytes, self.plan.dp)
            segs.append(Segment("comm", t.predicted_s, "dp_comm", "ib", t.bound_by))
        edp = self.plan.expert_dp
        if edp > 1 and expert > 0:
            size = expert / self.plan.ep * grad_bytes
            ib = comm.link(self.cluster, "ib" if self.plan.ep >= self.cluster.gpus_per_node else "nvlink")
            seconds = (edp - 1) / edp * size / ib.bandwidth_bytes_per_s + ib.latency_s
            segs.append(Segment("comm", seconds, "dp_comm", "ib", ib.kind))
        return segs

    def tail_segments(self, rank: int) -> Sequence[Segment]:
        plan = self.plan
        dense = sum(plan.piece_params[p][0] for p in plan.pieces_of_rank[rank])
        expert = sum(plan.piece_params[p][1] for p in plan.pieces_of_rank[rank])
        shard = dense / plan.tp / max(1, plan.dp) + expert / plan.ep / max(1, plan.expert_dp)
        opt = timing.memory_time(self.gpu, shard * plan.optimizer_bytes_moved_per_param)
        segs = [Segment("compute", opt.predicted_s, "optimizer", None, "hbm", (("optimizer", 1.0),), 0.0)]
        if not self.free_comm:
            w = plan.weight_bytes_per_param
            if plan.dp > 1 and dense > 0:
                t = comm.all_gather_time(self.cluster, dense / plan.tp * w, plan.dp)
                segs.append(Segment("comm", t.predicted_s, "dp_comm", "ib", t.bound_by))
            if plan.expert_dp > 1 and expert > 0:
                size = expert / plan.ep * w
                ib = comm.link(self.cluster, "ib" if plan.ep >= self.cluster.gpus_per_node else "nvlink")
                seconds = (
                    plan.expert_dp - 1
                ) / plan.expert_dp * size / ib.bandwidth_bytes_per_s + ib.latency_s
                segs.append(Segment("comm", seconds, "dp_comm", "ib", ib.kind))
        return segs


@lru_cache(maxsize=4096)
def _gemm_cached(gpu: Any, m: int, n: int, k: int, dtype: str, phase: str = "forward") -> timing.OpTime:
    return timing.gemm_time(gpu, m, n, k, dtype, phase=phase)


@lru_cache(maxsize=4096)
def _memory_cached(gpu: Any, bytes_moved: float, family: str = "memory_bound") -> timing.OpTime:
    return timing.memory_time(gpu, bytes_moved, family=family)


@lru_cache(maxsize=4096)
def _grouped_cached(gpu: Any, groups: tuple[int, ...], n: int, k: int, dtype: str) -> timing.OpTime:
    return timing.grouped_gemm_time(gpu, list(groups), n, k, dtype)


def _segments(blocks: Sequence[_Block], comms: Sequence[_Comm] = ()) -> list[Segment]:
    out: list[Segment] = []
    for b in blocks:
        s = b.segment()
        if s is not None:
            out.append(s)
    out += _comm_segments(comms)
    return out


def _comm_segments(comms: Sequence[_Comm]) -> list[Segment]:
    return [Segment("comm", c.seconds, c.category, c.link, c.bound) for c in comms if c.seconds > 0]


def _stretch(seg: Segment, scale: float) -> Segment:
    if seg.stream != "compute" or scale == 1.0:
        return seg
    # Only the math-bound part slows when SMs are taken by communication kernels.
    extra = seg.compute_bound_s * (scale - 1.0)
    return Segment(
        seg.stream,
        seg.duration_s + extra,
        seg.category,
        seg.link,
        seg.bound_by,
        seg.mix,
        seg.compute_bound_s * scale,
    )


def _merge(segs: list[Segment]) -> list[Segment]:
    """Merge consecutive compute segments (fewer SimPy events; the category mix is kept)."""
    out: list[Segment] = []
    for s in segs:
        if out and s.stream == "compute" and out[-1].stream == "compute":
            prev = out[-1]
            total = prev.duration_s + s.duration_s
            mix: dict[str, float] = {}
            for k, f in prev.mix:
                mix[k] = mix.get(k, 0.0) + f * prev.duration_s / total
            for k, f in s.mix:
                mix[k] = mix.get(k, 0.0) + f * s.duration_s / total
            bound = prev.bound_by if prev.duration_s >= s.duration_s else s.bound_by
            out[-1] = Segment(
                "compute",
                total,
                "compute",
                None,
                bound,
                tuple(sorted(mix.items())),
                prev.compute_bound_s + s.compute_bound_s,
            )
        else:
            out.append(s)
    return out
