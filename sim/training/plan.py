"""Execution plan of a training run: parallel degrees, schedule, layer split, precision.

``num_gpus = tp * pp * dp``; experts are sharded over ``ep`` ranks inside the ``tp * dp``
group (DESIGN.md), so ``ep`` divides ``tp * dp`` and the number of routed experts, and the
expert data-parallel degree is ``tp * dp / ep``. Context parallelism (``cp``) splits each
sequence over ``cp`` GPUs taken from the data-parallel dimension (``cp`` divides ``dp``; the
number of model replicas that see different sequences is ``dp / cp``).

Layer split: the model's units (embedding, layers, MTP modules, output head) are cut into
the schedule's pieces as contiguous runs that minimise the slowest piece's simulated
forward+backward time (a linear partition), unless ``layers_per_stage`` is given. The
embedding goes with the first piece and the head and MTP with the last; with DualPipe the
first and last pieces sit on the same rank, as the V3 report describes (V3-TR 3.2.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

from moe.operators.lowering import RECOMPUTE_MODULES, default_recompute_modules
from sim.comm import DISPATCHERS  # the expert token dispatchers (Megatron --moe-token-dispatcher-type)
from sim.training.schedules import ScheduleLayout

__all__ = [
    "TrainingPlan",
    "partition_units",
    "RECOMPUTE_CHOICES",
    "RECOMPUTE_MODULES",
    "DISPATCHERS",
    "GRAD_DTYPES",
    "PIPELINE_SPLITS",
    "megatron_layer_counts",
    "recompute_module_set",
]

RECOMPUTE_CHOICES = ("none", "selective", "full")


# Gradient buffer / data-parallel reduction dtype (Megatron ``--grad-reduce-in-bf16``; Megatron-
# Bridge ``ddp.grad_reduce_in_fp32``); None keeps the precision recipe's (FP32).
GRAD_DTYPES = ("fp32", "bf16")

# How layers are cut into pipeline pieces when no counts are given: "balanced" (the contiguous split
# minimising the slowest piece) or "even" (Megatron-LM's default: num_layers / (pp x virtual stages)
# layers per piece, the embedding on the first and the output layer on the last).
PIPELINE_SPLITS = ("balanced", "even")


def recompute_module_set(recompute: str, modules: Sequence[str] | None) -> frozenset[str]:
    """The modules that run again in the backward: the named Megatron modules when ``modules`` is
    given (selective recomputation only), else DeepSeek-V3's set for "selective", every module
    for "full" (the whole layer) and none for "none". Raises ValueError for unknown names."""
    if modules is None:
        return default_recompute_modules(recompute)
    if isinstance(modules, str):
        raise ValueError(
            f"recompute_modules is a list of module names, got the string {modules!r}; "
            f"e.g. ['layernorm', 'moe_act']."
        )
    names = [str(m) for m in modules]
    unknown = [m for m in names if m not in RECOMPUTE_MODULES]
    if unknown:
        hint = ""
        if "moe" in unknown:
            hint = " ('moe', the whole MoE layer with its all-to-alls, is not modelled)"
        raise ValueError(
            f"unknown recompute module(s) {', '.join(map(repr, unknown))}{hint}; allowed: "
            f"{', '.join(RECOMPUTE_MODULES)} (Megatron --recompute-modules)."
        )
    if recompute != "selective":
        raise ValueError(
            f"recompute_modules needs recompute='selective' (Megatron: --recompute-granularity "
            f"selective --recompute-modules ...), got recompute={recompute!r}."
        )
    return frozenset(names)


@dataclass(frozen=True)
class TrainingPlan:
    tp: int
    pp: int
    dp: int
    ep: int
    cp: int
    schedule: str
    virtual_stages: int
    micro_batch_seqs: int
    num_microbatches: int
    seq_len: int
    global_batch_seqs: int
    precision: str  # as requested
    gemm_dtype: str  # what the GEMMs run in on this GPU
    recompute: str
    comm_sm_count: int
    max_nodes_per_token: int
    dispatch_fp8: bool
    pp_across_nodes: bool
    layers_per_piece: tuple[int, ...]
    piece_units: tuple[tuple[str, ...], ...]
    piece_params: tuple[tuple[float, float], ...]  # (non-expert, expert) parameters per piece
    pieces_of_rank: tuple[tuple[int, ...], ...]
    weight_bytes_per_param: float
    grad_bytes_per_param: float
    optimizer_bytes_moved_per_param: float
    recompute_modules: frozenset[str] | None = None  # what runs again in the backward (None: the policy's)
    dispatcher: str = "deepep"
    a2a_overlap: bool = False  # Megatron --overlap-moe-expert-parallel-comm (1F1B A2A overlap)
    sequence_parallel: bool = False
    distributed_optimizer: bool = True  # optimizer state sharded over data parallelism (ZeRO-1)
    moe_tp: int = 1  # Megatron --expert-tensor-parallel-size

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def expert_dp(self) -> int:
        """Data-parallel degree of the expert weights: tp*dp / (ep * moe_tp) (Megatron's expert
        data-parallel group, parallel_state.py: world / (etp * ep * pp))."""
        return self.tp * self.dp // (self.ep * self.moe_tp)

    @property
    def modules_recomputed(self) -> frozenset[str]:
        """The modules that run again in the backward (the recompute policy's own when not named)."""
        if self.recompute_modules is None:
            return default_recompute_modules(self.recompute)
        return self.recompute_modules

    @property
    def replicas(self) -> int:
        """Model replicas that process different sequences (DP over CP)."""
        return self.dp // self.cp

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["num_gpus"] = self.num_gpus
        d["expert_dp"] = self.expert_dp
        d["recompute_modules"] = sorted(self.modules_recomputed)
        return d

    def short(self) -> str:
        cp = f" CP{self.cp}" if self.cp > 1 else ""
        return (
            f"TP{self.tp} PP{self.pp} DP{self.dp} EP{self.ep}{cp} {self.schedule}"
            f" mb={self.micro_batch_seqs}x{self.num_microbatches} {self.gemm_dtype}"
        )


class PipelineUnit(Protocol):
    """What the layer split reads of a piece of the model (:class:`sim.training.costs.Unit`): its
    kind, "embedding", "layer", "mtp" or "head"."""

    @property
    def kind(self) -> str: ...


UnitT = TypeVar("UnitT", bound=PipelineUnit)


def partition_units(units: Sequence[UnitT], costs: Sequence[float], num_pieces: int) -> list[list[UnitT]]:
    """Contiguous split of ``units`` into ``num_pieces`` minimising the largest piece cost.

    Embedding stays with the first transformer layer and the head with the last unit; every
    piece must hold at least one transformer layer (or MTP module), else ValueError.
    """
    blocks: list[list[UnitT]] = []
    block_costs: list[float] = []
    pending: list[UnitT] = []
    pending_cost = 0.0
    for unit, cost in zip(units, costs, strict=True):
        pending.append(unit)
        pending_cost += cost
        if unit.kind in ("layer", "mtp"):
            blocks.append(pending)
            block_costs.append(pending_cost)
            pending, pending_cost = [], 0.0
    if pending:
        if not blocks:
            raise ValueError("the model has no transformer layers to place on pipeline stages.")
        blocks[-1] += pending
        block_costs[-1] += pending_cost
    n = len(blocks)
    if num_pieces > n:
        raise ValueError(
            f"the schedule needs {num_pieces} pipeline pieces but the model has only {n} transformer "
            f"layers (MTP included): a stage would get no layers; use a smaller pp (or fewer virtual stages)."
        )
    # Linear partition by dynamic programming on prefix sums (n <= a few hundred).
    prefix = [0.0]
    for c in block_costs:
        prefix.append(prefix[-1] + c)
    # best[p][i]: the least largest piece cost of the first i blocks in p pieces; cut[p][i]: the first
    # j that reaches it scanning j upwards (a later j counts only if better by more than 1e-15).
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(num_pieces + 1)]
    cut = [[0] * (n + 1) for _ in range(num_pieces + 1)]
    best[0][0] = 0.0
    # Each block costs clearly more than the scan's tolerance: the cost of the last piece,
    # prefix[i] - prefix[j], then falls by more than 1e-15 (and its rounding) at each step of j.
    tolerance = 1e-15 + 8 * math.ulp(prefix[-1])
    steps_clear = all(b - a > tolerance for a, b in zip(prefix, prefix[1:], strict=False))
    for p in range(1, num_pieces + 1):
        before, row, cuts = best[p - 1], best[p], cut[p]
        first, last = p - 1, n - (num_pieces - p)  # j from first; i up to last
        rising = all(a <= b for a, b in zip(before[first:last], before[first + 1 : last], strict=False))
        if steps_clear and rising:
            _crossing_row(before, row, cuts, prefix, first, last)
        else:
            _scan_row(before, row, cuts, prefix, first, last)
    bounds = []
    i = n
    for p in range(num_pieces, 0, -1):
        j = cut[p][i]
        bounds.append((j, i))
        i = j
    bounds.reverse()
    return [[u for b in blocks[j:i] for u in b] for j, i in bounds]


def _scan_row(
    before: list[float], row: list[float], cuts: list[int], prefix: list[float], first: int, last: int
) -> None:
    """One row of :func:`partition_units`'s table by its definition: for each i, scan j = first..i-1
    for max(before[j], prefix[i] - prefix[j]), keeping a j that beats the best so far by more than 1e-15."""
    for i in range(first + 1, last + 1):
        end = prefix[i]
        value, at, threshold = float("inf"), 0, float("inf")
        pairs = zip(before[first:i], prefix[first:i], strict=True)
        for j, (earlier, start) in enumerate(pairs, start=first):
            v = end - start  # max(earlier, end - start), without the call
            if earlier > v:
                v = earlier
            if v < threshold:
                value, at, threshold = v, j, v - 1e-15
        row[i], cuts[i] = value, at


def _crossing_row(
    before: list[float], row: list[float], cuts: list[int], prefix: list[float], first: int, last: int
) -> None:
    """:func:`_scan_row`'s result without the scan, when ``before`` does not fall over the j scanned and
    each block costs clearly more than the tolerance. Then the last piece's cost ``prefix[i] - prefix[j]``
    falls with j while ``before[j]`` does not: the scan keeps every j up to the crossing ``c`` (the first j
    with before[j] >= prefix[i] - prefix[j]), keeps ``c`` itself only if before[c] beats the cost at c - 1
    by more than 1e-15, and nothing after it (max(before[j], ...) >= before[c] there). The crossing only
    moves right as i grows."""
    c = first
    for i in range(first + 1, last + 1):
        end = prefix[i]
        while c < i and before[c] < end - prefix[c]:
            c += 1
        if c == i:  # no crossing: the last j scanned wins
            row[i], cuts[i] = end - prefix[i - 1], i - 1
        elif c == first:
            row[i], cuts[i] = before[c], c
        else:
            previous = end - prefix[c - 1]
            if before[c] < previous - 1e-15:
                row[i], cuts[i] = before[c], c
            else:
                row[i], cuts[i] = previous, c - 1


def split_by_counts(units: Sequence[UnitT], layers_per_stage: Sequence[int]) -> list[list[UnitT]]:
    """Split by explicit transformer-layer counts per piece (MTP counts as a layer)."""
    if any(int(c) < 1 for c in layers_per_stage):
        raise ValueError(
            f"layers_per_stage {list(layers_per_stage)} gives a stage no layers; "
            "every stage needs at least one."
        )
    blocks: list[list[UnitT]] = []
    pending: list[UnitT] = []
    for unit in units:
        pending.append(unit)
        if unit.kind in ("layer", "mtp"):
            blocks.append(pending)
            pending = []
    if pending:
        blocks[-1] += pending
    if sum(layers_per_stage) != len(blocks):
        raise ValueError(
            f"layers_per_stage sums to {sum(layers_per_stage)} but the model has {len(blocks)} "
            f"layers (MTP modules included)."
        )
    out = []
    i = 0
    for c in layers_per_stage:
        out.append([u for b in blocks[i : i + int(c)] for u in b])
        i += int(c)
    return out


def pieces_of_ranks(layout: ScheduleLayout) -> tuple[tuple[int, ...], ...]:
    return tuple(layout.pieces_on_rank(r) for r in range(layout.num_ranks))


def megatron_layer_counts(num_layers: int, num_pieces: int, *, embedding: bool, loss: bool) -> list[int]:
    """Transformer layers per pipeline piece under Megatron-LM's even split with the input embedding
    and/or the loss counted as one layer each (``--account-for-embedding-in-pipeline-split``,
    ``--account-for-loss-in-pipeline-split``, megatron/training/arguments.py): the
    ``num_layers + embedding + loss`` slots divide evenly over the pieces, and the first piece gives
    one slot to the embedding, the last one to the loss. ValueError when the slots do not divide
    evenly or a piece would be left without a transformer layer."""
    slots = num_layers + int(embedding) + int(loss)
    if num_pieces < 1 or slots % num_pieces:
        extra = "".join(f" + {n}" for n, on in (("embedding", embedding), ("loss", loss)) if on)
        raise ValueError(
            f"Megatron's pipeline split needs the {num_layers} layers{extra} ({slots} slots) to divide "
            f"evenly over the {num_pieces} pipeline pieces (pp x virtual stages); they do not. Change pp or "
            f"virtual_stages, count the embedding or loss as a layer (account_for_*_in_pipeline_split), "
            f"or give layers_per_stage for an uneven split."
        )
    per = slots // num_pieces
    counts = [per] * num_pieces
    counts[0] -= int(embedding)
    counts[-1] -= int(loss)
    if min(counts) < 1:
        raise ValueError(
            f"with {per} slot(s) per pipeline piece, the piece holding the embedding or the loss would "
            f"get no transformer layer; use fewer pipeline pieces."
        )
    return counts
