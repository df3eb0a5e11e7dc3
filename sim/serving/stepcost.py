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

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from moe.operators import (
    Given,
    Op,
    OpKind,
    Phase,
    ServingShape,
    Work,
    serving_decode_core,
    serving_head_ops,
    serving_layer_ops,
    serving_mtp_join_ops,
    serving_prefill_core_ops,
)
from sim import comm, timing
from sim.record import Record
from sim.serving.deployment import (
    DTYPE_BYTES,
    InstanceSpec,
    expert_imbalance,
    kv_bytes_per_token_per_gpu,
    parse_deployment,
)

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel

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
        # attention, then its dispatch; the shared expert (it needs only the attention output, not the
        # dispatch), then the FFN or routed experts, then their combine: ready[mb] is when micro-batch
        # mb's last step finished
        for before_s, compute_s, comm_s in (
            (0.0, layer.attention_s, layer.dispatch_s),
            (layer.shared_s, layer.ffn_s, layer.combine_s),
        ):
            for mb in range(micro_batches):
                compute_free += before_s
                compute_busy += before_s
                compute_free = max(compute_free, ready[mb]) + compute_s
                compute_busy += compute_s
                if comm_s > 0:
                    comm_free = max(comm_free, compute_free) + comm_s
                    comm_busy += comm_s
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
class _LayerSums:
    """One micro-batch shape's layer operators summed once (StepCostModel._layer_sums): stage totals
    and per-category sums without the core attention, the attention block's time after the core
    kernel, the MoE layer's lead (combine receive, output add), and the low-latency kernels' times."""

    totals: dict[str, float]
    after_core: float
    lead: float
    has_shared: bool
    categories: dict[str, dict[str, float]]
    low_latency: dict[str, float]


@dataclass(frozen=True)
class StepCost(Record):
    """One step on one GPU: total time and where it went (seconds)."""

    time_s: float
    compute_s: float
    comm_s: float
    exposed_comm_s: float
    breakdown_s: dict[str, float] = field(default_factory=dict)
    bound_by: str = "compute"


def _bound(breakdown: dict[str, float], compute_s: float, comm_kind: str, schedule: Schedule) -> str:
    if schedule.comm_busy_s > schedule.compute_busy_s:
        return comm_kind
    return max(("attention", "dense_gemm", "experts"), key=lambda k: breakdown.get(k, 0.0))


HOST_PARTS = ("host_launch", "host_step")  # breakdown keys of the host's time, not the GPU's


def host_queue_lead_s(kernel_s: Sequence[float], issue_s: float) -> float:
    """``max_k ((k - 1) * issue_s + sum(kernel_s[k-1:]))`` over k = 1..n: when the host issues the n
    kernels one every ``issue_s`` seconds (the first as it begins) into a GPU queue that runs them in
    order, the GPU, free from the start, finishes the last ``lead`` seconds after the host began.
    With the GPU busy until F and the host starting at T, it finishes at ``max(F + sum, T + lead)``
    (each kernel starts when both it is issued and the one before it has finished)."""
    lead = 0.0
    suffix = 0.0
    for k in range(len(kernel_s), 0, -1):
        suffix += kernel_s[k - 1]
        lead = max(lead, (k - 1) * issue_s + suffix)
    return lead


class StepCostModel:
    """Step times of one instance shape; results are cached by batch shape."""

    def __init__(
        self,
        model: MoEModel,
        gpu: GPUProfile,
        inst: InstanceSpec,
        mtp_draft_tokens: int,
        rng: np.random.Generator,
        imbalance_cache: dict[int, float] | None = None,
        op_seconds_cache: dict[Work, float] | None = None,
        layer_cache: dict[tuple[Any, ...], Any] | None = None,
    ) -> None:
        """``imbalance_cache``: expert-load imbalance by load bucket to share with other models of shapes
        with the same ``ep``, redundant experts and routing skew (the plan search does; it depends on
        nothing else). ``op_seconds_cache``: operator seconds by work record to share with other models
        on the same GPU profile (``sim.timing.op_seconds`` is a function of the two). ``layer_cache``: a
        micro-batch's timed layer operators and their sums, to share with other models of the same model
        on the same GPU profile (they are functions of the inventory's shape, the tokens, the phase and
        the routed rows, which key them)."""
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
        self.num_physical_experts = int(model.num_routed_experts) + inst.redundant_experts
        self.experts_per_gpu = max(1, self.num_physical_experts // inst.ep)
        self.sm_slowdown = gpu.sm_count / (gpu.sm_count - inst.comm_sms) if inst.micro_batches > 1 else 1.0
        self.links = {}
        for kind in ("nvlink", "ib"):
            try:
                self.links[kind] = comm.link(self.cluster, kind)
            except ValueError:
                pass
        self._imbalance: dict[int, float] = {} if imbalance_cache is None else imbalance_cache
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._op_seconds: dict[Work, float] = {} if op_seconds_cache is None else op_seconds_cache
        self._layer_cache: dict[tuple[Any, ...], Any] = {} if layer_cache is None else layer_cache
        self.shape = ServingShape(
            tp=inst.tp,
            ep=inst.ep,
            dense_dtype=self.dense_dtype,
            expert_dtype=self.expert_dtype,
            kv_bytes_per_element=DTYPE_BYTES[inst.kv_dtype],
            experts_per_gpu=self.experts_per_gpu,
            moe_tp=inst.moe_tp,
            deepep=inst.dispatcher == "deepep",
            # a format the tensor cores lack runs weight-only: dequantised in the kernel, products in
            # BF16 (MXFP4 experts on Hopper and Ampere; FP8 experts on Ampere)
            expert_compute_dtype="" if gpu.supports(self.expert_dtype) else "bf16",
            swap_ab=inst.swap_ab,
            moe_kernel=self._moe_kernel(inst),
        )

    def _moe_kernel(self, inst: InstanceSpec) -> str:
        """The stack's kernel table for the routed experts, where it applies: a table times the
        weight format it was measured in (its setup's dtype), and the experts here are stored and
        computed in it."""
        if not inst.moe_kernel:
            return ""
        from sim import calibration

        dtype = str(calibration.kernel_table(inst.moe_kernel).get("setup", {}).get("dtype", ""))
        computes = self.gpu.supports(self.expert_dtype)
        return inst.moe_kernel if dtype == self.expert_dtype and computes else ""

    # ---- per-operator pieces ------------------------------------------------------------------
    def imbalance(self, tokens_per_gpu: float) -> float:
        key = max(1, int(round(tokens_per_gpu)))
        bucket = 1 << (key.bit_length() - 1)  # powers of two: the imbalance changes slowly with load
        if bucket not in self._imbalance:
            self._imbalance[bucket] = expert_imbalance(self.model, self.inst, float(bucket), self.rng)
        return self._imbalance[bucket]

    # ---- operators (the inventory's, moe.operators.inventory) -------------------------------------
    def _seconds(self, op: Op) -> float:
        """``op``'s time on this instance's GPU, cached by its work (the GPU is fixed here, so the
        cache need not hash the GPU profile, as ``sim.timing``'s does)."""
        t = self._op_seconds.get(op.work)
        if t is None:
            t = self._op_seconds[op.work] = timing.op_seconds(self.gpu, op)
        return t

    def _timed(self, ops: Sequence[Op]) -> list[tuple[Op, float]]:
        return [(op, self._seconds(op)) for op in ops]

    def _phase(self, prefill: bool) -> Phase:
        return Phase.PREFILL if prefill else Phase.DECODE

    def head_ops(self, rows: int, embedded: int) -> list[tuple[str, float]]:
        """Per step, not per layer: embedding gather of the ``embedded`` input tokens, final RMSNorm,
        output head (BF16) and sampling for the ``rows`` positions that need logits."""
        key = ("head_ops", rows, embedded)
        cached = self._cache.get(key)
        if cached is None:
            ops = serving_head_ops(self.model, self.shape, max(1, int(rows)), embedded, Phase.DECODE)
            cached = self._cache[key] = [(op.name, x) for op, x in self._timed(ops)]
        return cached

    def head(self, tokens: int) -> float:
        return sum(x for _, x in self.head_ops(tokens, tokens))

    def mtp_join_ops(self, tokens: int) -> list[tuple[str, float]]:
        """MTP module entry (V3-TR section 2.2): the next token's embedding, RMSNorms of the hidden
        state and of that embedding, their concatenation projected 2h -> h."""
        key = ("mtp_join_ops", tokens)
        cached = self._cache.get(key)
        if cached is None:
            ops = serving_mtp_join_ops(self.model, self.shape, tokens, Phase.DECODE)
            cached = self._cache[key] = [(op.name, x) for op, x in self._timed(ops)]
        return cached

    def _mtp_join(self, tokens: int) -> float:
        return sum(x for _, x in self.mtp_join_ops(tokens))

    def decode_attention(self, batch: int, q_len: int, kv_len: int) -> float:
        """Core attention of one layer for ``batch`` decode requests of ``q_len`` new tokens over a mean
        KV length ``kv_len`` (the model's capped KV cache, averaged over layers). Each GPU reads the part
        of the cache it holds: all of an MLA / compressed latent cache (replicated over TP), its
        ``kv_heads / tp`` heads of a GQA / MHA cache (:func:`kv_bytes_per_token_per_gpu`, the same split
        the KV capacity uses)."""
        key = ("dattn", batch, q_len, kv_len)
        if key in self._cache:
            return self._cache[key]
        kv_layer = kv_bytes_per_token_per_gpu(self.model, self.inst, kv_len) * kv_len / self.num_layers
        t = self._seconds(serving_decode_core(self.model, self.shape, batch, q_len, kv_len, kv_layer))
        self._cache[key] = t
        return t

    def prefill_attention(self, new_tokens: int, cached_tokens: int) -> float:
        """Causal attention of ``new_tokens`` queries after ``cached_tokens`` of prefix, one layer (with
        what re-reads a cached prefix, :func:`moe.operators.serving_prefill_core_ops`)."""
        key = ("pattn", new_tokens, cached_tokens)
        if key in self._cache:
            return self._cache[key]
        ops = serving_prefill_core_ops(self.model, self.shape, new_tokens, cached_tokens)
        t = sum(x for _, x in self._timed(ops))
        self._cache[key] = t
        return t

    def routed_rows(self, tokens: int) -> float:
        """Routed rows on the busiest GPU when each attention rank runs ``tokens`` tokens (its imbalance
        included): an all-to-all dispatcher brings each GPU the rows of ``1 / tp`` of its rank's
        tokens from every rank (balanced: ``tokens x k / tp``); the all-gather dispatcher gives every
        GPU of an expert group all the instance's rows routed to its experts (``tokens x attn_dp x k /
        ep``), each computed over that GPU's slice of the expert."""
        k = int(self.model.experts_per_token)
        if self.inst.dispatcher == "allgather":
            rows = max(1, int(tokens)) * self.inst.attn_dp * k / self.inst.ep
        else:
            rows = max(1, int(tokens)) * k / self.inst.tp
        return rows * self.imbalance(rows)

    def _layer_base(self, tokens_mb: int, prefill: bool) -> dict[str, list[tuple[Op, float]]]:
        """:meth:`timed_layer_ops` with the core attention left at zero, built and timed once per shape."""
        key = ("layer_ops", tokens_mb, prefill)
        base = self._cache.get(key)
        if base is None:
            rows = self.routed_rows(tokens_mb)
            shared = ("layer_ops", self.shape, tokens_mb, prefill, rows)
            base = self._layer_cache.get(shared)
            if base is None:
                ops = serving_layer_ops(self.model, self.shape, tokens_mb, self._phase(prefill), 0.0, rows)
                base = self._layer_cache[shared] = {stage: self._timed(v) for stage, v in ops.items()}
            self._cache[key] = base
        return base

    def timed_layer_ops(
        self, tokens_mb: int, attention_mb: float, prefill: bool
    ) -> dict[str, list[tuple[Op, float]]]:
        """The inventory's operators of one micro-batch through one dense and one MoE layer, by stage
        (:func:`moe.operators.serving_layer_ops`), each with its seconds (without the SM share that
        overlapping all-to-all kernels take); the core attention is ``attention_mb``."""
        core = Op("core_attention", OpKind.ATTENTION, Given(attention_mb), self._phase(prefill), "attention")
        return {
            stage: [
                (core, attention_mb)
                if op.kind is OpKind.ATTENTION and isinstance(op.work, Given)
                else (op, x)
                for op, x in v
            ]
            for stage, v in self._layer_base(tokens_mb, prefill).items()
        }

    def layer_ops(
        self, tokens_mb: int, attention_mb: float, prefill: bool
    ) -> dict[str, list[tuple[str, float]]]:
        """Named operator times of :meth:`timed_layer_ops`, by stage: "dense_attention", "dense_ffn",
        "moe_attention" (up to the dispatch), "moe_shared", "moe_routed"."""
        return {
            stage: [(op.name, x) for op, x in v]
            for stage, v in self.timed_layer_ops(tokens_mb, attention_mb, prefill).items()
        }

    @staticmethod
    def _after_core(attention: Sequence[tuple[Op, float]]) -> float:
        """Time of the attention block's operators after the core attention kernel."""
        for i, (op, _) in enumerate(attention):
            if op.name == "core_attention":
                return sum(x for _, x in attention[i + 1 :])
        return 0.0

    def all_to_all(self, tokens: int, bytes_per_value: float, dedupe_per_node: bool) -> float:
        """Dispatch or combine of the ``tokens`` tokens of this GPU's attention rank over the
        instance's EP group: with tensor-parallel attention the ``tp`` GPUs of a rank hold the same
        tokens and each sends its 1/tp share (as the router and the routed rows count them)."""
        ep = self.inst.ep
        if ep <= 1 or tokens <= 0 or self.inst.dispatcher == "allgather":
            return 0.0
        if self.inst.dispatcher == "alltoall":
            dedupe_per_node = False  # a plain all-to-all: one copy per (token, remote expert)
        tokens = int(math.ceil(tokens / self.inst.tp))
        k = int(self.model.experts_per_token)
        d = min(self.inst.gpus_per_node, ep)
        row = self.hidden * bytes_per_value
        if not dedupe_per_node:
            # DeepEP low-latency kernels or a plain all-to-all: one message per (token, expert),
            # uniform over the EP ranks
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
        if chosen is None or self.inst.ep <= 1 or self.inst.dispatcher != "deepep":
            return ()
        return tuple(
            LOW_LATENCY_OPS[phase] for phase in chosen.low_latency_contains if phase in LOW_LATENCY_TAKEN_OUT
        )

    def _low_latency_transfer(
        self, dispatch: float, combine: float, low_latency: dict[str, float]
    ) -> tuple[float, float]:
        """Dispatch and combine times for the communication stream: the fitted all-to-all time less
        the send and receive kernels (charged on the compute stream) that it already holds.

        DeepEP's low-latency table times one kernel launched without the receive hook, send phase,
        transfer and receive phase in one launch (sim.calibration.published.deepep_tables,
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
        times = {name: x for name, x in low_latency.items() if name in held}
        sent = sum(x for name, x in times.items() if name.startswith("ll_dispatch"))
        returned = sum(x for name, x in times.items() if name.startswith("ll_combine"))
        return max(0.0, dispatch - sent), max(0.0, combine - returned)

    def moe_gather(self, tokens: int) -> tuple[float, float]:
        """The all-gather dispatcher's collectives for ``tokens`` tokens per attention rank: with
        attention data-parallel groups, every GPU gathers all groups' hidden states (BF16) before the
        experts and the partial outputs are reduce-scattered back after them (SGLang's data-parallel
        attention with MoE tensor parallelism); with one attention group the tokens are already on
        every GPU and the partial sums go into the layer's all-reduce (:meth:`tp_allreduce`)."""
        if self.inst.dispatcher != "allgather" or self.inst.attn_dp <= 1 or tokens <= 0:
            return 0.0, 0.0
        key = ("moe_gather", tokens)
        cached = self._cache.get(key)
        if cached is None:
            size = tokens * self.inst.attn_dp * self.hidden * 2.0
            n = self.inst.gpus
            cached = self._cache[key] = (
                comm.all_gather_time(self.cluster, size, num_gpus=n).predicted_s,
                comm.reduce_scatter_time(self.cluster, size, num_gpus=n).predicted_s,
            )
        return cached

    def dispatch_combine(self, tokens_mb: int, prefill: bool) -> tuple[float, float]:
        """Seconds of one micro-batch's expert dispatch and combine by the instance's dispatcher (the
        all-gather path's gather and reduce-scatter, or the all-to-all's two exchanges: FP8 with its
        scales out under DeepEP, BF16 otherwise, BF16 back)."""
        if self.inst.dispatcher == "allgather":
            return self.moe_gather(tokens_mb)
        dispatch_bytes = 1.0 + FP8_SCALE_OVERHEAD if self.inst.dispatcher == "deepep" else 2.0
        return (
            self.all_to_all(tokens_mb, dispatch_bytes, prefill),
            self.all_to_all(tokens_mb, 2.0, prefill),
        )

    def comm_kind(self) -> str:
        return "ib" if self.inst.ep > min(self.inst.gpus_per_node, self.inst.ep) else "nvlink"

    def tp_allreduce(self, tokens: int) -> float:
        """All-reduce of a BF16 hidden state over the tp group (attention output or FFN output): NCCL's
        ring, or where the stack runs one (``tp_allreduce = "custom"``) the faster of it and the custom
        NVLink kernel (:func:`sim.comm.custom_all_reduce_time`), as the engines pick by size."""
        if self.inst.tp <= 1 or tokens <= 0:
            return 0.0
        key = ("tp_allreduce", tokens)
        cached = self._cache.get(key)
        if cached is None:
            size = tokens * self.hidden * 2.0
            cached = comm.all_reduce_time(self.cluster, size, num_gpus=self.inst.tp).predicted_s
            if self.inst.tp_allreduce == "custom":
                custom = comm.custom_all_reduce_time(self.cluster, size, num_gpus=self.inst.tp).predicted_s
                cached = min(cached, custom)
            self._cache[key] = cached
        return float(cached)

    # ---- whole steps --------------------------------------------------------------------------
    def _layer_sums(self, tokens_mb: int, prefill: bool) -> _LayerSums:
        """What :meth:`_layers` reads of one micro-batch's layer operators, without the core attention
        (the per-step part), summed once per shape."""
        key = ("layer_sums", tokens_mb, prefill)
        sums = self._cache.get(key)
        if sums is not None:
            return sums
        shared = ("layer_sums", self.shape, tokens_mb, prefill, self.routed_rows(tokens_mb))
        sums = self._layer_cache.get(shared)
        if sums is not None:
            self._cache[key] = sums
            return sums
        ops = self._layer_base(tokens_mb, prefill)
        categories: dict[str, dict[str, float]] = {}
        for stage, v in ops.items():
            cats: dict[str, float] = {}
            for op, x in v:
                if not isinstance(op.work, Given):
                    cats[op.kind.category] = cats.get(op.kind.category, 0.0) + x
            categories[stage] = cats
        moe_attention = ops["moe_attention"]
        first = next((i for i, (op, _) in enumerate(moe_attention) if op.stage == "attention"), 0)
        sums = _LayerSums(
            totals={stage: sum(x for _, x in v) for stage, v in ops.items()},
            after_core=self._after_core(ops["dense_attention"]),
            lead=sum(x for _, x in moe_attention[:first]),
            has_shared=bool(ops["moe_shared"]),
            categories=categories,
            low_latency={
                op.name: x for v in ops.values() for op, x in v if op.kind is OpKind.LOW_LATENCY_COMM
            },
        )
        self._cache[key] = self._layer_cache[shared] = sums
        return sums

    def _layers(
        self, tokens_mb: int, attention_mb: float, prefill: bool
    ) -> tuple[list[LayerCost], dict[str, float]]:
        slow = self.sm_slowdown
        sums = self._layer_sums(tokens_mb, prefill)
        tot = dict(sums.totals)
        tot["dense_attention"] += attention_mb
        tot["moe_attention"] += attention_mb
        reduce = self.tp_allreduce(tokens_mb)  # on the critical path of each block when tp > 1
        prepare = (tot["dense_attention"] - attention_mb - sums.after_core) * slow
        dense = LayerCost(
            tot["dense_attention"] * slow + reduce,
            tot["dense_ffn"] * slow + reduce if self.model.intermediate_size else 0.0,
            attention_prepare_s=prepare,
        )
        dispatch, combine = self.dispatch_combine(tokens_mb, prefill)
        if not prefill:
            dispatch, combine = self._low_latency_transfer(dispatch, combine, sums.low_latency)
        # the FFN all-reduce of a MoE layer sums the shared experts' tensor-parallel halves, and with
        # the all-gather dispatcher over one attention group the routed experts' partial sums too
        moe_reduce = sums.has_shared or (self.inst.dispatcher == "allgather" and self.inst.attn_dp == 1)
        # the MoE layer's attention stage opens with the previous layer's combine receive and output add
        moe_layer = LayerCost(
            tot["moe_attention"] * slow + reduce,
            tot["moe_routed"] * slow + (reduce if moe_reduce else 0.0),
            dispatch,
            combine,
            tot["moe_shared"] * slow,
            attention_prepare_s=prepare + sums.lead * slow,
        )
        layers = [moe_layer if f else dense for f in self.moe_layer_flags]
        mb = self.inst.micro_batches
        n_moe = sum(self.moe_layer_flags)
        n_dense = self.num_layers - n_moe
        parts: dict[str, float] = {}
        for stage, cats in sums.categories.items():
            count = n_dense if stage.startswith("dense") else n_moe
            if stage == "dense_ffn" and not self.model.intermediate_size:
                continue
            if stage in ("dense_attention", "moe_attention"):
                parts["attention"] = parts.get("attention", 0.0) + mb * count * attention_mb * slow
            for c, x in cats.items():
                parts[c] = parts.get(c, 0.0) + mb * count * x * slow
        parts["dispatch"] = mb * n_moe * dispatch
        parts["combine"] = mb * n_moe * combine
        if reduce:
            reductions = n_dense * (2 if self.model.intermediate_size else 1) + n_moe * (1 + int(moe_reduce))
            parts["tp_allreduce"] = mb * reductions * reduce
        return layers, parts

    def _eager_sequences(
        self, tokens_mb: int, attention_mb: float, prefill: bool
    ) -> tuple[list[float], list[float]]:
        """The GPU times of the kernels an eager host issues through one dense and one MoE layer of a
        micro-batch, in order: every inventory operator, all-reduce and all-to-all."""
        # not cached here: decode steps are cached whole, and a colocated step's attention time (a
        # float) differs from step to step, so a cache keyed by it would only grow
        ops = self.timed_layer_ops(tokens_mb, attention_mb, prefill)
        reduce = self.tp_allreduce(tokens_mb)
        ar = [reduce] if reduce else []
        dispatch, combine = self.dispatch_combine(tokens_mb, prefill)
        gathered = self.inst.dispatcher == "allgather" and self.inst.attn_dp == 1
        moe_reduce = bool(ops["moe_shared"]) or gathered
        dense = [x for _, x in ops["dense_attention"]] + ar
        if self.model.intermediate_size:
            dense += [x for _, x in ops["dense_ffn"]] + ar
        moe_seq = [x for _, x in ops["moe_attention"]] + ar + [x for _, x in ops["moe_shared"]]
        moe_seq += [dispatch] if dispatch else []
        moe_seq += [x for _, x in ops["moe_routed"]]
        moe_seq += [combine] if combine else []
        moe_seq += ar if moe_reduce else []
        return dense, moe_seq

    def eager_decode_kernels(self, batch_per_gpu: int) -> int:
        """How many kernels the host issues for one decode step of ``batch_per_gpu`` requests (one
        micro-batch, no drafts): every layer's, then the head's."""
        dense, moe_seq = self._eager_sequences(batch_per_gpu, 0.0, False)
        layers = sum(len(moe_seq) if f else len(dense) for f in self.moe_layer_flags)
        return layers + len(self.head_ops(batch_per_gpu, batch_per_gpu))

    def host_issue_s(
        self,
        tokens_mb: int,
        attention_mb: float,
        prefill: bool,
        micro_batches: int,
        extra_moe_layers: int,
        head_s: Sequence[float],
    ) -> float:
        """The GPU's wait for the host in a step whose kernels the host issues one by one from eager
        PyTorch (a stack with ``cuda_graphs`` off): every inventory operator, all-reduce and all-to-all of
        each micro-batch through every layer (plus ``extra_moe_layers`` MoE layers, the MTP module's),
        then the head kernels ``head_s``, each issued :func:`eager_operator_s` after the one before
        (:func:`host_queue_lead_s`): the queue's end less the kernels' own time, 0 where the GPU never
        waits."""
        issue = eager_operator_s()
        dense, moe_seq = self._eager_sequences(tokens_mb, attention_mb, prefill)
        profiles = tuple((len(seq), sum(seq), host_queue_lead_s(seq, issue)) for seq in (dense, moe_seq))
        dense_profile, moe_profile = profiles
        host = gpu = busy_s = 0.0
        layers = [moe_profile if f else dense_profile for f in self.moe_layer_flags]
        layers += [moe_profile] * extra_moe_layers
        for _ in range(micro_batches):
            for n, busy, lead in layers:
                gpu = max(gpu + busy, host + lead)
                busy_s += busy
                host += n * issue
        gpu = max(gpu + sum(head_s), host + host_queue_lead_s(head_s, issue))
        return gpu - (busy_s + sum(head_s))

    @staticmethod
    def _host_wait(cost: StepCost, wait_s: float, part: str) -> StepCost:
        """``cost`` with the GPU's wait ``wait_s`` for the host added (breakdown key ``part``;
        ``bound_by`` "host" where the host's parts are the step's largest)."""
        if wait_s <= 0:
            return cost
        parts = dict(cost.breakdown_s)
        parts[part] = wait_s
        host = sum(parts.get(k, 0.0) for k in HOST_PARTS)
        bound = "host" if host >= max(v for k, v in parts.items() if k not in HOST_PARTS) else cost.bound_by
        return replace(cost, time_s=cost.time_s + wait_s, breakdown_s=parts, bound_by=bound)

    def _eager(self, cost: StepCost, wait_s: float) -> StepCost:
        """``cost`` with the GPU's wait for the eager host's kernel issue (``host_launch``)."""
        return self._host_wait(cost, wait_s, "host_launch")

    def _engine_step(self, cost: StepCost) -> StepCost:
        """``cost`` with the stack's per-step host time (``host_step``: the engine's scheduling and
        input preparation between steps, ``InstanceSpec.step_overhead_s``)."""
        return self._host_wait(cost, self.inst.step_overhead_s, "host_step")

    def _step_cost(self, sched: Schedule, parts: dict[str, float], head_s: float) -> StepCost:
        """The step of layer schedule ``sched`` followed by the output head (``head_s`` seconds of
        compute), with ``parts`` (to which the head is added) as its breakdown."""
        parts["head"] = head_s
        return StepCost(
            sched.total_s + head_s,
            sched.compute_busy_s + head_s,
            sched.comm_busy_s,
            sched.exposed_comm_s,
            parts,
            _bound(parts, sched.compute_busy_s, self.comm_kind(), sched),
        )

    def _mtp_layer(self, layers: list[LayerCost], tokens_per_micro_batch: int) -> LayerCost:
        """The MTP module as one layer: the first MoE layer of ``layers`` (the last layer where none
        is MoE) with the module's entry projection over ``tokens_per_micro_batch`` tokens added to
        its attention time."""
        moe_layer = next((x for x, f in zip(layers, self.moe_layer_flags, strict=True) if f), layers[-1])
        join = (self._mtp_join(tokens_per_micro_batch)) * self.sm_slowdown
        return replace(moe_layer, attention_s=moe_layer.attention_s + join)

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
            moe_layer = self._mtp_layer(mtp_layers, b_mb * q)
            layers = layers + [moe_layer] * self.draft
            parts["mtp"] = self.draft * mb * _layer_busy_s(moe_layer)
        sched = decode_pipeline_schedule(layers, mb)
        head = sum(x for _, x in self.head_ops(batch_per_gpu * q, batch_per_gpu * q))
        head += self.draft * sum(x for _, x in self.head_ops(batch_per_gpu, batch_per_gpu))
        result = self._step_cost(sched, parts, head)
        if not self.inst.cuda_graphs:
            head_s = [x for _, x in self.head_ops(batch_per_gpu * q, batch_per_gpu * q)]
            head_s += self.draft * [x for _, x in self.head_ops(batch_per_gpu, batch_per_gpu)]
            result = self._eager(result, self.host_issue_s(b_mb * q, attn, False, mb, self.draft, head_s))
        result = self._engine_step(result)
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
            mtp_layer = self._mtp_layer(layers, t_mb)
            layers = layers + [mtp_layer]
            parts["mtp"] = mb * _layer_busy_s(mtp_layer)
        sched = two_stream_schedule(layers, mb)
        # logits of the last position of each request only (at least one request per 64 tokens)
        head_ops = self.head_ops(max(1, tokens_per_gpu // 64), tokens_per_gpu)
        head = sum(x for _, x in head_ops)
        result = self._step_cost(sched, parts, head)
        if not self.inst.cuda_graphs:
            head_s = [x for _, x in head_ops]
            host = self.host_issue_s(t_mb, attention_s / mb, True, mb, int(bool(self.draft)), head_s)
            result = self._eager(result, host)
        return self._engine_step(result)

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
            mtp = [self._mtp_layer(layers, t_mb)]
            if self.draft > 1 and decode_batch:
                d_mb = int(math.ceil(decode_batch * q / mb))
                d_attn = self.decode_attention(decode_batch, q, kv_len) / mb
                d_layers, _ = self._layers(d_mb, d_attn, prefill=False)
                mtp += [self._mtp_layer(d_layers, d_mb)] * (self.draft - 1)
            layers = layers + mtp
            parts["mtp"] = mb * sum(_layer_busy_s(x) for x in mtp)
            if decode_batch:
                head += self.draft * self.head(decode_batch)
        sched = two_stream_schedule(layers, mb)
        result = self._step_cost(sched, parts, head)
        if not self.inst.cuda_graphs:
            rows = max(1, decode_batch * q + (1 if prefill_tokens else 0))
            head_s = [x for _, x in self.head_ops(rows, rows)]
            if decode_batch:
                head_s += self.draft * [x for _, x in self.head_ops(decode_batch, decode_batch)]
            host = self.host_issue_s(t_mb, attn / mb, False, mb, self.draft, head_s)
            result = self._eager(result, host)
        return self._engine_step(result)

    def kv_transfer_time(self, bytes_per_gpu: float) -> float:
        """RDMA of a prefill batch's KV cache from each prefill GPU to the decode instance."""
        if bytes_per_gpu <= 0:
            return 0.0
        chosen = self.links.get("ib") or self.links.get("nvlink")
        if chosen is None:
            return 0.0
        return comm.p2p_time(chosen, bytes_per_gpu).predicted_s


@functools.cache
def eager_operator_s() -> float:
    """Host seconds to issue one inventory operator from eager model code: for each published eager
    step (``sim.calibration.eager_steps``), its time over the kernels this model's inventory issues in
    it (:meth:`StepCostModel.eager_decode_kernels`, the experts sharded over the TP group as the
    stacks measured did), the median over the steps. It carries what an operator of eager model code
    costs beyond one bare torch call (``sim.calibration.eager_call_s``, the lower bound): the extra
    aten calls, Python module dispatch and per-step bookkeeping, spread over the operators."""
    import gpus
    import moe
    from sim import calibration

    per_op = []
    for step in calibration.eager_steps():
        model, gpu = moe.get(step.model), gpus.get(step.gpu)
        spec = {"mode": "colocated", "nodes": 1, "gpus_per_node": step.tp, "tp": step.tp, "ep": 1}
        inst = parse_deployment(spec, model, gpu).colocated
        assert inst is not None
        cost = StepCostModel(model, gpu, inst, 0, np.random.default_rng(0))
        per_op.append(step.step_s / cost.eager_decode_kernels(step.batch))
    return float(np.median(per_op))
