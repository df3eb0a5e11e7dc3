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
from typing import TYPE_CHECKING, Any

import numpy as np

from moe.operators import Comm, Op, OpKind, Phase, TrainingShape, Work, training_unit_ops
from moe.operators.lowering import FP8_SCALE_BYTES_PER_VALUE
from sim import comm, timing
from sim.training.engine import Segment
from sim.training.schedules import Chunk

if TYPE_CHECKING:
    from gpus import Cluster, GPUProfile
    from moe import MoEModel
    from sim.training.plan import TrainingPlan

__all__ = ["LayerCost", "Unit", "TrainingCostModel", "layer_units", "FP8_SCALE_BYTES_PER_VALUE"]

BF16_BYTES = 2.0


@dataclass(frozen=True)
class Unit:
    """One piece of the model along the layer order: "embedding", "layer", "mtp", "head"."""

    kind: str
    index: int = 0
    moe: bool = False


def layer_units(model: MoEModel) -> list[Unit]:
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
    """One timed operator of a unit: its name, kind, breakdown category, seconds, whether the time is
    limited by math throughput (so stretched when communication holds SMs), and its work record."""

    name: str
    category: str
    seconds: float
    compute_bound: bool
    kind: OpKind | None = None
    work: Work | None = None


class _Block:
    """Accumulates operator times into one compute segment with a category mix."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}
        self.compute_bound_s = 0.0
        self.items: list[OpCost] = []

    def add(self, op: Op, t: timing.OpTime) -> None:
        category = op.kind.training_category
        seconds = t.predicted_s
        self.parts[category] = self.parts.get(category, 0.0) + seconds
        if t.bound_by == "compute":
            self.compute_bound_s += seconds
        self.items.append(OpCost(op.name, category, seconds, t.bound_by == "compute", op.kind, op.work))

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
        model: MoEModel,
        gpu: GPUProfile,
        cluster: Cluster,
        plan: TrainingPlan,
        pieces: Sequence[Sequence[Unit]],
        free_comm: bool = False,
        routing_skew: float = 0.0,
        rng: np.random.Generator | None = None,
        routing_samples: int = 4,
        unit_cache: dict[tuple[tuple[Any, ...], int], LayerCost] | None = None,
    ) -> None:
        """``unit_cache``: unit costs to share with cost models of plans that differ only in their
        pipeline (pp, schedule, layer split, dp): a unit's segments depend on tp, cp, ep, moe_tp, the
        micro-batch, recomputation, precision and dispatcher, not on those (the plan search shares
        them; unseeded routing only, as a skewed draw differs per model)."""
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
        self._unit_cache: dict[tuple[tuple[Any, ...], int], LayerCost] = (
            unit_cache if unit_cache is not None and routing_skew == 0 else {}
        )
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
        # with expert tensor parallelism each GPU of an expert's group runs all its rows (gathered
        # over the group) at 1/moe_tp of the width
        etp = int(getattr(plan, "moe_tp", 1))
        rows = max(1, int(round(busiest / local_experts))) * etp
        return [rows] * local_experts, busiest / mean

    # --- operators ------------------------------------------------------------------------------
    def shape(self) -> TrainingShape:
        """The inventory's view of one micro-batch on one GPU under this plan."""
        plan = self.plan
        return TrainingShape(
            tokens=self.tokens,
            moe_tokens=self.moe_tokens,
            seq_len=plan.seq_len,
            micro_batch_seqs=plan.micro_batch_seqs,
            tp=plan.tp,
            cp=plan.cp,
            ep=plan.ep,
            gemm_dtype=self.gemm_dtype,
            attention_dtype=self.attn_dtype,
            recompute=plan.recompute,
            dispatch_fp8=bool(plan.dispatch_fp8),
            recompute_modules=getattr(plan, "recompute_modules", None),
            moe_tp=int(getattr(plan, "moe_tp", 1)),
        )

    def _a2a(self, bytes_per_token: float, sample: int) -> _Comm:
        """Dispatch or combine of this GPU's tokens, the busiest rank's share, by the plan's dispatcher:

        * "deepep" (DeepEP's normal kernels; Megatron's ``flex`` dispatcher with DeepEP or HybridEP):
          node-limited, a token crosses InfiniBand once per remote node it reaches and fans out over
          NVLink inside it (V3-TR 3.2.2); inside one node one copy per distinct destination GPU;
        * "alltoall" (Megatron's ``MoEAlltoAllTokenDispatcher``: the permuted rows, one per selected
          expert, exchanged by one NCCL all-to-all over the EP group): one copy per selected expert
          on another GPU, over InfiniBand for experts on other nodes and NVLink for the node's other
          GPUs, no deduplication (experts uniformly placed: a fraction (ep - local)/ep of a token's
          k experts is remote, (local - 1)/ep on the node's other GPUs);
        * "allgather" (Megatron's ``MoEAllGatherTokenDispatcher``): every GPU gathers the EP group's
          tokens (and the combine reduce-scatters the outputs back), :func:`sim.comm.all_gather_time`.

        With expert tensor parallelism the received rows are further all-gathered over the
        ``moe_tp`` GPUs of each expert (NVLink), as Megatron's dispatchers do over the expert
        tensor-parallel group."""
        if self.free_comm or self.plan.ep <= 1 or self.model.num_routed_experts == 0:
            return _Comm(0.0, None, "latency", "ep_comm")
        model, plan = self.model, self.plan
        k = model.experts_per_token
        _, imbalance = self._expert_groups(sample)
        tokens = self.moe_tokens * imbalance
        nodes = self.ep_nodes
        dispatcher = getattr(plan, "dispatcher", "deepep")
        etp = int(getattr(plan, "moe_tp", 1))
        if dispatcher == "allgather":
            group = plan.ep
            t = comm.all_gather_time(self.cluster, self.moe_tokens * group * bytes_per_token, group)
            link = "nvlink" if group <= self.cluster.gpus_per_node else "ib"
            return _Comm(t.predicted_s, link, t.bound_by, "ep_comm")
        ib_s = nv_s = 0.0
        latency = 0.0
        nv_bytes = 0.0
        if dispatcher == "alltoall":
            remote_gpus = plan.ep - self.ep_local  # EP ranks on other nodes
            if remote_gpus > 0:
                ib = comm.link(self.cluster, "ib")
                ib_s = tokens * k * remote_gpus / plan.ep * bytes_per_token / ib.bandwidth_bytes_per_s
                latency = max(latency, ib.latency_s)
            nv_bytes = tokens * k * (self.ep_local - 1) / plan.ep * bytes_per_token
        elif nodes > 1:
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
        if etp > 1:
            nv_bytes += tokens * k * (etp - 1) * bytes_per_token  # gather over the expert's GPUs
        if nv_bytes > 0 and (self.ep_local > 1 or etp > 1):
            nv = comm.link(self.cluster, "nvlink")
            nv_s = nv_bytes / nv.bandwidth_bytes_per_s
            latency = max(latency, nv.latency_s)
        body = max(ib_s, nv_s)
        link = "ib" if ib_s >= nv_s and ib_s > 0 else "nvlink"
        return _Comm(latency + body, link, link, "ep_comm")

    def _comm(self, op: Op, sample: int) -> _Comm:
        """The time of one collective of the inventory on this cluster."""
        work = op.work
        assert isinstance(work, Comm)
        kind = op.kind
        if kind in (OpKind.EP_DISPATCH, OpKind.EP_COMBINE):
            return self._a2a(work.bytes_per_token, sample)
        category = kind.training_category
        if self.free_comm or work.group <= 1:
            return _Comm(0.0, None, "latency", category)
        size = work.tokens * work.bytes_per_token
        if kind is OpKind.TP_ALLREDUCE:
            t = comm.all_reduce_time(self.cluster, size, work.group)
        elif kind is OpKind.CP_ALLGATHER:
            t = comm.all_gather_time(self.cluster, size, work.group)
        else:
            raise ValueError(f"no training communication model for {kind}")
        link = "nvlink" if work.group <= self.cluster.gpus_per_node else "ib"
        return _Comm(t.predicted_s, link, t.bound_by, category)

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

    def unit_ops(self, unit: Unit, sample: int = 0) -> list[Op]:
        """The inventory's operators of ``unit`` for one micro-batch (routing sample ``sample``)."""
        moe_layer = unit.moe and self.model.num_routed_experts > 0
        groups = self._expert_groups(sample)[0] if moe_layer and unit.kind in ("layer", "mtp") else []
        layer = unit.index if unit.kind == "layer" else None
        return training_unit_ops(self.model, unit.kind, unit.moe, self.shape(), groups, layer)

    def _build_unit(self, unit: Unit, sample: int) -> LayerCost:
        """Time the unit's operators and group them into the engine's segments: the forward runs the
        attention block (with the router and shared experts), the dispatch, the routed experts, the
        combine and the un-permute; the backward the same in reverse, with the recomputed pieces; the
        weight gradients run as one segment."""
        blocks: dict[tuple[Phase, str], _Block] = {}
        comms: dict[str, list[_Comm]] = {}
        for op in self.unit_ops(unit, sample):
            if op.kind.is_comm:
                c = self._comm(op, sample)
                comms.setdefault(op.name, []).append(c)
                continue
            phase = Phase.BACKWARD if op.phase is Phase.RECOMPUTE else op.phase
            block = blocks.get((phase, op.stage))
            if block is None:
                block = blocks[(phase, op.stage)] = _Block()
            block.add(op, timing.op_time(self.gpu, op))

        def blk(phase: Phase, stage: str) -> _Block:
            return blocks.get((phase, stage)) or _Block()

        def live(*names: str) -> list[_Comm]:
            return [c for n in names for c in comms.get(n, []) if c.seconds > 0]

        fa, fm, fpost = (blk(Phase.FORWARD, s) for s in ("attention", "experts", "post"))
        ba, bm, bpost = (blk(Phase.BACKWARD, s) for s in ("attention", "experts", "post"))
        wa, wm = blk(Phase.WEIGHT, "attention"), blk(Phase.WEIGHT, "experts")
        out = LayerCost()
        around = live("cp_allgather", "attn_allreduce", "mlp_allreduce")
        if "dispatch" in comms:
            dispatch, combine = live("dispatch"), live("combine")
            out.forward = (
                _segments([fa], around)
                + _comm_segments(dispatch)
                + _segments([fm])
                + _comm_segments(combine)
                + _segments([fpost])
            )
            # backward: combine-grad (dispatch-shaped), experts, dispatch-grad, attention block
            out.backward = (
                _segments([bpost])
                + _comm_segments(combine)
                + _segments([bm])
                + _comm_segments(dispatch)
                + _segments([ba], around)
            )
            out.weight = _segments([wm, wa])
        else:
            out.forward = _segments([fa], around)
            out.backward = _segments([ba], around)
            out.weight = _segments([wm, wa])
        if unit.kind in ("layer", "mtp"):
            out.ops = {
                "forward": fa.items + fm.items + fpost.items,
                "backward": bpost.items + bm.items + ba.items,
                "weight": wm.items + wa.items,
            }
        return out

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
            size = expert / (self.plan.ep * self.plan.moe_tp) * grad_bytes
            ib = comm.link(self.cluster, "ib" if self.plan.ep >= self.cluster.gpus_per_node else "nvlink")
            seconds = (edp - 1) / edp * size / ib.bandwidth_bytes_per_s + ib.latency_s
            segs.append(Segment("comm", seconds, "dp_comm", "ib", ib.kind))
        return segs

    def tail_segments(self, rank: int) -> Sequence[Segment]:
        plan = self.plan
        dense = sum(plan.piece_params[p][0] for p in plan.pieces_of_rank[rank])
        expert = sum(plan.piece_params[p][1] for p in plan.pieces_of_rank[rank])
        etp = plan.moe_tp
        if plan.distributed_optimizer:
            shard = dense / plan.tp / max(1, plan.dp) + expert / (plan.ep * etp) / max(1, plan.expert_dp)
        else:  # every rank steps its whole copy of the optimizer state
            shard = dense / plan.tp + expert / (plan.ep * etp)
        opt = timing.memory_time(self.gpu, shard * plan.optimizer_bytes_moved_per_param)
        segs = [Segment("compute", opt.predicted_s, "optimizer", None, "hbm", (("optimizer", 1.0),), 0.0)]
        if not self.free_comm:
            w = plan.weight_bytes_per_param
            if plan.distributed_optimizer and plan.dp > 1 and dense > 0:
                t = comm.all_gather_time(self.cluster, dense / plan.tp * w, plan.dp)
                segs.append(Segment("comm", t.predicted_s, "dp_comm", "ib", t.bound_by))
            if plan.distributed_optimizer and plan.expert_dp > 1 and expert > 0:
                size = expert / (plan.ep * etp) * w
                ib = comm.link(self.cluster, "ib" if plan.ep >= self.cluster.gpus_per_node else "nvlink")
                seconds = (
                    plan.expert_dp - 1
                ) / plan.expert_dp * size / ib.bandwidth_bytes_per_s + ib.latency_s
                segs.append(Segment("comm", seconds, "dp_comm", "ib", ib.kind))
        return segs


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
